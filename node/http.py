"""The node's HTTP server: one ASGI app for JSON-RPC and the OpenAI-compatible API, on hypercorn's trio worker.

Routes:
  POST /                     JSON-RPC 2.0 (`node.rpc.RPCDispatcher`)
  GET  /v1/models            `node.openai_api`
  POST /v1/chat/completions  `node.openai_api` (JSON or server-sent events)

hypercorn parses HTTP; this module only routes and bounds: request bodies are
limited (`HTTPLimits`), read incrementally so an oversized body is refused
without being buffered, and every error is a JSON body, never a trace. The
server binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any, Awaitable, Callable, NamedTuple

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from node.abc import NodeAPI
from node.rpc import RPCDispatcher

log = logging.getLogger("magicoin.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


class HTTPLimits(NamedTuple):
    max_rpc_body: int = 1 << 20  # a batch of 100 raw transactions fits with room to spare
    max_chat_body: int = 1 << 20
    max_header_bytes: int = 16 * 1024
    keep_alive_timeout: float = 30.0
    read_timeout: float = 30.0  # a client trickling its body is cut off


class BodyTooLarge(Exception):
    def __init__(self, got: int, limit: int) -> None:
        self.got = got
        self.limit = limit
        super().__init__(f"request body of {got} bytes exceeds the {limit}-byte limit")


class ClientGone(Exception):
    """The client disconnected before its request body was read."""


async def read_body(receive: Receive, scope: dict, limit: int, timeout: float) -> bytes:
    """The whole request body, refusing it as soon as it is known to exceed `limit`."""
    declared = get_header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    with trio.fail_after(timeout):
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


class NodeApp:
    """The ASGI application for one node."""

    def __init__(self, node: NodeAPI, limits: HTTPLimits = HTTPLimits()) -> None:
        from node.openai_api import OpenAIAPI

        self.node = node
        self.limits = limits
        self.rpc = RPCDispatcher(node)
        self.openai = OpenAIAPI(node)
        self.requests = 0

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.on_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not offered
        self.requests += 1
        try:
            await self.route(scope, receive, send)
        except BodyTooLarge as error:
            await send_json(send, 413, {"jsonrpc": "2.0", "id": None,
                                        "error": {"code": -32600, "message": str(error)}})
        except ClientGone:
            pass
        except trio.TooSlowError:
            await send_json(send, 408, {"jsonrpc": "2.0", "id": None,
                                        "error": {"code": -32600, "message": "request body not received in time"}})

    async def route(self, scope: dict, receive: Receive, send: Send) -> None:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path == "/":
            if method != "POST":
                await send_json(send, 405, {"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32600, "message": "JSON-RPC is served with POST /"}}, [(b"allow", b"POST")])
                return
            await self.on_rpc(scope, receive, send)
        elif path.startswith("/v1/"):
            await self.openai.handle(scope, receive, send, self.limits)
        else:
            await send_json(send, 404, {"error": {"message": f"no route {method} {path}", "type": "not_found"}})

    async def on_rpc(self, scope: dict, receive: Receive, send: Send) -> None:
        body = await read_body(receive, scope, self.limits.max_rpc_body, self.limits.read_timeout)
        response = self.rpc.handle(body)
        if response is None:  # only notifications: nothing to say
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await send_json(send, 200, response)

    async def on_lifespan(self, receive: Receive, send: Send) -> None:
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


async def serve_http(node: NodeAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                     limits: HTTPLimits = HTTPLimits(), task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve JSON-RPC and the OpenAI API for `node` until cancelled.

    `await nursery.start(serve_http, node, host, port)` returns once the socket is
    listening, with its URL (e.g. "http://127.0.0.1:8545"; port 0 picks a free port).
    """
    app = NodeApp(node, limits)
    config = make_config(host, port, limits)
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, mode="asgi"))
        log.info("serving JSON-RPC and the OpenAI API on %s", binds[0])
        task_status.started(binds[0])
