"""JSON-RPC 2.0 error objects and the constants a server needs before it knows any method.

Kept apart from `node.rpc_core` (which reads the chain) so that the HTTP front
process (`node.rpc_front`), which only admits, refuses and forwards, can answer
in the same words as the node without importing the chain.
"""
from __future__ import annotations

from typing import Any

JSONRPC_VERSION = "2.0"
MAX_BATCH_SIZE = 100


class RPCError(Exception):
    """An error that becomes a JSON-RPC error object."""

    code = -32603

    def __init__(self, message: str, data: Any = None) -> None:
        self.message = message
        self.data = data
        super().__init__(message)

    def to_json(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


class ParseError(RPCError):
    code = -32700


class InvalidRequest(RPCError):
    code = -32600


def make_error_response(request_id: Any, error: RPCError) -> dict:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error.to_json()}


def is_valid_id(request_id: Any) -> bool:
    return request_id is None or (isinstance(request_id, (str, int, float)) and not isinstance(request_id, bool))
