"""The node's JSON-RPC 2.0 dispatcher: request bodies in, response bodies out.

`RPCDispatcher.handle(body)` turns one HTTP body (a request or a batch) into
the response body, and every failure becomes a JSON-RPC error object with the
codes fixed in docs/ARCHITECTURE.md. Outside input never produces a stack
trace: a typed error from the chain or the mempool becomes -32000 with its
message, a bad parameter -32602 naming what was got and what was expected, and
anything unexpected -32603 with no detail (it is logged here instead).

The method table is the union of `node.rpc_eth` and `node.rpc_muagic`; the
protocol pieces they share (errors, parsers, block tags) are in `node.rpc_core`.
Methods are plain synchronous functions `(node, *parsed_params) -> result`.

Where they run: the HTTP server (`node.http`) calls `handle_in_thread` from a
worker thread, off the trio loop that runs consensus, so a costly request
never holds consensus messages up. There the methods are given a `NodeView`
instead of the node: the chain as a `chain.chain.ChainView` pinned at the head
the request started at (one view for a whole batch, so its answers agree with
each other while blocks are imported), and every call that reads or writes
what the loop owns (the mempool, `submit_transaction`, `get_status`,
`get_sync_status`) hopped back onto the loop with `trio.from_thread.run_sync`.
A method module that adds node state of its own must reach it through a
NodeView method that hops likewise. `handle` runs the same dispatch on the
caller's thread against the live node (in-process callers, the websocket).
"""
from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any, Callable

import trio

from chain.exceptions import ChainError
from node.abc import NodeAPI
from node.asgi import HTTPLimits
from node.exceptions import NodeError
from node.rpc_admission import LimitExceeded, compute_cost
from node.rpc_core import (
    JSONRPC_VERSION,
    MAX_BATCH_SIZE,
    InternalError,
    InvalidRequest,
    Method,
    MethodNotFound,
    RPCError,
    compute_rejection,
    decode_request_body,
    is_valid_id,
    make_error_response,
    merge_tables,
    parse_params,
    validate_request,
)
from node.rpc_call import CALL_METHODS
from node.rpc_eth import ETH_METHODS
from node.rpc_filters import FILTER_METHODS
from node.rpc_logs import LOG_METHODS
from node.rpc_muagic import MUAGIC_METHODS

log = logging.getLogger("magicoin.rpc")

METHODS = merge_tables(ETH_METHODS, LOG_METHODS, FILTER_METHODS, CALL_METHODS, MUAGIC_METHODS)
MAX_REQUEST_BODY = HTTPLimits().max_rpc_body  # the HTTP server refuses larger bodies before they reach here


