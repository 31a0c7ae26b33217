"""The typed error every package's errors derive from: what was got, what was expected.

Each layer keeps its own exception module (`genesis.exceptions`,
`consensus.exceptions`, `chain.exceptions`, ...) whose base class derives from
`TypedError`, so a caller can report any rejection without parsing messages.

What was got usually came from outside, so it is shown as an excerpt
(`compute_excerpt`): a few dozen bytes and the full size, never the whole
input. An error answers a 400 kB request with a short sentence, not a copy.
"""
from __future__ import annotations

import reprlib
from typing import Any

EXCERPT_LIMIT = 32  # bytes or characters of outside input an error message may repeat
EXPECTED_LIMIT = 256  # what was expected is ours (field lists, ranges): shown more generously


class TypedError(Exception):
    """A rejection of bad input, carrying the value got and the value expected."""

    def __init__(self, message: str, *, got: Any = None, expected: Any = None) -> None:
        self.message = message
        self.got = got
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        shown = []
        if self.got is not None:
            shown.append(f"got {show_value(self.got)}")
        if self.expected is not None:
            shown.append(f"expected {show_value(self.expected, EXPECTED_LIMIT)}")
        return f"{self.message} ({', '.join(shown)})" if shown else self.message


def show_value(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    return compute_excerpt(value, limit)


def compute_excerpt(value: Any, limit: int = EXCERPT_LIMIT) -> str:
    """`value` as a message may show it: at most about `limit` bytes or characters of it, and its size if cut.

    Bytes are hex ("0x0102… (400000 bytes)"), text is repr'd, containers go
    through a bounded `reprlib` (a few levels and items), so neither a huge nor
    a deeply nested value is ever rendered whole.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = len(value)
        head = "0x" + bytes(value[:limit]).hex()
        return head if size <= limit else f"{head}… ({size} bytes)"
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else f"{value[:limit]!r}… ({len(value)} chars)"
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return compute_int_excerpt(value, limit)
    return compute_bounded_repr(value, limit)


def compute_error_summary(error: BaseException, limit: int = 100) -> str:
    """A decoder's error as one short line: where it failed and the innermost reason, without the input.

    pyrlp nests its deserialization errors (object -> list -> element) and
    repeats each inner message in the outer one; this follows the chain down,
    naming the fields and indexes on the way ("header.number: ...").
    """
    path = ""
    inner = error
    for _ in range(16):  # errors nest a few levels; a cycle must not hang us
        field = getattr(inner, "field", None)
        listed = getattr(inner, "list_exception", None)
        element = getattr(inner, "element_exception", None)
        if field and isinstance(listed, BaseException):
            path += f".{field}"
            # The list error under a field only repeats the field's index: go to the element's own error.
            inner = getattr(listed, "element_exception", None) or listed
        elif isinstance(listed, BaseException):
            inner = listed
        elif isinstance(element, BaseException):
            path += f"[{getattr(inner, 'index', '?')}]"
            inner = element
        else:
            break
    if isinstance(inner, TypedError):  # its got/expected belong to the outer error's; keep the sentence
        text = inner.message if not isinstance(inner.expected, str) else f"{inner.message}, expected {inner.expected}"
    else:
        text = str(inner).split("\n", 1)[0] or type(inner).__name__
    return compute_text_excerpt(f"{path.lstrip('.')}: {text}" if path else text, limit)


def compute_text_excerpt(text: str, limit: int = EXCERPT_LIMIT) -> str:
    """Plain text cut to `limit` characters, saying how long it was (for JSON error data, which needs no repr)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def compute_int_excerpt(value: int, limit: int = EXCERPT_LIMIT) -> str:
    # Up to uint256 in full (hashes, signatures' r and s); beyond, str() would be long or even refused
    # (Python's int_max_str_digits), so only the size is told.
    if value.bit_length() <= max(256, 4 * limit):
        return str(value)
    return f"an integer of {value.bit_length()} bits"


class _BoundedRepr(reprlib.Repr):
    def repr_int(self, value: int, level: int) -> str:
        return compute_int_excerpt(value, self.maxlong)


def compute_bounded_repr(value: Any, limit: int) -> str:
    shortener = _BoundedRepr()
    shortener.maxlevel = 3
    shortener.maxlist = shortener.maxtuple = shortener.maxset = shortener.maxdict = max(4, limit // 4)
    shortener.maxstring = shortener.maxother = shortener.maxlong = max(12, limit)
    text = shortener.repr(value)
    cap = 4 * limit
    return text if len(text) <= cap else text[:cap] + "…"
