"""Typed errors of the node package: bad input from outside (RPC, config, peers) that the node refuses.

Each carries what was got and what was expected, like `chain.exceptions`.
"""
from __future__ import annotations

from typing import Any

from primitives.errors import compute_excerpt


class NodeError(Exception):
    """Base of every error the node package raises on bad input."""

    def __init__(self, message: str, *, got: Any = None, expected: Any = None) -> None:
        self.message = message
        self.got = got
        self.expected = expected
        detail = f" (got {_show(got)}, expected {_show(expected)})" if got is not None or expected is not None else ""
        super().__init__(message + detail)


def _show(value: Any) -> str:
    return compute_excerpt(value)  # what was got often came from outside: a few dozen bytes of it at most


class ConfigError(NodeError):
    """The configuration file or a flag is invalid."""


class KeyFileError(ConfigError):
    """The validator key file cannot be read or decrypted."""


class CorruptConsensusState(NodeError):
    """The persisted consensus state cannot be read; the validator refuses to start rather than risk a double sign."""


class MempoolError(NodeError):
    """The mempool refuses a transaction that is otherwise well formed."""


class AlreadyKnown(MempoolError):
    pass


class NonceTooLow(MempoolError):
    pass


class NonceGapTooLarge(MempoolError):
    """A future transaction too far ahead of the sender's next nonce to be worth keeping."""


class AccountLimitReached(MempoolError):
    pass


class ReplacementUnderpriced(MempoolError):
    pass


class MempoolFull(MempoolError):
    pass


class GatewayError(NodeError):
    """The inference gateway cannot serve a chat request."""


class NoWorkerAvailable(GatewayError):
    pass


class WorkerUnreachable(GatewayError):
    pass
