"""The HTTP front: a process of its own that takes the node's public HTTP port, so no request shares the node's CPU time.

Python runs one thread at a time per process. Served in the node's process,
HTTP parsing alone (hypercorn and h11 are pure Python) took the node's GIL often
enough that a flood of requests stretched the consensus loop's replies to
votes. Here the node (`node.http`) opens the listening socket and hands it to
this process, which

- parses HTTP (uvicorn on uvloop, with httptools' C parser, bounded by
  `BoundedHttpTools`: head size, head time, open connections), reads each body
  within `HTTPLimits`, prices it (`compute_body_cost`) and runs admission
  control (`node.rpc_admission`: per-client token buckets, in-flight caps, a
  server-wide budget), answering 429 / -32005 itself: a refused request never
  reaches the node;
- sends each admitted JSON-RPC body to the node over the channel
  (`node.rpc_channel`, a unix socket), where it runs in the node's worker threads;
- passes every other request (the OpenAI API with its server-sent events, the
  annotation page, websockets) to the node's own server on a second unix
  socket, naming the client in `x-magicoin-client` so the node's limits count by
  the real peer. Both sockets are in a directory only the node's user can enter.

It runs at a lower CPU priority (`FRONT_NICENESS`) than the node: when the
machine is short of CPU, consensus gets it first and HTTP clients wait.

It ends when its channel to the node closes (the node stopped or died), and the
node starts a new one if it ends on its own (`node.http.FrontProcess`); the
listening socket stays open in the node meanwhile, so clients queue, not fail.

Run by the node as ``python -m node.rpc_front --fd N --socket-dir D --limits JSON``;
it prints "ready" once it serves.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import httpx
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from node.asgi import (
    BodyTooLarge,
    ClientGone,
    HTTPLimits,
    Receive,
    Send,
    on_lifespan,
    receive_body,
    send_body_timeout,
    send_json,
)
from node.logs import enable_crash_traces
from node.rpc_admission import (
    DEFAULT_COST,
    SUBSCRIPTION_METHODS,
    Admission,
    LimitExceeded,
    RPCLimits,
    compute_cost,
    get_client_host,
)
from node.rpc_channel import (
    CHANNEL_SOCKET,
    CLIENT_HEADER,
    HEADER,
    HTTP_SOCKET,
    RESPONSE,
    STATS,
    FrameError,
    decode_response,
    encode_frame,
    encode_request,
    validate_header,
)
from node.rpc_errors import is_valid_id, make_error_response
from primitives.limits import (
    BoundedInputError,
    decode_json_bounded,
    set_safe_recursion_limit,
)

log = logging.getLogger("magicoin.http.front")

FRONT_NICENESS = 5
STATS_INTERVAL = 0.1  # refusal counts reach the node's metrics this often, when there are any
MAX_WS_MESSAGE_BYTES = 1 << 20
# Hop-by-hop headers (RFC 9110 7.6.1) are the connection's, not the message's: never forwarded.
HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"transfer-encoding",
              b"upgrade", b"host", CLIENT_HEADER}


class ChannelClosed(Exception):
    """The node closed the channel: it stopped or died, and this process ends."""


class Channel:
    """The front's side of `node.rpc_channel`: many calls in flight on one unix socket, answers matched by id."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[int, asyncio.Future] = {}
        self.ids = itertools.count(1)
        self.closed = asyncio.Event()

    @classmethod
    async def connect(cls, path: str) -> Channel:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 20)
        return cls(reader, writer)

    async def call(self, client: str, body: bytes) -> tuple[int, bytes | None]:
        if self.closed.is_set():
            raise ChannelClosed()
        request_id = next(self.ids) & 0xFFFFFFFF
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        self.writer.write(encode_request(request_id, client, body))
        try:
            return await future
        finally:
            self.pending.pop(request_id, None)

    def send_stats(self, stats: dict[str, int]) -> None:
        if not self.closed.is_set():
            self.writer.write(encode_frame(STATS, 0, json.dumps(stats).encode()))

    async def read_answers(self) -> None:
        """Until the node closes the channel; then every waiting call fails with ChannelClosed."""
        try:
            while True:
                header = await self.reader.readexactly(HEADER.size)
                length, kind, request_id = HEADER.unpack(header)
                validate_header(length, kind, 0)
                if kind != RESPONSE:
                    raise FrameError("frame kind from the node", kind, RESPONSE)
                payload = await self.reader.readexactly(length)
                future = self.pending.get(request_id)
                if future is not None and not future.done():
                    future.set_result(decode_response(payload))
        except (asyncio.IncompleteReadError, ConnectionError, FrameError) as error:
            log.info("channel to the node closed: %s", error or "end of stream")
        finally:
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ChannelClosed())


