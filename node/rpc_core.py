"""JSON-RPC 2.0 building blocks shared by every method module and both dispatchers.

Owns what a method definition and a dispatcher need and nothing that names a
method: the error objects with the codes fixed in docs/ARCHITECTURE.md,
result encoders, parameter parsers (each raises `InvalidParams` naming what was
got and what was expected), block tags and the node reads they select, the
`MethodTable` that method modules register into, and the request-shape checks.
`node.rpc_eth` and `node.rpc_muagic` (the node's methods) and
`node.light.server` (the light client's) import this; `node.rpc` assembles the
node's table and dispatches.
"""
from __future__ import annotations

import re
from typing import Any, Callable, NamedTuple

from eth_abi import encode as abi_encode
from eth_utils import is_checksum_address, to_canonical_address

from chain.blocks import Block, Header
from chain.store import UnknownBlock
from node.abc import NodeAPI
from node.rpc_errors import (  # noqa: F401 - re-exported: method modules import the errors from here
    JSONRPC_VERSION,
    MAX_BATCH_SIZE,
    InvalidRequest,
    ParseError,
    RPCError,
    is_valid_id,
    make_error_response,
)
from primitives.errors import (
    EXCERPT_LIMIT,
    compute_excerpt,
    compute_int_excerpt,
    compute_text_excerpt,
)
from primitives.limits import (
    MAX_JSON_DEPTH,
    BoundedInputError,
    InputTooLarge,
    decode_json_bounded,
)

MAX_REQUEST_DEPTH = MAX_JSON_DEPTH  # a request nests a few levels (eth_getLogs topics); 64 is checked before parsing


# --- errors ---------------------------------------------------------------------------------------

class MethodNotFound(RPCError):
    code = -32601


class InvalidParams(RPCError):
    code = -32602

    def __init__(self, message: str, *, got: Any = None, expected: Any = None) -> None:
        super().__init__(message, {"got": encode_excerpt(got), "expected": encode_jsonable(expected)})


class InternalError(RPCError):
    code = -32603


class TransactionRejected(RPCError):
    code = -32000


class NotFound(RPCError):
    code = -32001


# Solidity's Error(string) selector: geth puts a revert reason in `data` ABI-encoded this way,
# and ethers/viem decode it into the error's `reason`.
ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")


class ExecutionReverted(RPCError):
    """geth's answer when eth_call/eth_estimateGas cannot run: code 3, "execution reverted: <reason>"."""

    code = 3

    def __init__(self, reason: str) -> None:
        self.reason = reason
        data = "0x" + (ERROR_STRING_SELECTOR + abi_encode(["string"], [reason])).hex()
        super().__init__(f"execution reverted: {reason}", data)


def encode_jsonable(value: Any) -> Any:
    """`value` as JSON can carry it in an error's data: bytes as hex, anything unknown as a short repr."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_jsonable(v) for v in value]
    return repr(value)[:200]


def encode_excerpt(value: Any) -> Any:
    """What was got, as an error's data may echo it: short values as `encode_jsonable` has them, long ones cut.

    The input came from outside, so at most a few dozen bytes of it go back
    (`primitives.errors.compute_excerpt`), with its size: a 400 kB parameter is
    answered with a sentence, not returned.
    """
    if isinstance(value, (bytes, bytearray)):
        return encode_jsonable(value) if len(value) <= EXCERPT_LIMIT else compute_excerpt(value)
    if isinstance(value, str):
        return compute_text_excerpt(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value.bit_length() <= 256 else compute_int_excerpt(value)
    if value is None or isinstance(value, (bool, float)):
        return value
    if isinstance(value, (list, tuple)) and len(value) <= 8:
        items = [encode_excerpt(item) for item in value]
        if len(repr(items)) <= 3 * EXCERPT_LIMIT:
            return items
    return compute_excerpt(value)


def compute_rejection(error: Exception) -> TransactionRejected:
    """-32000 for a typed refusal from the chain or the node, carrying its got/expected."""
    data = {"type": type(error).__name__}
    if getattr(error, "got", None) is not None:
        data["got"] = encode_excerpt(error.got)
    if getattr(error, "expected", None) is not None:
        data["expected"] = encode_jsonable(error.expected)
    return TransactionRejected(str(error), data)


# --- encoding of results ---------------------------------------------------------------------------

def encode_quantity(value: int) -> str:
    return hex(value)


def encode_data(value: bytes) -> str:
    return "0x" + bytes(value).hex()


# --- parameter parsers -------------------------------------------------------------------------------
# Each takes the raw JSON value and returns the typed value or raises InvalidParams.

def parse_quantity(value: Any) -> int:
    """A hex quantity ("0x1a"). Plain JSON integers are accepted too (some clients send them)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value[:2] in ("0x", "0X") and 2 < len(value) <= 66:
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise InvalidParams("not a hex quantity", got=value, expected="0x-prefixed hex integer")


