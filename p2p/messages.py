"""Wire messages: msgpack arrays `[type, *fields]`, checked against a schema before use.

| type | fields |
|---|---|
| HELLO | `hello: bytes` (RLP `Hello`), `signature: bytes` (65) |
| DISCONNECT | `reason: int`, `detail: str` |
| GOSSIP | `topic: int`, `payload: bytes` |
| REQUEST | `request_id: int`, `method: str`, `params: any msgpack value` |
| RESPONSE | `request_id: int`, `result: any msgpack value` |
| ERROR | `request_id: int`, `code: int`, `message: str` |
| PING / PONG | `nonce: int` (keepalive on idle connections) |
| STREAM | `request_id: int`, `item: any msgpack value` (one item of a streamed response) |
| CANCEL | `request_id: int` (the requester no longer wants that streamed response) |

A request to a stream method is answered by zero or more STREAM items with
its id, then the RESPONSE (result nil) or ERROR that ends it. The requester
may send CANCEL at any time; the server then stops and sends nothing more.

msgpack is only the envelope; what is hashed or signed inside payloads is RLP.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

import msgpack

from primitives.limits import NestingTooDeep, validate_value_depth

from .exceptions import InvalidMessage, MalformedFrame

MAX_REQUEST_ID = 2**32 - 1
MAX_METHOD_LENGTH = 64
MAX_TEXT_LENGTH = 1024

# Explicit bounds for msgpack's C unpacker (left alone, each defaults to the frame's size). Binary strings may
# fill a frame (blocks); text is method names, token texts and short messages; the largest honest array is a
# height's consensus messages (under 1,000 items).
# Nesting: the C unpacker keeps containers on its own fixed stack of 1,024 levels, not the C call stack, and
# raises StackError past it (msgpack 1.2.4; tests/p2p/test_hostile_wire.py sends 1,025 and 100,000 levels),
# so no recursion limit is involved. Honest frames nest 3 or 4 levels; past MAX_WIRE_DEPTH a frame is
# refused like a StackError: malformed, and the sender banned.
MAX_WIRE_TEXT = 64 * 1024
MAX_WIRE_ARRAY = 1 << 16
MAX_WIRE_MAP = 1 << 10
MAX_WIRE_DEPTH = 16


class MsgType(IntEnum):
    HELLO = 0
    DISCONNECT = 1
    GOSSIP = 2
    REQUEST = 3
    RESPONSE = 4
    ERROR = 5
    PING = 6
    PONG = 7
    STREAM = 8
    CANCEL = 9


class ErrorCode(IntEnum):
    METHOD_NOT_FOUND = 1
    BAD_REQUEST = 2
    INTERNAL = 3
    UNAVAILABLE = 4


ANY = object()  # a schema slot that accepts any decoded msgpack value

SCHEMAS: dict[MsgType, tuple[Any, ...]] = {
    MsgType.HELLO: (bytes, bytes),
    MsgType.DISCONNECT: (int, str),
    MsgType.GOSSIP: (int, bytes),
    MsgType.REQUEST: (int, str, ANY),
    MsgType.RESPONSE: (int, ANY),
    MsgType.ERROR: (int, int, str),
    MsgType.PING: (int,),
    MsgType.PONG: (int,),
    MsgType.STREAM: (int, ANY),
    MsgType.CANCEL: (int,),
}

# Message types whose first field is a request id.
REQUEST_ID_TYPES = frozenset(
    {MsgType.REQUEST, MsgType.RESPONSE, MsgType.ERROR, MsgType.STREAM, MsgType.CANCEL}
)


def encode_message(msg_type: MsgType, *fields: Any) -> bytes:
    return msgpack.packb([int(msg_type), *fields], use_bin_type=True)


def decode_message(body: bytes) -> tuple[MsgType, list[Any]]:
    """Decode and schema-check one frame body; raise MalformedFrame or InvalidMessage."""
    decoded = unpack_body(body)
    if not isinstance(decoded, list) or not decoded:
        raise InvalidMessage(
            "message is not a non-empty array", got=type(decoded).__name__, expected="array"
        )
    msg_type = validate_msg_type(decoded[0])
    fields = decoded[1:]
    validate_fields(msg_type, fields)
    return msg_type, fields


def unpack_body(body: bytes) -> Any:
    try:
        value = msgpack.unpackb(
            body, raw=False, strict_map_key=True, use_list=True, max_bin_len=len(body),
            max_str_len=MAX_WIRE_TEXT, max_array_len=MAX_WIRE_ARRAY, max_map_len=MAX_WIRE_MAP, max_ext_len=0,
        )
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        # msgpack's ExtraData, FormatError and StackError are ValueError subclasses, as are the max_*_len
        # refusals; invalid UTF-8 in a str is a UnicodeDecodeError, also a ValueError.
        raise MalformedFrame(f"not msgpack: {type(exc).__name__}: {str(exc)[:120]}") from None
    try:
        validate_value_depth(value, MAX_WIRE_DEPTH, "message")
    except NestingTooDeep as exc:
        # No honest peer nests a frame this deep: treated like msgpack's own StackError (a ban), not a schema slip.
        raise MalformedFrame(f"{exc.message}, expected {exc.expected}") from None
    return value


def validate_msg_type(value: Any) -> MsgType:
    if not is_int(value):
        raise InvalidMessage("message type is not an integer", got=value, expected="int")
    try:
        return MsgType(value)
    except ValueError:
        raise InvalidMessage(
            "unknown message type", got=value, expected=[t.value for t in MsgType]
        ) from None


def validate_fields(msg_type: MsgType, fields: list[Any]) -> None:
    schema = SCHEMAS[msg_type]
    if len(fields) != len(schema):
        raise InvalidMessage(
            f"{msg_type.name} has the wrong number of fields", got=len(fields), expected=len(schema)
        )
    for index, (value, expected) in enumerate(zip(fields, schema)):
        if expected is ANY:
            continue
        if expected is int and not is_int(value):
            raise InvalidMessage(
                f"{msg_type.name} field {index} is not an integer",
                got=type(value).__name__,
                expected="int",
            )
        if expected is not int and type(value) is not expected:
            raise InvalidMessage(
                f"{msg_type.name} field {index} has the wrong type",
                got=type(value).__name__,
                expected=expected.__name__,
            )
    if msg_type in REQUEST_ID_TYPES:
        validate_request_id(fields[0])
    if msg_type is MsgType.REQUEST and len(fields[1]) > MAX_METHOD_LENGTH:
        raise InvalidMessage(
            "method name too long", got=len(fields[1]), expected=f"<= {MAX_METHOD_LENGTH}"
        )


def validate_request_id(value: int) -> None:
    if not 0 <= value <= MAX_REQUEST_ID:
        raise InvalidMessage("request id out of range", got=value, expected=f"0..{MAX_REQUEST_ID}")


def is_int(value: Any) -> bool:
    # bool is an int subclass in Python; msgpack true/false are not integers to us.
    return type(value) is int