class RefusalCounter:
    """What the front refused, sent to the node in STATS frames so that its metrics see every request."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def on_refused(self, limit: str) -> None:
        self.counts[limit] = self.counts.get(limit, 0) + 1

    def on_limited(self) -> None:
        self.counts["limited"] = self.counts.get("limited", 0) + 1

    def take(self) -> dict[str, int]:
        counts, self.counts = self.counts, {}
        return counts


class FrontApp:
    """The ASGI app of the front: JSON-RPC admitted here and run by the node, everything else passed through."""

    def __init__(self, channel: Channel, socket_dir: str, limits: HTTPLimits, rpc_limits: RPCLimits) -> None:
        self.channel = channel
        self.http_socket = os.path.join(socket_dir, HTTP_SOCKET)
        self.limits = limits
        self.refusals = RefusalCounter()
        self.admission = Admission(rpc_limits, on_refused=self.refusals.on_refused)
        self.upstream = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=self.http_socket),
                                          base_url="http://magicoin-node", timeout=httpx.Timeout(None, connect=10.0))

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
        elif scope["type"] == "websocket":
            await proxy_websocket(self.http_socket, scope, receive, send, self.charge_message)
        elif scope["type"] == "http":
            if scope["method"] == "POST" and (scope["path"].rstrip("/") or "/") == "/":
                await self.on_rpc(scope, receive, send)
            else:
                await proxy_http(self.upstream, scope, receive, send)

    async def on_rpc(self, scope: dict, receive: Receive, send: Send) -> None:
        """Admit, charge the parsed body's cost, and have the node serve it; 429 at the first limit reached."""
        client = get_client_host(scope)
        try:
            async with asyncio.timeout(self.limits.read_timeout):
                body = await receive_body(receive, scope, self.limits.max_rpc_body)
        except BodyTooLarge as error:
            await send_json(send, 413, error.to_json_rpc())
            return
        except ClientGone:
            return
        except TimeoutError:
            await send_body_timeout(send)
            return
        cost, request_id = compute_body_cost(body)
        try:
            self.admission.admit(client, cost)
        except LimitExceeded as error:
            error.request_id = request_id  # a single request's refusal keeps its id, as the node's would
            await self.send_limited(send, error)
            return
        try:
            status, response = await self.channel.call(client, body)
        except ChannelClosed:
            await send_json(send, 503, {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32603, "message": "the node is restarting its HTTP front; retry"}})
            return
        finally:
            self.admission.release(client)
        if response is None:
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
        else:
            await send_json(send, status, response)

    def charge_message(self, client: str, body: bytes) -> dict | None:
        """A websocket message's cost, charged to the same allowance as HTTP posts; the refusal to send, if over.

        Subscribing and unsubscribing run nothing and are free, as on the node.
        """
        cost, request_id = compute_message_cost(body)
        if not cost:
            return None
        try:
            self.admission.admit(client, cost)
            self.admission.release(client)
        except LimitExceeded as error:
            self.refusals.on_limited()
            return make_error_response(request_id, error)
        return None

    async def send_limited(self, send: Send, error: LimitExceeded) -> None:
        self.refusals.on_limited()
        retry_after = str(max(1, math.ceil(error.retry_after))).encode()
        await send_json(send, 429, make_error_response(error.request_id, error), [(b"retry-after", retry_after)])

    async def report_refusals(self) -> None:
        while not self.channel.closed.is_set():
            await asyncio.sleep(STATS_INTERVAL)
            counts = self.refusals.take()
            if counts:
                self.channel.send_stats(counts)


def compute_body_cost(body: bytes) -> tuple[int, Any]:
    """A body's tokens (`node.rpc_admission.compute_cost`) and, for a single request, its id.

    A body the node will refuse unparsed costs one token.
    """
    try:
        message = decode_json_bounded(body, max_size=len(body))
    except (BoundedInputError, ValueError, RecursionError):
        return DEFAULT_COST, None
    request_id = message.get("id") if isinstance(message, dict) else None
    return compute_cost(message), request_id if is_valid_id(request_id) else None


def compute_message_cost(body: bytes) -> tuple[int, Any]:
    """A websocket message's tokens and id: `compute_body_cost`, except subscriptions alone cost nothing."""
    try:
        message = decode_json_bounded(body, max_size=MAX_WS_MESSAGE_BYTES)
    except (BoundedInputError, ValueError, RecursionError):
        return DEFAULT_COST, None
    items = message if isinstance(message, list) else [message]
    if items and all(isinstance(item, dict) and item.get("method") in SUBSCRIPTION_METHODS for item in items):
        return 0, None
    request_id = message.get("id") if isinstance(message, dict) else None
    return compute_cost(message), request_id if is_valid_id(request_id) else None


