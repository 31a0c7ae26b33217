"""JSON-RPC over WebSocket on the HTTP port, with `eth_subscribe`/`eth_unsubscribe` for `newHeads` and `logs`.

As geth serves them: a client connects to ws://<http.addr>:<http.port>/ and
sends JSON-RPC requests as text (or binary) messages. Every method of the HTTP
server is answered (run in a worker thread like HTTP requests, `node.rpc`);
`eth_subscribe("newHeads")` and `eth_subscribe("logs", {address, topics})`
return a subscription id, then each imported block is pushed as
`{"method": "eth_subscription", "params": {"subscription": id, "result": ...}}`:
the block header (the block object without transactions) for newHeads, and
one notification per matching log for logs (`node.rpc_logs` shapes and
matching; fromBlock/toBlock do not apply to a subscription).

Bounds: a message is at most `MAX_MESSAGE_BYTES` (hypercorn closes the
connection with 1009 beyond its own limit, set to the same by `node.http`), and
decoded by `primitives.limits` like an HTTP body; a connection has at most
`MAX_SUBSCRIPTIONS` subscriptions and the node at most `MAX_CONNECTIONS`
websocket connections (1013 "try again later" beyond). Each connection has one
bounded outbox (`OUTBOX_SIZE` messages, a trio memory channel) that a single
task writes to the socket: a subscriber that lets it fill is dropped (closed
with 1008 "subscriber too slow") rather than buffered without limit. A
connection that holds no subscription and sends nothing for `IDLE_SECONDS` is
closed (1000), so idle sockets cannot keep the connection slots.

New blocks arrive through `publish_block(node, block)`, which the node calls
from its block-imported listener on the trio thread (`node.service`); it never
blocks. The connections of a node are kept in a `SubscriptionHub` found by the
node's block store, as `node.rpc_filters` finds its filters.
"""
from __future__ import annotations

import json
import logging
import secrets
import weakref
from typing import Any

import trio

from node.abc import NodeAPI
from node.rpc_admission import (
    DEFAULT_COST,
    SUBSCRIPTION_METHODS,
    LimitExceeded,
    compute_cost,
    get_client_host,
)
from node.rpc_core import (
    JSONRPC_VERSION,
    MAX_BATCH_SIZE,
    InvalidParams,
    InvalidRequest,
    RPCError,
    decode_request_body,
    is_valid_id,
    make_error_response,
)
from node.rpc_eth import encode_block
from node.rpc_logs import (
    LogFilter,
    encode_log,
    get_block_logs,
    is_log_matching,
    parse_log_query,
)

log = logging.getLogger("magicoin.ws")

MAX_MESSAGE_BYTES = 1 << 20
MAX_SUBSCRIPTIONS = 64
MAX_CONNECTIONS = 256
OUTBOX_SIZE = 1024
CLOSE_TOO_SLOW = 1008
CLOSE_TRY_LATER = 1013
CLOSE_IDLE = 1000  # a normal closure: the client may reconnect when it has something to ask
# A connection that holds no subscription and sends nothing this long is closed, so idle sockets cannot
# hold the MAX_CONNECTIONS slots; one with a subscription is listening, however quiet.
IDLE_SECONDS = 60.0
NEW_HEADS = "newHeads"
HEADER_ONLY = ("transactions", "uncles", "size", "totalDifficulty")


# The scope key the node's server behind the front process sets (node.http.ForwardedClient).
ADMITTED_BY_FRONT = "magicoin.admitted_by_front"


class SubscriptionLimit(RPCError):
    code = -32005


class Connection:
    """One websocket client: its subscriptions and its bounded outbox."""

    def __init__(self, client: str = "unknown", admitted_by_front: bool = False) -> None:
        self.client = client  # the peer's address: its requests are charged to its allowance (node.rpc_admission)
        # Passed through the HTTP front process (node.rpc_front), which charged each message already.
        self.admitted_by_front = admitted_by_front
        self.outbox, self.outgoing = trio.open_memory_channel[str](OUTBOX_SIZE)
        self.subscriptions: dict[str, LogFilter | None] = {}  # id -> log criteria, None for newHeads
        self.cancel_scope: trio.CancelScope | None = None
        self.dropped = False
        self.idle = False  # closed for holding no subscription and sending nothing for IDLE_SECONDS

    def push(self, message: str) -> None:
        """Queue a message without waiting; a full outbox drops the subscriber."""
        if self.dropped:
            return
        try:
            self.outbox.send_nowait(message)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self.dropped = True
            if self.cancel_scope is not None:
                self.cancel_scope.cancel()


