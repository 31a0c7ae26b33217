"""A JSON-RPC flood client: one request body offered at a fixed rate over keep-alive connections.

It measures what a node's admission control does under load (benchmarks/rpc_flood.py, tests/node):
requests are due on a fixed schedule (request i at start + i / rate), spread over
`connections` HTTP/1.1 keep-alive connections, each bound to one of `sources`
(loopback addresses such as 127.0.0.2, so the node sees several clients and the
measuring side, on 127.0.0.1, is a client of its own). A connection sends its
next due request as soon as the previous answer is in, so the offered rate
falls below the target only when every connection is waiting: that is reported
(`offered_per_s`), never hidden. Answers are counted by HTTP status.

The HTTP is written by hand (request bytes prepared once, the response's status
line and Content-Length parsed, the body skipped) so the client spends little of
the machine the node also runs on. Run it as its own process:

    python -m node.rpc_flood --url http://127.0.0.1:8545 --rate 2000 --seconds 10 \\
        --method eth_getProof --params '["0x...", [], "latest"]' --sources 127.0.0.2,127.0.0.3

which prints one JSON line (`FloodResult` as a dict).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import trio

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 << 20
CONNECT_TIMEOUT = 5.0


@dataclass
class FloodResult:
    target_per_s: float
    seconds: float = 0.0
    sent: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    errors: int = 0  # connections lost or refused mid-request
    served_latencies_ms: list[float] = field(default_factory=list)
    limited_latencies_ms: list[float] = field(default_factory=list)
    sample_limited_body: str | None = None

    def summary(self) -> dict:
        served = self.statuses.get("200", 0)
        limited = self.statuses.get("429", 0)
        answered = sum(self.statuses.values())
        return {
            "target_per_s": self.target_per_s, "seconds": round(self.seconds, 2), "sent": self.sent,
            "offered_per_s": round(self.sent / self.seconds, 1) if self.seconds else 0.0,
            "served_per_s": round(served / self.seconds, 1) if self.seconds else 0.0,
            "limited_per_s": round(limited / self.seconds, 1) if self.seconds else 0.0,
            "limited_share": round(limited / answered, 4) if answered else 0.0,
            "statuses": dict(self.statuses), "errors": self.errors,
            "served_latency_p50_ms": percentile(self.served_latencies_ms, 0.5),
            "served_latency_p99_ms": percentile(self.served_latencies_ms, 0.99),
            "limited_latency_p50_ms": percentile(self.limited_latencies_ms, 0.5),
            "sample_limited_body": self.sample_limited_body,
        }


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n").encode() + body


class ResponseReader:
    """Reads HTTP/1.1 responses off one stream: the status, and the body skipped by its Content-Length."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def read_response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            await self.fill()
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise ConnectionError("response headers too large")
        end = self.buffer.index(b"\r\n\r\n")
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        status = int(head[0].split(" ", 2)[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length > MAX_BODY_BYTES:
            raise ConnectionError("response body too large")
        while len(self.buffer) < length:
            await self.fill()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return status, body

    async def fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        self.buffer += data


async def connect(host: str, port: int, source: str | None) -> trio.SocketStream:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        sock.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
        if source:
            await sock.bind((source, 0))
        with trio.fail_after(CONNECT_TIMEOUT):
            await sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


class Flood:
    """The shared schedule: request i is due at start + i / rate, until `seconds` have passed."""

    def __init__(self, url: str, body: bytes, rate: float, seconds: float) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.request = build_request(self.host, self.port, parts.path or "/", body)
        self.rate = rate
        self.seconds = seconds
        self.result = FloodResult(target_per_s=rate)
        self.next_index = 0
        self.start = 0.0

    def take_due(self) -> float | None:
        """The due time of the next request, or None once the schedule is over.

        The flood ends on time: requests still due when `seconds` have passed (every
        connection was waiting for an answer) are never sent, and `offered_per_s` shows it.
        """
        due = self.start + self.next_index / self.rate
        end = self.start + self.seconds
        if due >= end or trio.current_time() >= end:
            return None
        self.next_index += 1
        return due

    async def run(self, connections: int, sources: list[str | None]) -> FloodResult:
        self.start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for index in range(connections):
                nursery.start_soon(self.run_connection, sources[index % len(sources)])
        self.result.seconds = trio.current_time() - self.start
        return self.result

    async def run_connection(self, source: str | None) -> None:
        stream = reader = None
        while True:
            due = self.take_due()
            if due is None:
                break
            await trio.sleep_until(due)
            try:
                if stream is None:
                    stream = await connect(self.host, self.port, source)
                    reader = ResponseReader(stream)
                sent_at = time.perf_counter()
                self.result.sent += 1
                await stream.send_all(self.request)
                status, body = await reader.read_response()
            except (OSError, ConnectionError, trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError,
                    ValueError, IndexError):
                self.result.errors += 1
                if stream is not None:
                    await stream.aclose()
                stream = reader = None
                await trio.sleep(0.01)  # the server is gone or refusing: do not spin
                continue
            self.record(status, body, (time.perf_counter() - sent_at) * 1000)
        if stream is not None:
            await stream.aclose()

    def record(self, status: int, body: bytes, latency_ms: float) -> None:
        key = str(status)
        self.result.statuses[key] = self.result.statuses.get(key, 0) + 1
        if status == 200:
            self.result.served_latencies_ms.append(latency_ms)
        elif status == 429:
            self.result.limited_latencies_ms.append(latency_ms)
            if self.result.sample_limited_body is None:
                self.result.sample_limited_body = body[:400].decode("utf-8", "replace")


def make_body(method: str, params: list) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


async def run_flood(url: str, body: bytes, rate: float, seconds: float, connections: int,
                    sources: list[str | None]) -> dict:
    flood = Flood(url, body, rate, seconds)
    result = await flood.run(connections, sources)
    return result.summary()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=2000.0, help="requests per second offered")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=0, help="0: rate / 50, at least 8")
    parser.add_argument("--method", default="eth_getProof")
    parser.add_argument("--params", default="[]", help="JSON array")
    parser.add_argument("--sources", default="", help="comma-separated source addresses, e.g. 127.0.0.2,127.0.0.3")
    args = parser.parse_args(argv)
    connections = args.connections or max(8, math.ceil(args.rate / 50))
    sources: list[str | None] = [s.strip() for s in args.sources.split(",") if s.strip()] or [None]
    summary = trio.run(run_flood, args.url, make_body(args.method, json.loads(args.params)), args.rate,
                       args.seconds, connections, sources)
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