# --- passing requests through to the node's own server -----------------------------------------

def get_forward_headers(scope: dict) -> list[tuple[bytes, bytes]]:
    headers = [(key, value) for key, value in scope.get("headers", ()) if key.lower() not in HOP_BY_HOP]
    return headers + [(CLIENT_HEADER, get_client_host(scope).encode())]


async def proxy_http(upstream: httpx.AsyncClient, scope: dict, receive: Receive, send: Send) -> None:
    """One request through to the node, its response streamed back (server-sent events chunk by chunk).

    When the client goes away mid-response, the upstream request is closed, and
    the node sees its client disconnect as if it were served directly.
    """
    body_done = asyncio.Event()

    async def request_body():
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            yield message.get("body", b"")
            if not message.get("more_body", False):
                body_done.set()
                return

    target = scope.get("raw_path") or scope["path"].encode()
    if scope.get("query_string"):
        target += b"?" + scope["query_string"]
    request = upstream.build_request(scope["method"], target.decode("latin-1"),
                                     headers=get_forward_headers(scope), content=request_body())
    try:
        response = await upstream.send(request, stream=True)
    except (httpx.HTTPError, ClientGone) as error:
        if not isinstance(error, ClientGone):
            await send_json(send, 502, {"error": {"message": "the node did not answer", "type": "bad_gateway"}})
        return
    try:
        await stream_response(response, receive, send, body_done)
    finally:
        await response.aclose()


