"""The JSON-RPC client behind a person's commands (`send`, `jobs`, `tasks`), and the pieces they share.

Errors are typed so a command can say what went wrong in one line: the node
could not be reached (naming the URL), or it answered with a JSON-RPC error
(its code and message, as the node wrote them).
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Callable

import click
import httpx

from genesis import MUAGIC
from node.exceptions import NodeError
from primitives.errors import TypedError

DEFAULT_RPC_URL = "http://127.0.0.1:8545"
RPC_ENV = "MAGICOIN_RPC"
METHOD_NOT_FOUND = -32601
MUAGIC_DECIMALS = 18


class RpcUnreachable(NodeError):
    """No JSON-RPC answer from the URL (connection refused, timeout, not JSON)."""


class RpcFailure(NodeError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, method: str, error: dict) -> None:
        self.method = method
        self.code = error.get("code")
        self.node_message = str(error.get("message", ""))
        self.data = error.get("data")
        super().__init__(f"{method}: {self.node_message}", got=self.data.get("got") if isinstance(self.data, dict)
                         else None, expected=self.data.get("expected") if isinstance(self.data, dict) else None)


class BadInput(NodeError):
    """A value on the command line is malformed (hex, amounts, labels)."""


class RpcClient:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> "RpcClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def call(self, method: str, *params: Any) -> Any:
        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
        try:
            response = self.http.post(self.url, json=body)
            payload = response.json()
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise RpcUnreachable(f"cannot reach the node at {self.url}: {error or type(error).__name__}") from None
        except ValueError:
            raise RpcUnreachable(f"the server at {self.url} did not answer with JSON-RPC",
                                 got=response.text[:120]) from None
        if not isinstance(payload, dict):
            raise RpcUnreachable(f"the server at {self.url} did not answer with JSON-RPC", got=str(payload)[:120])
        if "error" in payload:
            error = payload["error"] if isinstance(payload["error"], dict) else {"message": str(payload["error"])}
            raise RpcFailure(method, error)
        return payload.get("result")

    def call_optional(self, method: str, *params: Any) -> tuple[bool, Any]:
        """(served, result): a node without the method (-32601) is an answer, not an error."""
        try:
            return True, self.call(method, *params)
        except RpcFailure as error:
            if error.code == METHOD_NOT_FOUND:
                return False, None
            raise


# --- values -------------------------------------------------------------------------------------------

def parse_hex_bytes(text: str, length: int, what: str) -> bytes:
    """`length` bytes from 0x-hex (the 0x may be left out); BadInput names `what` was wrong."""
    digits = text[2:] if text[:2].lower() == "0x" else text
    try:
        value = bytes.fromhex(digits)
    except ValueError:
        value = None
    if value is None or len(value) != length:
        raise BadInput(f"{what} is not {length} bytes of hex", got=text, expected=f"0x + {2 * length} hex digits")
    return value


def parse_muagic(text: str) -> int:
    """A positive decimal amount of MUAGIC (at most 18 decimals) in its smallest unit."""
    try:
        amount = Decimal(text.strip())
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite():
        raise BadInput("not a decimal amount of MUAGIC", got=text, expected="e.g. 0.5")
    if amount <= 0:
        raise BadInput("the amount must be positive", got=text, expected="> 0")
    if amount.as_tuple().exponent < -MUAGIC_DECIMALS:
        raise BadInput("too many decimals: MUAGIC has 18", got=text, expected="at most 18 decimals")
    return int(amount * MUAGIC)


def format_muagic(wei: int) -> str:
    whole, fraction = divmod(wei, MUAGIC)
    text = f"{whole}.{fraction:018d}".rstrip("0").rstrip(".")
    return f"{text} MUAGIC"


def parse_quantity(value: Any) -> int | None:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else value


def format_ppm(value: Any) -> str:
    ppm = parse_quantity(value)
    return "-" if ppm is None else f"{ppm / 1_000_000:.3f}"


# --- shared options and error reporting -------------------------------------------------------------

rpc_option = click.option("--rpc", "rpc_url", default=DEFAULT_RPC_URL, show_default=True, envvar=RPC_ENV,
                          help=f"The node's JSON-RPC URL (or ${RPC_ENV}).")


def run_reporting_errors(action: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run a command body; a typed error becomes `Error: ...` and exit code 1, never a traceback."""
    try:
        return action(*args, **kwargs)
    except (NodeError, TypedError) as error:
        raise click.ClickException(str(error)) from None
