"""The node's HTTP server: one ASGI app for JSON-RPC and the OpenAI-compatible API, on hypercorn's trio worker.

Routes:
  POST /                     JSON-RPC 2.0 (`node.rpc.RPCDispatcher`, in worker threads, behind
                             `node.rpc_admission`: over a limit, 429 and -32005 at once)
  GET  /v1/models, /v1/models/{id}               `node.openai_api`
  POST /v1/chat/completions, /v1/completions      `node.openai_api` (JSON or server-sent events)
  GET  /ui, /ui/<file>       the annotation page (`node.ui`, static files; signing happens in the browser)
  websocket /                JSON-RPC with eth_subscribe (newHeads, logs), `node.ws`

hypercorn parses HTTP; this module only routes and bounds: request bodies are
limited (`HTTPLimits`), read incrementally so an oversized body is refused
without being buffered (`node.asgi`), and every error is a JSON body, never a
trace. The server binds 127.0.0.1 unless told otherwise.

Consensus comes first. The node's trio loop runs consensus, so HTTP does not run
on it. By default (`RPCLimits.front_process`) the public port belongs to the HTTP
front, a process of its own at a lower CPU priority (`node.rpc_front`, started
and restarted by `FrontProcess`): it parses HTTP and answers 429 / -32005 to
what is over a limit, so a flood costs the node's process nothing but the bodies
it admits. Those reach `NodeApp.on_channel_rpc` over a unix socket
(`node.rpc_channel`); every other request (the OpenAI API, the annotation page,
websockets) reaches the app below through hypercorn on a second unix socket,
naming its client (`ForwardedClient`). Both sockets are served on a thread of
the node with its own trio loop (`HTTPThread`).

JSON-RPC methods run in worker threads against a view of the chain pinned at
the head (`node.rpc.NodeView`), hopping onto the node's loop only for what the
loop owns (the mempool, status). The OpenAI API and websockets need the node's
loop (p2p streams, new-block events), so those requests run there, bridged
message by message (`LoopBridge`). Python's GIL is shared by every thread of a
process, so the switch interval is lowered (`GIL_SWITCH_INTERVAL`): the loop,
woken by a vote, waits about that long for a busy thread to let go; the
server-wide token budget (`RPCLimits.server_rate_limit`) bounds how much of the
GIL the worker threads take in all.

With `--http.front thread`, hypercorn takes the public port on the HTTP thread
itself, with the same admission control (`NodeApp.on_rpc`): no second process,
but HTTP parsing shares the node's GIL.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
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
    get_header,
    make_config,
    on_lifespan,
    read_body,
    send_body_timeout,
    send_json,
    send_no_content,
)
from node.openai_api import OpenAIAPI
from node.rpc import RPCDispatcher
from node.rpc_admission import (
    DEFAULT_COST,
    DEFAULT_RPC_LIMITS,
    Admission,
    LimitExceeded,
    RPCLimits,
    get_client_host,
)
from node.rpc_channel import (
    CHANNEL_SOCKET,
    CLIENT_HEADER,
    HTTP_SOCKET,
    ChannelServer,
    make_socket_dir,
)
from node.rpc_core import make_error_response
from node.rpc_workers import RPCWorkers
from node.ui import UIFiles, is_ui_path
from node.ws import ADMITTED_BY_FRONT, serve_websocket
from node.ws import MAX_MESSAGE_BYTES as MAX_WS_MESSAGE_BYTES
from primitives.errors import compute_text_excerpt
from primitives.limits import SAFE_RECURSION_LIMIT, set_safe_recursion_limit

log = logging.getLogger("magicoin.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8545
# Python's default is 5 ms: a thread wanting the GIL waits that long for a busy one, and the consensus
# loop, which sleeps and wakes on every message, pays it at each wake-up while the HTTP thread computes
# (the GIL "convoy"). 0.2 ms keeps that wait short; a forced switch only happens when a thread waits.
GIL_SWITCH_INTERVAL = 0.0002
DEFAULT_WORKERS = 4  # JSON-RPC worker threads when --http.max-concurrency is 0
MAX_BRIDGED = 1024  # requests and websockets running on the node's loop through the bridge at once


class NodeApp:
    """The ASGI application for one node."""

    def __init__(self, node: NodeAPI, limits: HTTPLimits = HTTPLimits(), rpc_limits: RPCLimits = DEFAULT_RPC_LIMITS) -> None:
        self.node = node
        self.limits = limits
        self.rpc = RPCDispatcher(node, max_body=limits.max_rpc_body)
        self.metrics = getattr(node, "metrics", None)  # NodeMetrics on a full node; absent on test doubles
        self.admission = Admission(rpc_limits, on_refused=self.on_refused)
        # The threads that run JSON-RPC methods off the consensus loop: the pool for HTTP bodies, and a
        # limiter for `trio.to_thread` from the node's loop (websocket messages, `node.ws`).
        self.workers = RPCWorkers(rpc_limits.max_concurrency or DEFAULT_WORKERS, self.rpc.handle_in_thread)
        self.rpc_threads = trio.CapacityLimiter(rpc_limits.max_concurrency or DEFAULT_WORKERS)
        self.on_loop = rpc_limits.on_loop
        self.openai = OpenAIAPI(node)
        self.ui = UIFiles()
        self.requests = 0
        self.front: FrontProcess | None = None  # the HTTP front process, when there is one

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await serve_websocket(self, scope, receive, send)  # JSON-RPC and eth_subscribe (node.ws)
            return
        if scope["type"] != "http":
            return
        await self.handle_http(scope, receive, send)

    async def handle_http(self, scope: dict, receive: Receive, send: Send) -> None:
        self.requests += 1
        try:
            await self.route(scope, receive, send)
        except BodyTooLarge as error:
            await send_json(send, 413, error.to_json_rpc())
        except ClientGone:
            pass
        except trio.TooSlowError:
            await send_body_timeout(send)

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
        """Admit, then serve in a worker thread (`node.rpc_workers`): the loop reads the body and writes the answer.

        Over a limit, the answer is 429 at once (`node.rpc_admission`). Admitted
        bodies wait in the pool's queue (they hold no thread); the wait is not
        cancelled, so shutdown waits for work taken before the database closes.
        """
        body = await read_body(receive, scope, self.limits.max_rpc_body, self.limits.read_timeout)
        if self.on_loop:  # the benchmark baseline: inline on the consensus loop, as before issue 14
            await self.send_rpc_response(send, self.rpc.handle(body))
            return
        client = get_client_host(scope)
        try:
            self.admission.admit(client)
        except LimitExceeded as error:
            await self.send_limited(send, error)
            return
        self.set_in_flight()
        started = time.perf_counter()
        try:
            response = await self.workers.run(body, partial(self.charge, client))
        except LimitExceeded as error:
            await self.send_limited(send, error)
            return
        finally:
            self.admission.release(client)
            self.set_in_flight()
        if self.metrics is not None:
            self.metrics.rpc_requests.labels("served").inc()
            self.metrics.rpc_seconds.observe(time.perf_counter() - started)
        await self.send_rpc_response(send, response)

    async def send_rpc_response(self, send: Send, response: bytes | None) -> None:
        if response is None:  # only notifications: nothing to say
            await send_no_content(send)
            return
        await send_json(send, 200, response)

    async def on_channel_rpc(self, client: str, body: bytes) -> bytes | None:
        """A body the front process admitted and charged (`node.rpc_channel`): served in a worker thread."""
        started = time.perf_counter()
        response = await self.workers.run(body, ignore_cost)
        if self.metrics is not None:
            self.metrics.rpc_requests.labels("served").inc()
            self.metrics.rpc_seconds.observe(time.perf_counter() - started)
        return response

    def on_front_restart(self) -> None:
        if self.metrics is not None:
            self.metrics.http_front_restarts.inc()

    def on_front_stats(self, stats: dict[str, int]) -> None:
        """The front's refusals since its last report, into the node's metrics (known limits only)."""
        if self.metrics is None:
            return
        limited = stats.get("limited", 0)
        if limited:
            self.metrics.rpc_requests.labels("limited").inc(limited)
        for limit in FRONT_LIMITS:
            if stats.get(limit):
                self.metrics.rpc_refused.labels(limit).inc(stats[limit])

    def charge(self, client: str, cost: int) -> None:
        """In the worker thread, once the body is parsed: the tokens beyond the one paid at admission."""
        self.admission.charge(client, cost - DEFAULT_COST)

    async def send_limited(self, send: Send, error: LimitExceeded) -> None:
        if self.metrics is not None:
            self.metrics.rpc_requests.labels("limited").inc()
        retry_after = str(max(1, math.ceil(error.retry_after))).encode()
        await send_json(send, 429, make_error_response(error.request_id, error), [(b"retry-after", retry_after)])

    def on_refused(self, limit: str) -> None:
        if self.metrics is not None:
            self.metrics.rpc_refused.labels(limit).inc()

    def set_in_flight(self) -> None:
        if self.metrics is not None:
            self.metrics.rpc_in_flight.set(self.admission.in_flight)


def ignore_cost(cost: int) -> None:
    """The front process charged the body's cost before sending it."""