_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")


def parse_data(value: Any, length: int | None = None, *, max_length: int = 1 << 20) -> bytes:
    """0x-prefixed hex bytes; the error names the first thing wrong: not hex, too large, or the wrong length."""
    expected = f"0x-prefixed hex of {length} bytes" if length is not None else "0x-prefixed hex bytes"
    if not isinstance(value, str) or value[:2] not in ("0x", "0X"):
        raise InvalidParams("not 0x-prefixed hex data", got=value, expected=expected)
    if len(value) % 2:
        raise InvalidParams("hex data has an odd number of digits", got=value, expected=expected)
    size = len(value) // 2 - 1
    if size > max_length:  # before decoding: the size is known from the text, and is what the caller got wrong
        raise InvalidParams("data too large", got=f"{size} bytes", expected=f"at most {max_length} bytes")
    if not _HEX_DIGITS.fullmatch(value, 2):  # bytes.fromhex alone would also take spaces
        raise InvalidParams("not hex data", got=value, expected=expected)
    data = bytes.fromhex(value[2:])
    if length is not None and len(data) != length:
        raise InvalidParams("hex data of the wrong length", got=f"{len(data)} bytes", expected=expected)
    return data


def parse_hash(value: Any) -> bytes:
    return parse_data(value, 32)


def parse_address(value: Any) -> bytes:
    data = parse_data(value, 20)
    if isinstance(value, str) and value[2:] != value[2:].lower() and value[2:] != value[2:].upper():
        # Mixed case claims an EIP-55 checksum: a typo in it must not silently address another account.
        if not is_checksum_address(value):
            raise InvalidParams("bad EIP-55 checksum", got=value, expected="a checksummed or all-lower-case address")
    return to_canonical_address(data)


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise InvalidParams("not a boolean", got=value, expected="true or false")


def parse_slot(value: Any) -> bytes:
    """A storage slot: a quantity or 32 bytes of hex, as the 32-byte key."""
    number = parse_quantity(value)
    if number >= 1 << 256:
        raise InvalidParams("slot out of range", got=value, expected="< 2**256")
    return number.to_bytes(32, "big")


def parse_object(value: Any) -> dict:
    if isinstance(value, dict):
        return value
    raise InvalidParams("not an object", got=value, expected="a JSON object")


class BlockTag(NamedTuple):
    """A parsed block selector: a name, a number, or a hash."""

    name: str | None = None
    number: int | None = None
    hash: bytes | None = None


BLOCK_TAG_NAMES = ("latest", "earliest", "pending", "safe", "finalized")


def parse_block_tag(value: Any) -> BlockTag:
    """latest/earliest/pending/safe/finalized, a hex number, a block hash, or an EIP-1898 object."""
    if isinstance(value, str) and value in BLOCK_TAG_NAMES:
        return BlockTag(name=value)
    if isinstance(value, str) and len(value) == 66:
        return BlockTag(hash=parse_hash(value))
    if isinstance(value, dict):
        if "blockHash" in value:
            return BlockTag(hash=parse_hash(value["blockHash"]))
        if "blockNumber" in value:
            return parse_block_tag(value["blockNumber"])
        raise InvalidParams("block object needs blockHash or blockNumber", got=value,
                            expected='{"blockHash": ...} or {"blockNumber": ...}')
    try:
        return BlockTag(number=parse_quantity(value))
    except InvalidParams:
        raise InvalidParams("not a block tag", got=value,
                            expected=list(BLOCK_TAG_NAMES) + ["hex block number", "block hash"]) from None


def get_tagged_block(node: NodeAPI, tag: BlockTag) -> Block:
    """The block a tag names; NotFound if there is none.

    Finality is immediate under BFT, so latest, safe and finalized are all the
    head; pending is the head as well (the mempool is not a block).
    """
    chain = node.chain
    try:
        if tag.hash is not None:
            return chain.get_block_by_hash(tag.hash)
        if tag.number is not None:
            if tag.number > chain.height:
                raise NotFound("block not found", {"got": tag.number, "expected": f"<= {chain.height}"})
            return chain.get_block_by_number(tag.number)
    except UnknownBlock as error:
        raise NotFound("block not found", {"got": encode_jsonable(error.got)}) from None
    if tag.name == "earliest":
        return chain.get_block_by_number(0)
    return chain.head_block