class SubscriptionHub:
    """The websocket connections of one node, fed by `on_block`."""

    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self.dropped = 0

    def on_block(self, node: NodeAPI, block) -> None:
        subscribed = [c for c in self.connections if c.subscriptions]
        if not subscribed:
            return
        head = None
        block_logs = None
        for connection in subscribed:
            for subscription, criteria in list(connection.subscriptions.items()):
                if criteria is None:
                    if head is None:
                        head = {k: v for k, v in encode_block(node, block, False).items() if k not in HEADER_ONLY}
                    connection.push(encode_notification(subscription, head))
                    continue
                if block_logs is None:
                    bloom = node.chain.store.get_logs_bloom(block.hash)
                    block_logs = get_block_logs(node.chain, block) if bloom is not None else []
                for item in block_logs:
                    if is_log_matching(item.log, criteria):
                        connection.push(encode_notification(subscription, encode_log(item)))
            if connection.dropped:
                self.dropped += 1
                log.info("websocket subscriber dropped: its outbox of %d messages was full", OUTBOX_SIZE)


_HUBS: weakref.WeakKeyDictionary[object, SubscriptionHub] = weakref.WeakKeyDictionary()


def get_hub(node: NodeAPI) -> SubscriptionHub:
    hub = _HUBS.get(node.chain.store)
    if hub is None:
        hub = _HUBS[node.chain.store] = SubscriptionHub()
    return hub


def publish_block(node: NodeAPI, block) -> None:
    """Push `block` to the node's subscribers (on the trio thread; never waits)."""
    hub = _HUBS.get(node.chain.store)
    if hub is not None:
        hub.on_block(node, block)


def encode_notification(subscription: str, result: Any) -> str:
    return json.dumps({"jsonrpc": JSONRPC_VERSION, "method": "eth_subscription",
                       "params": {"subscription": subscription, "result": result}}, separators=(",", ":"))