async def stream_response(response: httpx.Response, receive: Receive, send: Send, body_done: asyncio.Event) -> None:
    headers = [(key, value) for key, value in response.headers.raw if key.lower() not in HOP_BY_HOP]
    await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
    relay = asyncio.ensure_future(relay_body(response, send))
    watch = asyncio.ensure_future(watch_disconnect(receive, body_done))
    try:
        await asyncio.wait({relay, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (relay, watch):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await relay
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watch
    if relay.done() and not relay.cancelled() and relay.exception() is None:
        return
    # the client left (or the node's stream broke): the response ends here


async def relay_body(response: httpx.Response, send: Send) -> None:
    async for chunk in response.aiter_raw():
        if chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def watch_disconnect(receive: Receive, body_done: asyncio.Event) -> None:
    await body_done.wait()
    while (await receive())["type"] != "http.disconnect":
        pass


async def proxy_websocket(http_socket: str, scope: dict, receive: Receive, send: Send,
                          charge: Callable[[str, bytes], dict | None]) -> None:
    """A websocket through to the node: the node accepts or refuses it, messages pass both ways, closes too.

    Each message from the client is charged first (`charge`); one over the
    client's allowance is answered here with its -32005 error and not passed on.
    """
    if (await receive())["type"] != "websocket.connect":
        return
    target = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
    try:
        upstream = await unix_connect(http_socket, uri=f"ws://magicoin-node{target}", open_timeout=10,
                                      additional_headers=[(CLIENT_HEADER.decode(), get_client_host(scope))],
                                      max_size=MAX_WS_MESSAGE_BYTES, compression=None, ping_interval=None)
    except InvalidStatus as error:
        await send({"type": "websocket.http.response.start", "status": error.response.status_code, "headers": []})
        await send({"type": "websocket.http.response.body", "body": error.response.body or b""})
        return
    except (OSError, InvalidHandshake, TimeoutError):
        await send({"type": "websocket.close", "code": 1011})
        return
    await send({"type": "websocket.accept"})
    async with upstream:
        to_node = asyncio.ensure_future(pass_to_node(receive, send, upstream,
                                                     partial(charge, get_client_host(scope))))
        to_client = asyncio.ensure_future(pass_to_client(upstream, send))
        await asyncio.wait({to_node, to_client}, return_when=asyncio.FIRST_COMPLETED)
        for task in (to_node, to_client):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def pass_to_node(receive: Receive, send: Send, upstream, charge: Callable[[bytes], dict | None]) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            await upstream.close(message.get("code", 1000))
            return
        data = message.get("text") if message.get("text") is not None else message.get("bytes")
        if data is None:
            continue
        refusal = charge(data.encode() if isinstance(data, str) else data)
        if refusal is not None:
            await send({"type": "websocket.send", "text": json.dumps(refusal, separators=(",", ":"))})
        else:
            await upstream.send(data)


async def pass_to_client(upstream, send: Send) -> None:
    try:
        async for message in upstream:
            key = "text" if isinstance(message, str) else "bytes"
            await send({"type": "websocket.send", key: message})
    except ConnectionClosed:
        pass
    await send({"type": "websocket.close", "code": upstream.close_code or 1000,
                "reason": upstream.close_reason or ""})


# --- the process -------------------------------------------------------------------------------

class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, bounded as an open port must be.

    llhttp (httptools) parses in C, several times faster than h11, but neither it nor
    uvicorn bounds a request's head or how long it may take to arrive. Here:
    a request line and headers of at most `max_head_bytes` (over it: 400, and the
    connection closes), `head_timeout` seconds from the connection (or a request's
    first byte) to the end of its head, and at most `max_connections` open
    connections (one more is closed at once, before a byte is read).
    """

    max_head_bytes = HTTPLimits().max_header_bytes
    head_timeout = HTTPLimits().head_timeout
    max_connections = HTTPLimits().max_connections

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.head_bytes = 0
        self.head_timer = None
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self.arm_head_timer()

    def connection_lost(self, exc) -> None:
        self.cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        if self.head_timer is None:
            self.arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self.count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.count_head(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.cancel_head_timer()
        super().on_headers_complete()

    def count_head(self, size: int) -> None:
        """Raised inside llhttp's callback, a HeadTooLarge ends as uvicorn's 400 answer and a closed connection."""
        self.head_bytes += size
        if self.head_bytes > self.max_head_bytes:
            raise HeadTooLarge(self.head_bytes, self.max_head_bytes)

    def arm_head_timer(self) -> None:
        self.cancel_head_timer()
        self.head_timer = self.loop.call_later(self.head_timeout, self.on_head_timeout)

    def cancel_head_timer(self) -> None:
        if getattr(self, "head_timer", None) is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def on_head_timeout(self) -> None:
        self.head_timer = None
        if not self.transport.is_closing():
            self.transport.close()


class HeadTooLarge(Exception):
    def __init__(self, got: int, limit: int) -> None:
        super().__init__(f"request head of {got} bytes or more exceeds the {limit}-byte limit")


def make_protocol(limits: HTTPLimits) -> type[BoundedHttpTools]:
    return type("FrontHttpTools", (BoundedHttpTools,), {"max_head_bytes": limits.max_header_bytes,
                                                        "head_timeout": limits.head_timeout,
                                                        "max_connections": limits.max_connections})


async def run_front(fd: int, socket_dir: str, limits: HTTPLimits, rpc_limits: RPCLimits) -> None:
    channel = await Channel.connect(os.path.join(socket_dir, CHANNEL_SOCKET))
    app = FrontApp(channel, socket_dir, limits, rpc_limits)
    config = uvicorn.Config(
        app, http=make_protocol(limits), ws="websockets-sansio", lifespan="off", access_log=False,
        log_level="warning", server_header=False, date_header=False, ws_max_size=MAX_WS_MESSAGE_BYTES,
        ws_ping_interval=None, timeout_keep_alive=math.ceil(limits.keep_alive_timeout),
        limit_concurrency=limits.max_connections, timeout_graceful_shutdown=2, backlog=1024)
    server = uvicorn.Server(config)
    listener = socket.socket(fileno=fd)  # the node's socket: its family and address come with it

    async def stop_when_the_node_goes() -> None:
        await channel.closed.wait()
        server.should_exit = True

    tasks = [asyncio.ensure_future(channel.read_answers()), asyncio.ensure_future(app.report_refusals()),
             asyncio.ensure_future(stop_when_the_node_goes())]
    print("ready", flush=True)
    try:
        await server.serve(sockets=[listener])
    finally:
        for task in tasks:
            task.cancel()
        await app.upstream.aclose()


def parse_limits(text: str) -> tuple[HTTPLimits, RPCLimits]:
    """The limits the node passed on its command line (`node.http.FrontProcess`)."""
    settings = json.loads(text)
    return HTTPLimits(**settings["http"]), RPCLimits(**settings["rpc"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fd", type=int, required=True, help="the listening socket, opened by the node")
    parser.add_argument("--socket-dir", required=True)
    parser.add_argument("--limits", required=True, help="HTTPLimits and RPCLimits as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    enable_crash_traces()  # a fatal error prints every thread's stack to stderr, the node's log stream
    set_safe_recursion_limit()
    with contextlib.suppress(OSError):
        os.nice(FRONT_NICENESS)
    limits, rpc_limits = parse_limits(args.limits)
    started = time.monotonic()
    uvloop.run(run_front(args.fd, args.socket_dir, limits, rpc_limits))
    log.info("HTTP front stopped after %.0f s", time.monotonic() - started)


if __name__ == "__main__":
    main()

