"""Explicit bounds on outside input, checked before any decoder sees it: size, nesting depth, item count.

Why a pre-scan and not the decoders' own guards: CPython's C JSON parser
(and `repr`, `==` and friends on what it builds) recurse on the C stack, and
their only guard is `sys.getrecursionlimit()`, which installed libraries raise
on import (py-evm's `eth/__init__.py` to 12,288, py_ecc to 100,000). A 200 kB
body of 100,000 `[` then ran `json.loads` off the thread's stack: a segfault,
not an exception. pyrlp decodes recursively in Python and rebuilds each
list's encoding item by item, so its time grows with depth × size (a 158 kB
raw transaction nested 45,000 deep took 14 s) and with items × list size
(8,000 items in a 4 MB gossip payload: 0.9 s).

So every decoder of outside bytes first runs a linear, non-recursive scan here
against explicit limits and fails with a typed error saying what was expected:

- JSON: `validate_json_nesting` counts bracket depth outside strings;
  `decode_json_bounded` checks size and depth, then decodes strict UTF-8.
- RLP: `validate_rlp_shape` walks the length prefixes (no payload is read)
  bounding depth, items and items × list size; `decode_rlp_bounded` is
  `rlp.decode` behind it.
  Its errors are also `rlp.exceptions.DecodingError`s, so every caller that
  already turns rlp's errors into its own typed error handles them unchanged.
- Decoded values (msgpack frames): `validate_value_depth`, iterative. msgpack's
  C unpacker keeps its own fixed stack of 1,024 containers (deeper input raises
  `msgpack.StackError`), so it needs no recursion guard, only our tighter limit.

The recursion limit is a second line only: `set_safe_recursion_limit` puts it
back to a value the C stack can take, once everything is imported.
"""
from __future__ import annotations

import json
import re
import sys
from itertools import accumulate
from typing import Any

import rlp
from rlp.exceptions import DecodingError

from primitives.errors import TypedError, compute_text_excerpt

# Enough for the deepest honest document (eth_getLogs topic filters, OpenAI tool schemas) many times over.
MAX_JSON_DEPTH = 64
# Honest RLP here is a few levels deep (a block: header, commit, signatures); pyrlp's cost is depth x size.
MAX_RLP_DEPTH = 16
# Items (strings and lists) in one RLP value: a block of 1,000 transactions and a 100-validator commit are
# under 2,000. pyrlp appends each item's encoding to its list's, so a list's decoding costs about its item
# count x its byte size (measured here: ~30 ps per unit; 8,000 items in 4 MB took 0.87 s): the cost is bounded
# too, near 0.25 s, with room for a 4 MB block of 1,000 transactions (4e9).
MAX_RLP_ITEMS = 1 << 15
MAX_RLP_COST = 1 << 33
# Python's own default is 1,000; the node's deepest honest stacks (trio, hypercorn, consensus) stay well
# under this, and C-recursive work of this depth fits a small thread stack (json.loads 1,990 deep ran in a
# thread of 256 kB here).
SAFE_RECURSION_LIMIT = 2_000


class BoundedInputError(TypedError, ValueError):
    """Outside input refused by a bound or a strict decoder here.

    Also a ValueError, so code that already catches a decoder's ValueError catches these too.
    """


class InputTooLarge(BoundedInputError):
    """More bytes than the limit for this input."""


class NestingTooDeep(BoundedInputError):
    """Containers nested deeper than the limit."""


class TooManyItems(BoundedInputError):
    """More items than the limit for one value."""


class MalformedJSON(BoundedInputError):
    """Not UTF-8, or not JSON."""


class RLPBoundsError(BoundedInputError, DecodingError):
    """An RLP value refused by `decode_rlp_bounded` (an `rlp.exceptions.DecodingError` as well)."""


class RLPNestingTooDeep(RLPBoundsError, NestingTooDeep):
    pass


class RLPTooManyItems(RLPBoundsError, TooManyItems):
    pass


class RLPTooCostly(RLPBoundsError, TooManyItems):
    """Lists whose item counts times sizes would take pyrlp too long."""


class MalformedRLP(RLPBoundsError):
    """The length prefixes do not describe an item that fits the input."""


