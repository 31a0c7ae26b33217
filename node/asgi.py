"""ASGI plumbing shared by the node's HTTP server (`node.http`), the OpenAI API and the light client's server.

Owns the request-body bounds (`HTTPLimits`), the incremental body reader that
refuses an oversized body without buffering it, the JSON and empty responses,
the lifespan handshake, and the hypercorn configuration. It knows no route and
no method, so every server above it can import it without importing another.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, NamedTuple

import trio
from hypercorn.config import Config

log = logging.getLogger("magicoin.http")

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class HTTPLimits(NamedTuple):
    max_rpc_body: int = 1 << 20  # a batch of 100 raw transactions fits with room to spare
    max_chat_body: int = 1 << 20
    max_header_bytes: int = 16 * 1024
    keep_alive_timeout: float = 30.0
    read_timeout: float = 30.0  # a client trickling its body is cut off
    head_timeout: float = 10.0  # seconds for a request's line and headers (the HTTP front process)
    max_connections: int = 4096  # open connections the HTTP front process holds; one more is closed on arrival


class BodyTooLarge(Exception):
    def __init__(self, got: int, limit: int) -> None:
        self.got = got
        self.limit = limit
        super().__init__(f"request body of {got} bytes exceeds the {limit}-byte limit")

    def to_json_rpc(self) -> dict:
        """The JSON-RPC error body of the 413 answer: what was expected, and only the size of what was sent."""
        return {"jsonrpc": "2.0", "id": None, "error": {
            "code": -32600, "message": str(self),
            "data": {"got": f"{self.got} bytes", "expected": f"at most {self.limit} bytes"}}}


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


async def read_body(receive: Receive, scope: dict, limit: int, timeout: float) -> bytes:
    """The whole request body within `timeout` (trio.TooSlowError past it), refused as soon as it exceeds `limit`."""
    with trio.fail_after(timeout):
        return await receive_body(receive, scope, limit)


async def receive_body(receive: Receive, scope: dict, limit: int) -> bytes:
    """The whole request body, refusing it as soon as it is known to exceed `limit`.

    No deadline of its own, so that any event loop's servers share it: trio's
    through `read_body`, the asyncio HTTP front (`node.rpc_front`) under its own.
    """
    declared = get_header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def get_header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def send_json(send: Send, status: int, body: Any, headers: list | None = None) -> None:
    payload = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode())] + (headers or [])})
    await send({"type": "http.response.body", "body": payload})


async def send_body_timeout(send: Send) -> None:
    """408: the request body did not arrive within the read timeout (`HTTPLimits.read_timeout`)."""
    await send_json(send, 408, {"jsonrpc": "2.0", "id": None,
                                "error": {"code": -32600, "message": "request body not received in time"}})


async def send_no_content(send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def on_lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: these apps hold nothing that needs either."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def make_config(host: str, port: int, limits: HTTPLimits) -> Config:
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = log
    config.h11_max_incomplete_size = limits.max_header_bytes
    config.keep_alive_timeout = limits.keep_alive_timeout
    config.graceful_timeout = 2.0
    config.include_server_header = False
    return config
