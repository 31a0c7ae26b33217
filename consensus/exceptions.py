"""Typed errors of the consensus package: malformed messages, bad signatures, commits and sets."""
from __future__ import annotations

from primitives.errors import TypedError


class ConsensusError(TypedError):
    """Base of every error raised by the consensus package on bad input."""


class InvalidMessage(ConsensusError):
    """A message is malformed (field out of range, wrong length)."""

    def __init__(self, reason: str, got: object = None, expected: object = None) -> None:
        super().__init__(f"{reason}: got {got!r}, expected {expected!r}")
        self.reason = reason
        self.got = got
        self.expected = expected


class InvalidSignature(ConsensusError):
    """A signature does not recover, or recovers to a different address than claimed."""

    def __init__(self, got: bytes | None, expected: bytes) -> None:
        got_text = got.hex() if got else None
        super().__init__(f"bad signature: recovered {got_text}, expected {expected.hex()}")
        self.got = got
        self.expected = expected


class InvalidCommit(ConsensusError):
    """Base for commit verification failures."""


class CommitMismatch(InvalidCommit):
    def __init__(self, field: str, got: object, expected: object) -> None:
        super().__init__(f"commit {field}: got {got!r}, expected {expected!r}")
        self.field = field
        self.got = got
        self.expected = expected


class UnknownValidator(InvalidCommit):
    def __init__(self, validator: bytes) -> None:
        super().__init__(f"signer {validator.hex()} is not in the validator set")
        self.got = validator
        self.expected = "a member of the validator set"


class DuplicateSigner(InvalidCommit):
    def __init__(self, validator: bytes) -> None:
        super().__init__(f"signer {validator.hex()} appears more than once")
        self.got = validator
        self.expected = "each validator at most once, sorted by address"


class InsufficientWeight(InvalidCommit):
    def __init__(self, got: int, total: int) -> None:
        super().__init__(f"commit weight {got} of {total} is not more than 2/3")
        self.got = got
        self.expected = f"> {2 * total // 3} (more than 2/3 of {total})"
        self.total = total
