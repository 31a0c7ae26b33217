"""The typed error every package's errors derive from: what was got, what was expected.

Each layer keeps its own exception module (`genesis.exceptions`,
`consensus.exceptions`, `chain.exceptions`, ...) whose base class derives from
`TypedError`, so a caller can report any rejection without parsing messages.
"""
from __future__ import annotations

from typing import Any


class TypedError(Exception):
    """A rejection of bad input, carrying the value got and the value expected."""

    def __init__(self, message: str, *, got: Any = None, expected: Any = None) -> None:
        self.message = message
        self.got = got
        self.expected = expected
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message]
        if self.got is not None or self.expected is not None:
            parts.append(f"(got {show_value(self.got)}, expected {show_value(self.expected)})")
        return " ".join(parts)


def show_value(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return repr(value)