# The limits the front process reports refusals by (node.rpc_admission's reasons): metric labels stay bounded.
FRONT_LIMITS = ("server busy", "client concurrency", "client rate", "server rate")


class ForwardedClient:
    """The node's own server behind the front process: its client is the peer the front names.

    It listens only on a unix socket in a directory only the node's user can
    enter, so the header is the front's word, not a client's.
    """

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "client": (get_header(scope, CLIENT_HEADER) or "unknown", 0), ADMITTED_BY_FRONT: True}
        await self.app(scope, receive, send)


class HTTPFront:
    """The ASGI app hypercorn runs on the HTTP thread's loop: JSON-RPC and static files here, the rest bridged.

    Everything under `/v1/` (the OpenAI API) and websockets run on the node's
    loop, in `NodeApp` as before; JSON-RPC over HTTP and the annotation page need
    nothing the loop owns, so they are served on this thread.
    """

    def __init__(self, app: NodeApp, bridge: LoopBridge) -> None:
        self.app = app
        self.bridge = bridge

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
        elif scope["type"] == "http" and not scope["path"].startswith("/v1/"):
            await self.app.handle_http(scope, receive, send)
        else:
            await self.bridge.run(self.app, scope, receive, send)


class LoopBridge:
    """Runs an ASGI call on the node's loop for a connection hypercorn serves on the HTTP thread's loop.

    Each `receive` and `send` of the app hops back to the HTTP loop through a
    thread (`trio.from_thread.run`). A `receive` the app stops waiting for (the
    OpenAI stream's disconnect watcher, cancelled when the stream ends) is
    abandoned: hypercorn answers it with http.disconnect once the response is
    complete, which frees its thread. When the HTTP loop stops, the app's next
    hop raises `trio.RunFinishedError` on the node's loop, which ends it.
    """

    def __init__(self, node_token: trio.lowlevel.TrioToken) -> None:
        self.node_token = node_token
        self.http_threads = trio.CapacityLimiter(MAX_BRIDGED)
        self.node_threads = trio.CapacityLimiter(2 * MAX_BRIDGED)  # a receive and a send per call at most

    async def run(self, app: NodeApp, scope: dict, receive: Receive, send: Send) -> None:
        http_token = trio.lowlevel.current_trio_token()

        async def node_receive() -> dict:
            return await trio.to_thread.run_sync(partial(trio.from_thread.run, receive, trio_token=http_token),
                                                 abandon_on_cancel=True, limiter=self.node_threads)

        async def node_send(message: dict) -> None:
            await trio.to_thread.run_sync(partial(trio.from_thread.run, send, message, trio_token=http_token),
                                          limiter=self.node_threads)

        await trio.to_thread.run_sync(
            partial(trio.from_thread.run, app, scope, node_receive, node_send, trio_token=self.node_token),
            abandon_on_cancel=True, limiter=self.http_threads)