def get_tagged_header(node: NodeAPI, tag: BlockTag) -> Header:
    return get_tagged_block(node, tag).header


def get_state(node: NodeAPI, tag: BlockTag):
    """The state after the tagged block: the live head state, or a read-only view of a kept root."""
    header = get_tagged_header(node, tag)
    if header.hash == node.chain.head.hash:
        return node.chain.state
    return node.chain.state_at(header.state_root)


# --- the method table ---------------------------------------------------------------------------------

_NO_DEFAULT = object()


class Param(NamedTuple):
    name: str
    parse: Callable[[Any], Any]
    default: Any = _NO_DEFAULT


class Method(NamedTuple):
    name: str
    handler: Callable[..., Any]
    params: tuple[Param, ...]


class MethodTable(dict[str, Method]):
    """Methods by name. Each method module fills its own table, so a dispatcher's table is the
    explicit union of the modules it imports, not whatever happened to be imported before it."""

    def method(self, name: str, *params: Param) -> Callable:
        """Register `handler(target, *parsed)` as the JSON-RPC method `name`."""

        def register(handler: Callable) -> Callable:
            assert name not in self, f"duplicate RPC method {name}"
            self[name] = Method(name, handler, params)
            return handler

        return register


def merge_tables(*tables: dict[str, Method]) -> MethodTable:
    merged = MethodTable()
    for table in tables:
        duplicates = set(merged) & set(table)
        assert not duplicates, f"duplicate RPC methods {sorted(duplicates)}"
        merged.update(table)
    return merged


def parse_params(spec: Method, raw: Any) -> list:
    """Positional params against the method's spec: count, then each value's form."""
    if raw is None:
        raw = []
    if isinstance(raw, dict):
        names = [p.name for p in spec.params]
        if not set(raw) <= set(names):
            raise InvalidParams(f"unknown named params for {spec.name}", got=sorted(raw), expected=names)
        # By-name params fill positions in order; a gap before a given one is a missing required param.
        present = [name in raw for name in names]
        last = max((i for i, p in enumerate(present) if p), default=-1)
        if not all(present[: last + 1]):
            raise InvalidParams(f"{spec.name} named params leave a gap", got=sorted(raw), expected=names)
        raw = [raw[name] for name in names[: last + 1]]
    if not isinstance(raw, list):
        raise InvalidParams("params must be an array", got=type(raw).__name__, expected="array")
    required = sum(1 for p in spec.params if p.default is _NO_DEFAULT)
    if not required <= len(raw) <= len(spec.params):
        raise InvalidParams(f"{spec.name} takes {required}..{len(spec.params)} params", got=len(raw),
                            expected=[p.name for p in spec.params])
    parsed = []
    for index, param in enumerate(spec.params):
        if index < len(raw):
            try:
                parsed.append(param.parse(raw[index]))
            except InvalidParams as error:
                error.message = f"param {index} ({param.name}): {error.message}"
                error.args = (error.message,)
                raise
        else:
            parsed.append(param.parse(param.default) if isinstance(param.default, str) else param.default)
    return parsed


# --- the request shape -----------------------------------------------------------------------------

def decode_request_body(body: bytes, max_size: int) -> Any:
    """The JSON of a request body; its size and nesting are bounded before the parser runs.

    Raises ParseError (-32700: nested too deeply, not UTF-8, not JSON) or
    InvalidRequest (-32600: too large), each saying what was expected.
    """
    try:
        return decode_json_bounded(body, max_size=max_size, max_depth=MAX_REQUEST_DEPTH)
    except InputTooLarge as error:
        raise InvalidRequest(f"request {error.message}", compute_error_data(error)) from None
    except BoundedInputError as error:
        raise ParseError(f"parse error: {error.message}", compute_error_data(error)) from None


def compute_error_data(error: BoundedInputError) -> dict | None:
    data = {name: getattr(error, name) for name in ("got", "expected") if getattr(error, name) is not None}
    return data or None


def validate_request(request: dict) -> None:
    if request.get("jsonrpc") != JSONRPC_VERSION:
        raise InvalidRequest('jsonrpc must be "2.0"')
    if not isinstance(request.get("method"), str):
        raise InvalidRequest("method must be a string")
    if "params" in request and not isinstance(request["params"], (list, dict)):
        raise InvalidRequest("params must be an array or an object")