class RPCDispatcher:
    """Turns request bodies into response bodies for one node."""

    def __init__(self, node: NodeAPI, methods: dict[str, Method] | None = None, *,
                 max_body: int = MAX_REQUEST_BODY) -> None:
        self.node = node
        self.methods = methods if methods is not None else METHODS
        self.max_body = max_body
        # The loop that owns the node (set by `node.http.serve_http`); None: the loop that started the thread.
        self.loop_token: trio.lowlevel.TrioToken | None = None
        self.calls = 0
        self.errors = 0

    def handle(self, body: bytes, target: Any = None, charge: Callable[[int], None] | None = None) -> bytes | None:
        """The response body for a request body; None when there is nothing to answer (only notifications).

        `target` is what the methods read (default: the node itself). `charge(cost)`, when given, is
        called with the body's cost (`node.rpc_admission.compute_cost`) once it is parsed, before any
        method runs; its LimitExceeded propagates, carrying the request's id, so the caller answers 429.
        """
        target = self.node if target is None else target
        try:
            message = decode_request_body(body, self.max_body)
        except RPCError as error:
            self.errors += 1
            return encode_response(make_error_response(None, error))
        if charge is not None:
            try:
                charge(compute_cost(message))
            except LimitExceeded as error:
                error.request_id = message.get("id") if isinstance(message, dict) else None
                raise
        if isinstance(message, list):
            response = self.handle_batch(target, message)
        else:
            response = self.handle_request(target, message)
        return None if response is None else encode_response(response)

    def handle_in_thread(self, body: bytes, charge: Callable[[int], None] | None = None) -> bytes | None:
        """`handle` from a worker thread, against a NodeView.

        The thread is `node.rpc_workers`' (then `loop_token` must be set, for the hops onto the
        node's loop) or one `trio.to_thread.run_sync` started from the node's loop.
        """
        return self.handle(body, NodeView(self.node, self.loop_token), charge)

    def handle_batch(self, target: Any, requests: list) -> list | dict | None:
        if not requests:
            return make_error_response(None, InvalidRequest("empty batch"))
        if len(requests) > MAX_BATCH_SIZE:
            return make_error_response(None, InvalidRequest("batch too large", {"got": len(requests),
                                                                                "expected": MAX_BATCH_SIZE}))
        responses = [r for r in (self.handle_request(target, request) for request in requests) if r is not None]
        return responses or None

    def handle_request(self, target: Any, request: Any) -> dict | None:
        """One request object -> its response (None for a notification)."""
        if not isinstance(request, dict):
            return make_error_response(None, InvalidRequest("request must be an object"))
        request_id = request.get("id")
        if not is_valid_id(request_id):
            return make_error_response(None, InvalidRequest("id must be a string, a number or null"))
        is_notification = "id" not in request
        try:
            validate_request(request)
            result = self.call(target, request["method"], request.get("params"))
        except RPCError as error:
            self.errors += 1
            return None if is_notification else make_error_response(request_id, error)
        if is_notification:
            return None
        return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}

    def call(self, target: Any, name: str, raw_params: Any) -> Any:
        self.calls += 1
        spec = self.methods.get(name)
        if spec is None:
            raise MethodNotFound(f"the method {name} does not exist/is not available")
        params = parse_params(spec, raw_params)
        try:
            return spec.handler(target, *params)
        except RPCError:
            raise
        except (ChainError, NodeError) as error:
            raise compute_rejection(error) from None
        except trio.RunFinishedError:
            raise InternalError("the node is shutting down") from None
        except Exception:  # noqa: BLE001 - the server must answer every request; the trace goes to the log
            log.exception("RPC method %s failed", name)
            raise InternalError("internal error") from None


# --- what a method sees from a worker thread ------------------------------------------------------

def run_on_loop(token: trio.lowlevel.TrioToken | None, function: Callable, *args: Any) -> Any:
    """Call `function` on the node's loop (`token`; None: the loop that started this thread) and wait for it."""
    return trio.from_thread.run_sync(function, *args, trio_token=token)


class LoopMempool:
    """The node's mempool seen from a worker thread: every method call runs on the loop, which owns it."""

    def __init__(self, mempool: Any, token: trio.lowlevel.TrioToken | None) -> None:
        self._mempool = mempool
        self._token = token

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._mempool, name)
        return partial(run_on_loop, self._token, attribute) if callable(attribute) else attribute


class NodeView:
    """The node as a worker thread's methods see it: the chain pinned at one head, loop-owned parts behind hops.

    Made per request body, in the worker thread. Reads of the chain run here
    (they are the costly part: tries, blocks, receipts); what touches the
    mempool, the p2p service or consensus state runs on the loop.
    """

    def __init__(self, node: NodeAPI, loop_token: trio.lowlevel.TrioToken | None = None) -> None:
        self._node = node
        self._token = loop_token
        self.genesis = node.genesis
        self.chain = node.chain.get_head_view()
        self.mempool = LoopMempool(node.mempool, loop_token)
        self.inference = node.inference

    def submit_transaction(self, raw_tx: bytes) -> bytes:
        return run_on_loop(self._token, self._node.submit_transaction, raw_tx)

    def get_sync_status(self):
        return run_on_loop(self._token, self._node.get_sync_status)

    def get_status(self) -> dict:
        return run_on_loop(self._token, self._node.get_status)

    def __getattr__(self, name: str) -> Any:
        # Immutable node attributes only (e.g. its address); anything mutable needs a hop as above.
        return getattr(self._node, name)


def encode_response(response: Any) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode()
