"""The channel between the HTTP front process (`node.rpc_front`) and its node: JSON-RPC bodies over a unix socket.

The front parses HTTP, refuses what is over a limit, and sends each admitted
JSON-RPC body here as one frame; the node runs it in its worker threads
(`node.rpc_workers`) and answers with one frame. Many requests are in flight on
one connection, matched by id, so a slow request holds up no other.

A frame is a 9-byte header, then its payload:

    length (4 bytes, big-endian: the payload's)  kind (1)  id (4)

- REQUEST (front to node): the client's address (1 length byte, then ASCII), then the body;
- RESPONSE (node to front): the HTTP status (2 bytes), then the response body (none for 204);
- STATS (front to node, id 0): JSON counters of what the front refused since its last STATS,
  so the node's metrics count every request, served here or refused there.

The socket lives in a directory only the node's user can enter (`make_socket_dir`),
so a frame needs no credentials. Each side bounds what it reads: a request frame
is at most the HTTP body limit plus room for the address, a response frame at most
`MAX_RESPONSE_BYTES`, and a frame over its bound ends the connection.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import struct
import tempfile
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import trio

log = logging.getLogger("magicoin.http")

CHANNEL_SOCKET = "rpc.sock"  # in the socket directory: JSON-RPC frames
HTTP_SOCKET = "http.sock"  # in the socket directory: the node's own HTTP server, for everything else
CLIENT_HEADER = b"x-magicoin-client"  # the peer the front serves, named to the node's own server
HEADER = struct.Struct(">IBI")
REQUEST, RESPONSE, STATS = 1, 2, 3
MAX_CLIENT_BYTES = 255
MAX_RESPONSE_BYTES = 256 << 20  # eth_getLogs may answer 10,000 logs; a batch of 100 block bodies fits
MAX_STATS_BYTES = 64 * 1024
NO_CONTENT = 204
INTERNAL_ERROR = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}'


class FrameError(Exception):
    """A frame the other side should never have sent: its connection is closed."""

    def __init__(self, what: str, got: object, expected: object) -> None:
        super().__init__(f"{what}: got {got}, expected {expected}")


class Frame(NamedTuple):
    kind: int
    request_id: int
    payload: bytes


def encode_frame(kind: int, request_id: int, payload: bytes) -> bytes:
    return HEADER.pack(len(payload), kind, request_id) + payload


def encode_request(request_id: int, client: str, body: bytes) -> bytes:
    address = client.encode("ascii", "replace")[:MAX_CLIENT_BYTES]
    return encode_frame(REQUEST, request_id, bytes([len(address)]) + address + body)


def decode_request(payload: bytes) -> tuple[str, bytes]:
    if not payload:
        raise FrameError("request frame", "an empty payload", "an address length byte")
    size = payload[0]
    if len(payload) < 1 + size:
        raise FrameError("request frame", f"{len(payload)} bytes", f"at least {1 + size} for the address")
    return payload[1:1 + size].decode("ascii", "replace"), payload[1 + size:]


def encode_response(request_id: int, status: int, body: bytes | None) -> bytes:
    return encode_frame(RESPONSE, request_id, struct.pack(">H", status) + (body or b""))


def decode_response(payload: bytes) -> tuple[int, bytes | None]:
    if len(payload) < 2:
        raise FrameError("response frame", f"{len(payload)} bytes", "at least 2 for the status")
    status = struct.unpack(">H", payload[:2])[0]
    return status, None if status == NO_CONTENT else payload[2:]


def get_payload_limit(kind: int, max_body: int) -> int:
    """The largest payload a frame of `kind` may carry; a bigger one is a FrameError."""
    return {REQUEST: 1 + MAX_CLIENT_BYTES + max_body, RESPONSE: 2 + MAX_RESPONSE_BYTES,
            STATS: MAX_STATS_BYTES}.get(kind, -1)


def validate_header(length: int, kind: int, max_body: int) -> None:
    limit = get_payload_limit(kind, max_body)
    if limit < 0:
        raise FrameError("frame kind", kind, f"one of {REQUEST}, {RESPONSE}, {STATS}")
    if length > limit:
        raise FrameError("frame length", f"{length} bytes", f"at most {limit} for kind {kind}")


def decode_stats(payload: bytes) -> dict[str, int]:
    """The front's refusal counters; anything but a flat object of counts is a FrameError."""
    try:
        stats = json.loads(payload)
    except ValueError as error:
        raise FrameError("stats frame", "invalid JSON", "a JSON object") from error
    if not isinstance(stats, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                              for v in stats.values()):
        raise FrameError("stats frame", type(stats).__name__, "an object of non-negative counts")
    return stats