class RLPFieldMismatch(RLPBoundsError):
    """A list where the sedes wants an integer: pyrlp raises a bare TypeError for it."""


# --- size --------------------------------------------------------------------------------------

def validate_size(data: bytes | str, max_size: int, what: str) -> None:
    if len(data) > max_size:
        raise InputTooLarge(f"{what} too large", got=f"{len(data)} bytes", expected=f"at most {max_size} bytes")


# --- JSON --------------------------------------------------------------------------------------

# A JSON string, escapes included, or an unterminated one running to the end (the parser refuses it later).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEP = tuple(1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256))


def compute_json_depth(data: bytes) -> int:
    """The greatest bracket depth of `data` outside strings: linear time, no recursion.

    Mismatched or unbalanced brackets are counted as they come; the parser refuses them afterwards.
    """
    structure = _JSON_STRING.sub(b"", data)
    brackets = structure.translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def validate_json_nesting(data: bytes | str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Raise NestingTooDeep if the JSON text nests arrays/objects deeper than `max_depth`."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return  # fewer openers than the limit: it cannot be deeper (the common case, no scan)
    depth = compute_json_depth(data)
    if depth > max_depth:
        raise NestingTooDeep("JSON nested too deeply", got=f"{depth} levels", expected=f"at most {max_depth} levels")


def decode_json_bounded(data: bytes | str, *, max_size: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` behind the size and depth bounds; bytes must be UTF-8 (RFC 8259: JSON between systems is).

    Raises InputTooLarge, NestingTooDeep or MalformedJSON, never the parser's own errors.
    """
    validate_size(data, max_size, "JSON document")
    validate_json_nesting(data, max_depth)
    text = decode_utf8(data) if not isinstance(data, str) else data
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen below the depth bound; kept so this never raises anything untyped
        raise NestingTooDeep("JSON nested too deeply", got="past the recursion limit",
                             expected=f"at most {max_depth} levels") from None
    except ValueError as error:  # JSONDecodeError (it names a position, not the input); huge integers
        raise MalformedJSON(f"not JSON: {compute_text_excerpt(str(error), 100)}",
                            expected="a JSON document") from None


def decode_utf8(data: bytes | bytearray | memoryview) -> str:
    try:
        # utf-8-sig: strict UTF-8 (no lone surrogates), with a leading byte-order mark tolerated.
        return bytes(data).decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise MalformedJSON(f"not UTF-8: {error.reason} at byte {error.start}", expected="UTF-8 text") from None


# --- RLP ---------------------------------------------------------------------------------------

def validate_rlp_shape(data: bytes, max_depth: int = MAX_RLP_DEPTH, max_items: int = MAX_RLP_ITEMS, *,
                       start: int = 0, max_cost: int = MAX_RLP_COST) -> None:
    """Walk the length prefixes of the RLP item at `data[start:]` and raise before pyrlp could go too deep or wide.

    Iterative and linear in the number of items; no payload is read. Bounds the
    depth, the item count, and pyrlp's cost (each item x the size of its list).
    Trailing bytes and non-canonical prefixes are left to pyrlp (strict decoding refuses both).
    """
    size = len(data)
    ends: list[int] = []  # end offsets of the lists being walked, innermost last
    lengths: list[int] = []  # their payload sizes
    position, items, cost = start, 0, 0
    while True:
        limit = ends[-1] if ends else size
        is_list, payload_start, length = read_rlp_prefix(data, position, limit)
        end = payload_start + length
        if end > limit:
            raise MalformedRLP("RLP item runs past its list", got=f"end at byte {end}",
                               expected=f"at most {limit}")
        items += 1
        if items > max_items:
            raise RLPTooManyItems("RLP has too many items", got=f"more than {max_items}",
                                  expected=f"at most {max_items} items")
        cost += lengths[-1] if lengths else 0
        if cost > max_cost:
            raise RLPTooCostly("RLP lists have too many items for their size", got=f"more than {max_cost}",
                               expected=f"items x list bytes at most {max_cost}")
        if is_list:
            if len(ends) >= max_depth:
                raise RLPNestingTooDeep("RLP nested too deeply", got=f"more than {max_depth} levels",
                                        expected=f"at most {max_depth} levels")
            if length:
                ends.append(end)
                lengths.append(length)
                position = payload_start
                continue
        position = end
        while ends and position == ends[-1]:
            ends.pop()
            lengths.pop()
        if not ends:
            return


def read_rlp_prefix(data: bytes, position: int, limit: int) -> tuple[bool, int, int]:
    """(is_list, payload start, payload length) of the item at `position`, whose prefix must end by `limit`."""
    if position >= limit:
        raise MalformedRLP("RLP input ends before an item", got=f"{limit} bytes", expected=f"more than {position}")
    first = data[position]
    if first < 0x80:
        return False, position, 1
    if first < 0xB8:
        return False, position + 1, first - 0x80
    if first < 0xC0:
        return False, *read_long_length(data, position, first - 0xB7, limit)
    if first < 0xF8:
        return True, position + 1, first - 0xC0
    return True, *read_long_length(data, position, first - 0xF7, limit)


def read_long_length(data: bytes, position: int, length_size: int, limit: int) -> tuple[int, int]:
    start = position + 1 + length_size
    if start > limit:
        raise MalformedRLP("RLP length prefix is cut off", got=f"{limit} bytes", expected=f"at least {start}")
    return start, int.from_bytes(data[position + 1:start], "big")


def decode_rlp_bounded(data: bytes, sedes: Any = None, *, strict: bool = True, max_depth: int = MAX_RLP_DEPTH,
                       max_items: int = MAX_RLP_ITEMS, **kwargs: Any) -> Any:
    """`rlp.decode` for outside bytes: the shape is checked first (`validate_rlp_shape`).

    Raises only `rlp.exceptions.RLPException`s: rlp's own, the bounds' (DecodingErrors too),
    and RLPFieldMismatch where pyrlp would raise a TypeError.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedRLP("RLP input must be bytes", got=type(data).__name__, expected="bytes")
    validate_rlp_shape(data, max_depth, max_items)
    try:
        return rlp.decode(data, sedes=sedes, strict=strict, **kwargs)
    except TypeError as error:  # big_endian_int handed a list
        raise RLPFieldMismatch("RLP item has the wrong type for its field", got=str(error)[:80],
                               expected=getattr(sedes, "__name__", "the sedes' shape")) from None


# --- decoded values ------------------------------------------------------------------------------

def compute_value_depth(value: Any, max_depth: int) -> int:
    """Nesting depth of lists, tuples and dicts in `value`, counted iteratively up to `max_depth` + 1."""
    deepest = 0
    pending = [(value, 1)] if isinstance(value, (list, tuple, dict)) else []
    while pending:
        container, depth = pending.pop()
        deepest = max(deepest, depth)
        if deepest > max_depth:
            return deepest
        children = (*container.keys(), *container.values()) if isinstance(container, dict) else container
        pending.extend((child, depth + 1) for child in children if isinstance(child, (list, tuple, dict)))
    return deepest


def validate_value_depth(value: Any, max_depth: int, what: str = "value") -> None:
    depth = compute_value_depth(value, max_depth)
    if depth > max_depth:
        raise NestingTooDeep(f"{what} nested too deeply", got=f"more than {max_depth} levels",
                             expected=f"at most {max_depth} levels")


# --- files -------------------------------------------------------------------------------------

def read_bounded_file(path: Any, max_size: int) -> bytes:
    """A file's bytes, refused (InputTooLarge) past `max_size` without reading more than that; OSError as open's."""
    with open(path, "rb") as handle:
        data = handle.read(max_size + 1)
    if len(data) > max_size:
        raise InputTooLarge("file too large", got=f"more than {max_size} bytes", expected=f"at most {max_size} bytes")
    return data


# --- the interpreter ---------------------------------------------------------------------------

def set_safe_recursion_limit(limit: int = SAFE_RECURSION_LIMIT) -> int:
    """Put Python's recursion limit back to `limit` (libraries raise it on import); returns the value found.

    Call it once everything is imported, when a service starts. The bounds
    above do not depend on it; it guards whatever decoder they do not cover.
    """
    found = sys.getrecursionlimit()
    sys.setrecursionlimit(limit)
    return found
