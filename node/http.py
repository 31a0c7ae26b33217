"""The node's HTTP server: one ASGI app for JSON-RPC and the OpenAI-compatible API, on hypercorn's trio worker.

Routes:
  POST /                     JSON-RPC 2.0 (`node.rpc.RPCDispatcher`)
  GET  /v1/models            `node.openai_api`
  POST /v1/chat/completions  `node.openai_api` (JSON or server-sent events)
  GET  /ui, /ui/<file>       the annotation page (`node.ui`, static files; signing happens in the browser)

hypercorn parses HTTP; this module only routes and bounds: request bodies are
limited (`HTTPLimits`), read incrementally so an oversized body is refused
without being buffered (`node.asgi`), and every error is a JSON body, never a
trace. The server binds 127.0.0.1 unless told otherwise.
"""
from __future__ import annotations

import logging
from functools import partial

import trio
from hypercorn.trio import serve

from node.abc import NodeAPI
from node.asgi import (
    BodyTooLarge,
    ClientGone,
    HTTPLimits,
    Receive,
    Send,
    make_config,
    on_lifespan,
    read_body,
    send_json,
    send_no_content,
)
from node.openai_api import OpenAIAPI
from node.rpc import RPCDispatcher
from node.ui import UIFiles, is_ui_path
from primitives.errors import compute_text_excerpt
from primitives.limits import SAFE_RECURSION_LIMIT, set_safe_recursion_limit

log = logging.getLogger("magicoin.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545


class NodeApp:
    """The ASGI application for one node."""

    def __init__(self, node: NodeAPI, limits: HTTPLimits = HTTPLimits()) -> None:
        self.node = node
        self.limits = limits
        self.rpc = RPCDispatcher(node, max_body=limits.max_rpc_body)
        self.openai = OpenAIAPI(node)
        self.ui = UIFiles()
        self.requests = 0

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not offered
        self.requests += 1
        try:
            await self.route(scope, receive, send)
        except BodyTooLarge as error:
            await send_json(send, 413, error.to_json_rpc())
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
        elif is_ui_path(scope["path"]):
            await self.ui.handle(scope, send)
        else:
            await send_json(send, 404, {"error": {"message": f"no route {method} {compute_text_excerpt(path, 64)}",
                                                  "type": "not_found"}})

    async def on_rpc(self, scope: dict, receive: Receive, send: Send) -> None:
        body = await read_body(receive, scope, self.limits.max_rpc_body, self.limits.read_timeout)
        response = self.rpc.handle(body)
        if response is None:  # only notifications: nothing to say
            await send_no_content(send)
            return
        await send_json(send, 200, response)


def reset_recursion_limit() -> None:
    """Undo what libraries did on import (py-evm raises the limit to 12,288, py_ecc to 100,000).

    Request bodies are bounded before parsing whatever the limit is
    (`primitives.limits`); this keeps any decoder those bounds miss failing with
    a RecursionError rather than running off the C stack.
    """
    found = set_safe_recursion_limit()
    if found != SAFE_RECURSION_LIMIT:
        log.info("recursion limit reset from %d to %d", found, SAFE_RECURSION_LIMIT)


async def serve_http(node: NodeAPI, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
                     limits: HTTPLimits = HTTPLimits(), task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve JSON-RPC and the OpenAI API for `node` until cancelled.

    `await nursery.start(serve_http, node, host, port)` returns once the socket is
    listening, with its URL (e.g. "http://127.0.0.1:8545"; port 0 picks a free port).
    """
    app = NodeApp(node, limits)
    config = make_config(host, port, limits)
    reset_recursion_limit()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, mode="asgi"))
        log.info("serving JSON-RPC and the OpenAI API on %s (the annotation page: %s/ui)", binds[0], binds[0])
        task_status.started(binds[0])