def make_socket_dir() -> str:
    """A fresh directory that only this user can enter, for the channel's and the internal server's sockets."""
    return tempfile.mkdtemp(prefix="magicoin-http-")  # mkdtemp makes it 0700


# --- the node's side (trio) --------------------------------------------------------------------

Handle = Callable[[str, bytes], Awaitable[bytes | None]]


class ChannelServer:
    """Serves the front's frames: each request runs in `handle(client, body)`, its answer written back by id.

    `max_in_flight` bounds the requests running at once across connections: the
    front already refuses beyond its own limits, so this only guards the node
    against a front that misbehaves. Reading stops while it is reached.
    """

    def __init__(self, path: str, handle: Handle, on_stats: Callable[[dict[str, int]], None], *,
                 max_body: int, max_in_flight: int) -> None:
        self.path = path
        self.handle = handle
        self.on_stats = on_stats
        self.max_body = max_body
        self.limiter = trio.CapacityLimiter(max_in_flight)
        self.connections = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(self.path)
        sock.listen(16)
        listener = trio.SocketListener(sock)
        task_status.started()
        try:
            await trio.serve_listeners(self.serve_connection, [listener])
        finally:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    async def serve_connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        send_lock = trio.Lock()
        try:
            async with stream, trio.open_nursery() as nursery:
                reader = FrameReader(stream, self.max_body)
                while (frame := await reader.read()) is not None:
                    await self.on_frame(frame, stream, send_lock, nursery)
        except (FrameError, trio.BrokenResourceError, trio.ClosedResourceError) as error:
            log.warning("HTTP front channel closed: %s", error)
        finally:
            self.connections -= 1

    async def on_frame(self, frame: Frame, stream: trio.SocketStream, send_lock: trio.Lock,
                       nursery: trio.Nursery) -> None:
        if frame.kind == STATS:
            self.on_stats(decode_stats(frame.payload))
            return
        if frame.kind != REQUEST:
            raise FrameError("frame kind from the front", frame.kind, f"{REQUEST} or {STATS}")
        client, body = decode_request(frame.payload)
        await self.limiter.acquire_on_behalf_of(frame.request_id)
        nursery.start_soon(self.answer, frame.request_id, client, body, stream, send_lock)

    async def answer(self, request_id: int, client: str, body: bytes, stream: trio.SocketStream,
                     send_lock: trio.Lock) -> None:
        try:
            response = await self.handle(client, body)
        except Exception:  # noqa: BLE001 - one request's failure must not close the channel for all the others
            log.exception("JSON-RPC body from the HTTP front failed")
            response = INTERNAL_ERROR
        finally:
            self.limiter.release_on_behalf_of(request_id)
        status = NO_CONTENT if response is None else 200
        async with send_lock:
            try:
                await stream.send_all(encode_response(request_id, status, response))
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the front is gone; its next connection starts afresh


class FrameReader:
    """Frames off a trio stream, each bounded before its payload is read."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_body: int) -> None:
        self.stream = stream
        self.max_body = max_body
        self.buffer = bytearray()

    async def read(self) -> Frame | None:
        header = await self.read_exactly(HEADER.size)
        if header is None:
            return None
        length, kind, request_id = HEADER.unpack(header)
        validate_header(length, kind, self.max_body)
        payload = await self.read_exactly(length)
        if payload is None:
            raise FrameError("frame", "end of stream inside a payload", f"{length} bytes")
        return Frame(kind, request_id, payload)

    async def read_exactly(self, size: int) -> bytes | None:
        while len(self.buffer) < size:
            chunk = await self.stream.receive_some(max(65536, size - len(self.buffer)))
            if not chunk:
                if self.buffer:
                    raise FrameError("frame", "end of stream inside a frame", f"{size} bytes")
                return None
            self.buffer += chunk
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