class HTTPThread:
    """hypercorn on a thread of its own, in its own `trio.run`, started and stopped from the node's loop."""

    def __init__(self, app, config, services: tuple = ()) -> None:
        self.app = app
        self.config = config
        self.services = services  # more `async def run(*, task_status)` to serve on this thread's loop
        self.binds: list[str] = []
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._thread = threading.Thread(target=self._run, name="magicoin-http", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # noqa: BLE001 - handed to the node's loop, which raises it
            self.error = error
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                for service in self.services:
                    await nursery.start(service)
                self.binds = await nursery.start(partial(serve, self.app, self.config, mode="asgi"))
                self._ready.set()

    async def start(self) -> str:
        """The URL once hypercorn listens; the bind error if it cannot."""
        self._thread.start()
        await trio.to_thread.run_sync(self._ready.wait)
        if self.error is not None:
            raise self.error
        return self.binds[0]

    async def wait(self) -> None:
        """Until the thread ends: raises what ended it, if it was not asked to stop."""
        await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)
        if self.error is not None:
            raise self.error

    async def stop(self) -> None:
        """Stop hypercorn (its graceful timeout) and wait for the thread; call shielded."""
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass
        await trio.to_thread.run_sync(self._thread.join)


class FrontFailed(Exception):
    """The HTTP front process could not start: the node does not serve HTTP without it."""


