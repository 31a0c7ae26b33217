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
They run on the node's trio thread, so they see the chain between block
imports, never in the middle of one.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from chain.exceptions import ChainError
from node.abc import NodeAPI
from node.asgi import HTTPLimits
from node.exceptions import NodeError
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
from node.rpc_muagic import MUAGIC_METHODS

log = logging.getLogger("magicoin.rpc")

METHODS = merge_tables(ETH_METHODS, CALL_METHODS, MUAGIC_METHODS)
MAX_REQUEST_BODY = HTTPLimits().max_rpc_body  # the HTTP server refuses larger bodies before they reach here


class RPCDispatcher:
    """Turns request bodies into response bodies for one node."""

    def __init__(self, node: NodeAPI, methods: dict[str, Method] | None = None, *,
                 max_body: int = MAX_REQUEST_BODY) -> None:
        self.node = node
        self.methods = methods if methods is not None else METHODS
        self.max_body = max_body
        self.calls = 0
        self.errors = 0

    def handle(self, body: bytes) -> bytes | None:
        """The response body for a request body; None when there is nothing to answer (only notifications)."""
        try:
            message = decode_request_body(body, self.max_body)
        except RPCError as error:
            self.errors += 1
            return encode_response(make_error_response(None, error))
        if isinstance(message, list):
            response = self.handle_batch(message)
        else:
            response = self.handle_request(message)
        return None if response is None else encode_response(response)

    def handle_batch(self, requests: list) -> list | dict | None:
        if not requests:
            return make_error_response(None, InvalidRequest("empty batch"))
        if len(requests) > MAX_BATCH_SIZE:
            return make_error_response(None, InvalidRequest("batch too large", {"got": len(requests),
                                                                                "expected": MAX_BATCH_SIZE}))
        responses = [r for r in (self.handle_request(request) for request in requests) if r is not None]
        return responses or None

    def handle_request(self, request: Any) -> dict | None:
        """One request object -> its response (None for a notification)."""
        if not isinstance(request, dict):
            return make_error_response(None, InvalidRequest("request must be an object"))
        request_id = request.get("id")
        if not is_valid_id(request_id):
            return make_error_response(None, InvalidRequest("id must be a string, a number or null"))
        is_notification = "id" not in request
        try:
            validate_request(request)
            result = self.call(request["method"], request.get("params"))
        except RPCError as error:
            self.errors += 1
            return None if is_notification else make_error_response(request_id, error)
        if is_notification:
            return None
        return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}

    def call(self, name: str, raw_params: Any) -> Any:
        self.calls += 1
        spec = self.methods.get(name)
        if spec is None:
            raise MethodNotFound(f"the method {name} does not exist/is not available")
        params = parse_params(spec, raw_params)
        try:
            return spec.handler(self.node, *params)
        except RPCError:
            raise
        except (ChainError, NodeError) as error:
            raise compute_rejection(error) from None
        except Exception:  # noqa: BLE001 - the server must answer every request; the trace goes to the log
            log.exception("RPC method %s failed", name)
            raise InternalError("internal error") from None


def encode_response(response: Any) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode()