def encode_message(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


# --- one connection -------------------------------------------------------------------------------------

async def serve_websocket(app, scope: dict, receive, send) -> None:
    """The ASGI websocket session of `app` (a `node.http.NodeApp`: its node, dispatcher and worker limiter)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    hub = get_hub(app.node)
    if len(hub.connections) >= MAX_CONNECTIONS:
        await send({"type": "websocket.close", "code": CLOSE_TRY_LATER})
        return
    await send({"type": "websocket.accept"})
    connection = Connection(get_client_host(scope), bool(scope.get(ADMITTED_BY_FRONT)))
    hub.connections.add(connection)
    try:
        async with trio.open_nursery() as nursery:
            connection.cancel_scope = nursery.cancel_scope
            nursery.start_soon(write_messages, connection, send)
            await read_messages(app, connection, receive)
            nursery.cancel_scope.cancel()
    finally:
        hub.connections.discard(connection)
        connection.outbox.close()
    if connection.dropped:
        await send_close(send, CLOSE_TOO_SLOW, f"subscriber too slow: {OUTBOX_SIZE} messages unread")
    elif connection.idle:
        await send_close(send, CLOSE_IDLE, f"idle for {IDLE_SECONDS:g} s without a subscription")


async def send_close(send, code: int, reason: str) -> None:
    try:
        await send({"type": "websocket.close", "code": code, "reason": reason})
    except Exception as error:  # noqa: BLE001 - the client may already be gone; nothing is left to tell it
        log.debug("websocket close not sent: %s", error)


async def write_messages(connection: Connection, send) -> None:
    """The only writer of the socket: the outbox in order (responses and notifications alike)."""
    try:
        async for text in connection.outgoing:
            await send({"type": "websocket.send", "text": text})
    except Exception:  # noqa: BLE001 - a failed send means the client left; the reader sees its disconnect
        if connection.cancel_scope is not None:
            connection.cancel_scope.cancel()


async def read_messages(app, connection: Connection, receive) -> None:
    while True:
        with trio.move_on_after(IDLE_SECONDS) as waiting:
            message = await receive()
        if waiting.cancelled_caught:
            if connection.subscriptions:
                continue
            connection.idle = True
            return
        if message["type"] == "websocket.disconnect":
            return
        if message["type"] != "websocket.receive":
            continue
        body = message.get("bytes") or (message.get("text") or "").encode()
        response = await handle_body(app, connection, body)
        if response is not None:
            try:
                await connection.outbox.send(encode_message(response))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return


async def handle_body(app, connection: Connection, body: bytes) -> Any:
    """The response to one websocket message (a request or a batch); None for notifications only."""
    try:
        if len(body) > MAX_MESSAGE_BYTES:
            raise InvalidRequest("message too large", {"got": len(body), "expected": MAX_MESSAGE_BYTES})
        request = decode_request_body(body, MAX_MESSAGE_BYTES)
    except RPCError as error:
        return make_error_response(None, error)
    if isinstance(request, list):
        if not request or len(request) > MAX_BATCH_SIZE:
            return make_error_response(None, InvalidRequest("a batch holds 1..100 requests"))
        responses = [r for r in [await handle_request(app, connection, item) for item in request] if r is not None]
        return responses or None
    return await handle_request(app, connection, request)


async def handle_request(app, connection: Connection, request: Any) -> dict | None:
    if isinstance(request, dict) and request.get("method") in SUBSCRIPTION_METHODS:
        request_id = request.get("id")
        if not is_valid_id(request_id):
            return make_error_response(None, InvalidRequest("id must be a string, a number or null"))
        try:
            if request["method"] == "eth_subscribe":
                result = subscribe(connection, request.get("params"))
            else:
                result = unsubscribe(connection, request.get("params"))
        except RPCError as error:
            return make_error_response(request_id, error)
        return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}
    # Any other method: charged to the peer's allowance as an HTTP body is, then the HTTP server's
    # dispatcher in a worker thread (against a pinned chain view).
    request_id = request.get("id") if isinstance(request, dict) and is_valid_id(request.get("id")) else None
    if connection.admitted_by_front:
        response = await trio.to_thread.run_sync(app.rpc.handle_in_thread, encode_message(request).encode(),
                                                 limiter=app.rpc_threads)
        return None if response is None else json.loads(response)
    try:
        app.admission.admit(connection.client)
    except LimitExceeded as error:
        return make_error_response(request_id, error)
    try:
        app.admission.charge(connection.client, compute_cost(request) - DEFAULT_COST)
        body = encode_message(request).encode()
        response = await trio.to_thread.run_sync(app.rpc.handle_in_thread, body, limiter=app.rpc_threads)
    except LimitExceeded as error:
        return make_error_response(request_id, error)
    finally:
        app.admission.release(connection.client)
    return None if response is None else json.loads(response)


def subscribe(connection: Connection, params: Any) -> str:
    if not isinstance(params, list) or not params or not isinstance(params[0], str) or len(params) > 2:
        raise InvalidParams("eth_subscribe takes a kind and, for logs, a filter", got=params,
                            expected='["newHeads"] or ["logs", {address, topics}]')
    if len(connection.subscriptions) >= MAX_SUBSCRIPTIONS:
        raise SubscriptionLimit(f"limit exceeded: at most {MAX_SUBSCRIPTIONS} subscriptions per connection",
                                {"limit": "subscriptions", "expected": MAX_SUBSCRIPTIONS})
    kind = params[0]
    if kind == NEW_HEADS and len(params) == 1:
        criteria = None
    elif kind == "logs":
        spec = params[1] if len(params) == 2 else {}
        if isinstance(spec, dict):
            spec = {k: v for k, v in spec.items() if k in ("address", "topics")}
        criteria = parse_log_query(spec).criteria
    else:
        raise InvalidParams("unsupported subscription", got=kind, expected=[NEW_HEADS, "logs"])
    subscription = "0x" + secrets.token_hex(16)
    connection.subscriptions[subscription] = criteria
    return subscription


def unsubscribe(connection: Connection, params: Any) -> bool:
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
        raise InvalidParams("eth_unsubscribe takes a subscription id", got=params, expected='["0x..."]')
    subscription = params[0].lower()
    if subscription not in connection.subscriptions:
        return False
    del connection.subscriptions[subscription]
    return True


__all__ = ["MAX_MESSAGE_BYTES", "SubscriptionHub", "get_hub", "publish_block", "serve_websocket"]