class FrontProcess:
    """The HTTP front (`node.rpc_front`) as a child process, started again whenever it ends while the node runs.

    The node owns the listening socket and passes it down, so the port stays
    bound across restarts and connections made meanwhile wait in its backlog.
    The front ends by itself when its channel to the node closes; the node
    terminating (or dying) closes it.
    """

    READY_TIMEOUT = 60.0
    STOP_TIMEOUT = 5.0
    RESTART_DELAY = 0.5

    def __init__(self, listener: socket.socket, socket_dir: str, limits: HTTPLimits, rpc_limits: RPCLimits,
                 on_restart=None) -> None:
        self.on_restart = on_restart  # called before each restart (the node's metrics count them)
        self.listener = listener
        self.socket_dir = socket_dir
        self.limits = limits
        self.rpc_limits = rpc_limits
        self.restarts = 0
        self.pid: int | None = None

    def get_command(self) -> list[str]:
        limits = json.dumps({"http": self.limits._asdict(), "rpc": self.rpc_limits._asdict()})
        return [sys.executable, "-m", "node.rpc_front", "--fd", str(self.listener.fileno()),
                "--socket-dir", self.socket_dir, "--limits", limits]

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            process = await trio.lowlevel.open_process(self.get_command(), stdout=subprocess.PIPE,
                                                       pass_fds=(self.listener.fileno(),))
            self.pid = process.pid
            try:
                await self.wait_ready(process)
                if not started:
                    started = True
                    task_status.started(process.pid)
                code = await process.wait()
            except FrontFailed:
                if not started:
                    raise
                code = process.returncode
            finally:
                with trio.CancelScope(shield=True):
                    await stop_process(process, self.STOP_TIMEOUT)
            self.restarts += 1
            if self.on_restart is not None:
                self.on_restart()
            log.error("the HTTP front process exited (code %s); starting it again (restart %d)", code, self.restarts)
            await trio.sleep(self.RESTART_DELAY)

    async def wait_ready(self, process: trio.Process) -> None:
        """Until the front prints "ready"; FrontFailed if it exits or stays silent first."""
        output = b""
        with trio.move_on_after(self.READY_TIMEOUT):
            while b"ready\n" not in output:
                chunk = await process.stdout.receive_some(256)
                if not chunk:
                    raise FrontFailed(f"the HTTP front process exited before serving (code {await process.wait()})")
                output = (output + chunk)[-1024:]
            return
        raise FrontFailed(f"the HTTP front process did not start within {self.READY_TIMEOUT:.0f} s")


