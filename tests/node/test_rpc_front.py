"""The HTTP front process (`node.rpc_front`): its bounds, its channel, and its life tied to the node's.

Each test serves a real node's HTTP through a real front process on loopback,
and attacks or kills it the way a client or an operator would.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
import trio

from node.asgi import HTTPLimits
from node.http import serve_http
from node.metrics import NodeMetrics
from node.rpc_admission import RPCLimits
from node.rpc_channel import (
    HEADER,
    REQUEST,
    STATS,
    ChannelServer,
    FrameError,
    FrameReader,
    decode_request,
    decode_response,
    encode_frame,
    encode_request,
    encode_response,
    validate_header,
)
from node.rpc_front import compute_body_cost, compute_message_cost
from tests.node.conftest_rpc import VALIDATORS, RPCTestNode

REPO = Path(__file__).resolve().parents[2]


def call_body(method: str, *params, request_id=1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


def get_fronts(pid: int | None = None) -> list[psutil.Process]:
    parent = psutil.Process(pid or os.getpid())
    return [child for child in parent.children(recursive=True)
            if any("node.rpc_front" in part for part in child.cmdline())]


async def start(nursery, tmp_path, limits: HTTPLimits = HTTPLimits(), rpc_limits: RPCLimits = RPCLimits()):
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    url = await nursery.start(lambda task_status: serve_http(node, "127.0.0.1", 0, limits=limits,
                                                             rpc_limits=rpc_limits, task_status=task_status))
    return node, url


def get_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- the channel's frames --------------------------------------------------------------------------

def test_frames_round_trip_and_refuse_what_is_out_of_bounds():
    frame = encode_request(7, "127.0.0.2", b'{"x":1}')
    length, kind, request_id = HEADER.unpack(frame[:HEADER.size])
    assert (kind, request_id) == (REQUEST, 7) and length == len(frame) - HEADER.size
    assert decode_request(frame[HEADER.size:]) == ("127.0.0.2", b'{"x":1}')
    response = encode_response(7, 200, b"[]")
    assert decode_response(response[HEADER.size:]) == (200, b"[]")
    assert decode_response(encode_response(8, 204, None)[HEADER.size:]) == (204, None)
    validate_header(1 + 255 + 1000, REQUEST, 1000)
    with pytest.raises(FrameError, match="frame length"):
        validate_header(1 + 255 + 1001, REQUEST, 1000)  # a body over the HTTP limit never reaches the node
    with pytest.raises(FrameError, match="frame kind"):
        validate_header(0, 9, 1000)
    with pytest.raises(FrameError, match="address"):
        decode_request(bytes([40]) + b"short")


async def test_the_node_side_answers_by_id_survives_a_failing_request_and_drops_a_bad_frame(tmp_path, nursery):
    async def handle(client: str, body: bytes) -> bytes | None:
        if body == b"boom":
            raise RuntimeError("a handler bug")
        if body == b"slow":
            await trio.sleep(0.2)
        return None if body == b"note" else client.encode() + b":" + body

    path = str(tmp_path / "rpc.sock")
    stats: list[dict] = []
    server = ChannelServer(path, handle, stats.append, max_body=100, max_in_flight=8)
    await nursery.start(server.run)
    stream = await trio.open_unix_socket(path)
    for request_id, body in ((1, b"slow"), (2, b"boom"), (3, b"fast"), (4, b"note")):
        await stream.send_all(encode_request(request_id, "127.0.0.9", body))
    await stream.send_all(encode_frame(STATS, 0, b'{"client rate": 3}'))
    reader = FrameReader(stream, 0)
    answers = {}
    for _ in range(4):
        frame = await reader.read()
        answers[frame.request_id] = decode_response(frame.payload)
    assert list(answers)[-1] == 1  # the slow one last: answers are matched by id, not by order
    assert answers[1] == (200, b"127.0.0.9:slow") and answers[3] == (200, b"127.0.0.9:fast")
    assert answers[2][0] == 200 and b"-32603" in answers[2][1]  # a handler's failure is that request's error
    assert answers[4] == (204, None) and stats == [{"client rate": 3}]
    await stream.send_all(encode_request(5, "x", b"y" * 400))  # over max_body (and the address): closed
    assert await stream.receive_some(10) == b""
    nursery.cancel_scope.cancel()


def test_the_front_prices_a_body_before_admitting_it():
    proof = call_body("eth_getProof", "0x" + "00" * 20, [], "latest", request_id="a")
    assert compute_body_cost(json.dumps(proof).encode()) == (5, "a")
    assert compute_body_cost(json.dumps([proof, proof]).encode()) == (10, None)
    assert compute_body_cost(b"[" * 100_000 + b"]" * 100_000) == (1, None)  # refused unparsed by the node
    subscribe = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": ["newHeads"]}
    assert compute_message_cost(json.dumps(subscribe).encode()) == (0, None)  # free, as on the node
    assert compute_message_cost(json.dumps(proof).encode()) == (5, "a")


# --- the front serving a node ----------------------------------------------------------------------

async def test_json_rpc_goes_through_the_front_and_each_client_is_counted_apart(tmp_path, nursery):
    limits = RPCLimits(rate_limit=1, burst=10, server_rate_limit=0)
    node, url = await start(nursery, tmp_path, rpc_limits=limits)
    [front] = get_fronts()
    assert front.nice() > os.nice(0)  # HTTP gives way to consensus when the machine is short of CPU
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await client.post("/", json=call_body("eth_blockNumber"))
        assert answer.json()["result"] == "0x1"
        assert (await client.post("/", json=call_body("eth_sendRawTransaction", "0x00"))).json()["error"]
        for _ in range(9):
            await client.post("/", json=call_body("eth_blockNumber"))
        refused = await client.post("/", json=call_body("eth_blockNumber", request_id=42))
        assert refused.status_code == 429 and refused.json()["id"] == 42
        assert refused.json()["error"]["message"] == "limit exceeded: request rate of 127.0.0.1"
        assert (await client.get("/ui")).status_code == 200  # passed through to the node's own server
        missing = await client.get("/nothing-here")
        assert missing.status_code == 404 and "no route" in missing.json()["error"]["message"]
    other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=url, transport=other, timeout=10) as client:
        assert (await client.post("/", json=call_body("eth_blockNumber"))).status_code == 200
    nursery.cancel_scope.cancel()


async def test_a_server_wide_budget_refuses_many_addresses_together(tmp_path, nursery):
    limits = RPCLimits(rate_limit=0, server_rate_limit=10)  # no per-client limit: only the server's
    node, url = await start(nursery, tmp_path, rpc_limits=limits)
    proof = call_body("eth_getProof", "0x" + VALIDATORS[0].hex(), [], "latest")
    statuses = []
    for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        transport = httpx.AsyncHTTPTransport(local_address=source)
        async with httpx.AsyncClient(base_url=url, transport=transport, timeout=10) as client:
            statuses.append((await client.post("/", json=proof)).status_code)
    assert statuses[:2] == [200, 200] and statuses[2] == 429, statuses  # 10 tokens: two proofs, then none
    nursery.cancel_scope.cancel()


async def test_request_heads_are_bounded_in_size_time_and_connections(tmp_path, nursery):
    limits = HTTPLimits(max_header_bytes=4096, head_timeout=1.0, max_connections=16, read_timeout=1.0)
    node, url = await start(nursery, tmp_path, limits=limits)
    port = get_port(url)

    def probe() -> dict:
        seen = {}
        with socket.create_connection(("127.0.0.1", port), timeout=10) as big:
            big.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 8000 + b"\r\n\r\n")
            seen["big"] = big.recv(200)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as trickle:
            trickle.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{" * 10)
            answer = b""
            while b"}}" not in answer and (chunk := trickle.recv(300)):  # the body never completes
                answer += chunk
            seen["trickle"] = answer
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        seen["slow"] = slow.recv(100)
        seen["slow_seconds"] = time.monotonic() - started
        slow.close()
        held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(16)]
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        seen["extra"] = extra.recv(100)
        for sock in held + [extra]:
            sock.close()
        time.sleep(0.3)
        seen["after"] = httpx.post(url, json=call_body("eth_blockNumber"), timeout=10).json()
        return seen

    seen = await trio.to_thread.run_sync(probe)
    assert seen["big"].startswith(b"HTTP/1.1 400"), seen["big"]
    assert seen["trickle"].startswith(b"HTTP/1.1 408") and b"not received in time" in seen["trickle"], seen["trickle"]
    assert seen["slow"] == b"" and 0.5 < seen["slow_seconds"] < 5, seen  # cut off after head_timeout
    assert seen["extra"] == b""  # over max_connections: closed before a byte is read
    assert seen["after"]["result"] == "0x1"  # and the front serves on
    nursery.cancel_scope.cancel()


async def test_a_killed_front_is_started_again_on_the_same_port(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    node.metrics = NodeMetrics()
    url = await nursery.start(lambda task_status: serve_http(node, "127.0.0.1", 0, task_status=task_status))
    [front] = get_fronts()
    front.send_signal(signal.SIGKILL)

    def ask_until_served() -> tuple[dict, float]:
        started = time.monotonic()
        while time.monotonic() - started < 30:
            try:
                return httpx.post(url, json=call_body("eth_blockNumber"), timeout=20).json(), time.monotonic() - started
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("the front was not started again within 30 s")

    answer, seconds = await trio.to_thread.run_sync(ask_until_served)
    assert answer["result"] == "0x1"
    [again] = get_fronts()
    assert again.pid != front.pid
    assert node.metrics.http_front_restarts._value.get() == 1  # loud: counted, and logged as an error
    nursery.cancel_scope.cancel()


def test_the_front_ends_when_its_node_is_killed(tmp_path):
    """kill -9 of the node: its front sees the channel close and exits, releasing the port."""
    script = (
        "import sys, trio\n"
        "from node.http import serve_http\n"
        "from tests.node.conftest_rpc import RPCTestNode\n"
        "async def main():\n"
        f"    node = RPCTestNode({str(tmp_path / 'db')!r})\n"
        "    node.produce()\n"
        "    async with trio.open_nursery() as nursery:\n"
        "        url = await nursery.start(lambda task_status: serve_http(node, '127.0.0.1', 0, task_status=task_status))\n"
        "        print(url, flush=True)\n"
        "trio.run(main)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        assert httpx.post(url, json=call_body("eth_blockNumber"), timeout=10).json()["result"] == "0x1"
        [front] = get_fronts(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        front.wait(10)  # raises psutil.TimeoutExpired if the front outlives its node
        with socket.socket() as probe:  # nobody holds the port any more
            probe.bind(("127.0.0.1", get_port(url)))
    finally:
        process.kill()