async def stop_process(process: trio.Process, timeout: float) -> None:
    if process.returncode is None:
        process.terminate()
        with trio.move_on_after(timeout):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()


def open_listener(host: str, port: int) -> socket.socket:
    """The public HTTP socket, opened here and served by the front process (it inherits the descriptor)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.create_server((host, port), family=family, backlog=1024)
    listener.set_inheritable(True)
    return listener


def get_url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def serve_in_front_process(app: NodeApp, host: str, port: int, limits: HTTPLimits, rpc_limits: RPCLimits,
                                 node_token: trio.lowlevel.TrioToken, task_status) -> None:
    """The node's own server on unix sockets, the front process on the public port (`node.rpc_front`)."""
    listener = open_listener(host, port)
    socket_dir = make_socket_dir()
    config = make_config("127.0.0.1", 0, limits)
    config.bind = [f"unix:{os.path.join(socket_dir, HTTP_SOCKET)}"]
    config.websocket_max_message_size = MAX_WS_MESSAGE_BYTES
    channel = ChannelServer(os.path.join(socket_dir, CHANNEL_SOCKET), app.on_channel_rpc, app.on_front_stats,
                            max_body=limits.max_rpc_body, max_in_flight=max(8, app.admission.capacity or 256))
    server = HTTPThread(ForwardedClient(HTTPFront(app, LoopBridge(node_token))), config, services=(channel.run,))
    front = FrontProcess(listener, socket_dir, limits, rpc_limits, on_restart=app.on_front_restart)
    app.front = front
    try:
        await server.start()
        async with trio.open_nursery() as nursery:
            await nursery.start(front.run)
            url = get_url(listener)
            log.info("serving JSON-RPC and the OpenAI API on %s through the HTTP front process (pid %s); "
                     "the annotation page: %s/ui", url, front.pid, url)
            task_status.started(url)
            await server.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()
            await trio.to_thread.run_sync(app.workers.stop)
        listener.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


async def serve_on_loop(app: NodeApp, config, task_status) -> None:
    """hypercorn on the node's own loop (`RPCLimits.on_loop`): the server as it was before issue 14."""
    log.warning("serving HTTP on the consensus loop (--http.on-loop): a benchmark baseline, not for production")
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, app, config, mode="asgi"))
        task_status.started(binds[0])


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
                     limits: HTTPLimits = HTTPLimits(), rpc_limits: RPCLimits = DEFAULT_RPC_LIMITS,
                     task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve JSON-RPC and the OpenAI API for `node` until cancelled.

    `await nursery.start(serve_http, node, host, port)` returns once the socket is
    listening, with its URL (e.g. "http://127.0.0.1:8545"; port 0 picks a free port).
    """
    app = NodeApp(node, limits, rpc_limits)
    node_token = trio.lowlevel.current_trio_token()
    app.rpc.loop_token = node_token  # worker threads of either loop hop onto this one for loop-owned state
    config = make_config(host, port, limits)
    config.websocket_max_message_size = MAX_WS_MESSAGE_BYTES
    reset_recursion_limit()
    if rpc_limits.on_loop:
        await serve_on_loop(app, config, task_status)
        return
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
    if rpc_limits.front_process:
        await serve_in_front_process(app, host, port, limits, rpc_limits, node_token, task_status)
        return
    server = HTTPThread(HTTPFront(app, LoopBridge(node_token)), config)
    try:
        url = await server.start()
        log.info("serving JSON-RPC and the OpenAI API on %s (the annotation page: %s/ui)", url, url)
        task_status.started(url)
        await server.wait()
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()
            await trio.to_thread.run_sync(app.workers.stop)
