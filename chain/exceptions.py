"""Typed errors of the chain package.

Every rejection of outside input (a transaction, a payload, a block, a genesis
file) raises a subclass of `ChainError` that carries what was got and what was
expected, so callers (mempool, RPC, sync, replay) can report it without parsing
messages and the node never crashes on bad input.
"""

from __future__ import annotations

from typing import Any

from primitives.errors import TypedError


class ChainError(TypedError):
    """Base of every error the chain package raises on bad input."""


# --- transactions ---------------------------------------------------------------------------


class TransactionError(ChainError):
    """A transaction is invalid; a block containing it is invalid."""


class MalformedTransaction(TransactionError):
    """The raw bytes are not a decodable EIP-2718 transaction."""


class UnsupportedTransactionType(TransactionError):
    """Only EIP-1559 (type 2) transactions carry work."""


class BadSignature(TransactionError):
    """The signature does not recover to a sender (or is malleable, high-s)."""


class WrongChainId(TransactionError):
    pass


class NonceMismatch(TransactionError):
    """The nonce is not the sender's next nonce (a gap, or a replay)."""


class ValueTransferNotAllowed(TransactionError):
    """A transaction to an account or a missing `to`: MUAGIC never moves between accounts."""


class ValueOnNonOfferingKind(TransactionError):
    """Only an offering may carry `value` (and it goes to the pool)."""


class UnknownSystemAddress(TransactionError):
    """`to` is in the system range but names no work kind (or names the pool itself)."""


class OversizedPayload(TransactionError):
    pass


class InvalidFee(TransactionError):
    """Fee fields are inconsistent (tip above max fee, gas below intrinsic gas)."""


class InsufficientBalance(TransactionError):
    """The sender cannot cover its offering value plus its tip."""


class AccountTxLimitExceeded(TransactionError):
    """More transactions from one sender in one block than `Params.max_txs_per_account_per_block`."""


# --- payloads -------------------------------------------------------------------------------


class PayloadError(TransactionError):
    """The RLP payload in `data` is malformed or out of range for its kind."""


class MalformedPayload(PayloadError):
    pass


class PayloadFieldOutOfRange(PayloadError):
    def __init__(self, field: str, *, got: Any, expected: Any) -> None:
        self.field = field
        super().__init__(f"payload field {field!r} out of range", got=got, expected=expected)


# --- work, evidence and the ledger ----------------------------------------------------------


class WorkRejected(ChainError):
    """The rules refuse a well-formed work payload given the current state.

    Raised by `WorkRulesAPI.apply_work` (and by the chain for evidence). The
    transaction stays in the block with a failed receipt (status 0): its nonce
    and tip are consumed and its payload effects are reverted.
    """


class InvalidEvidence(WorkRejected):
    pass


class LedgerError(ChainError):
    """A ledger primitive was asked to move more than an account (or the pool) holds."""


# --- blocks ---------------------------------------------------------------------------------


class BlockError(ChainError):
    """A block (or header) is invalid; nothing of it is applied."""


class MalformedBlock(BlockError):
    pass


class InvalidHeader(BlockError):
    """The header does not follow its parent (number, parent hash, timestamp) or is malformed."""

    def __init__(self, field: str, *, got: Any, expected: Any) -> None:
        self.field = field
        super().__init__(f"header field {field!r} invalid", got=got, expected=expected)


class HeaderMismatch(BlockError):
    """A header commitment disagrees with what executing the block produced."""

    def __init__(self, field: str, *, got: Any, expected: Any) -> None:
        self.field = field
        super().__init__(f"header {field} mismatch", got=got, expected=expected)


class TooManyTransactions(BlockError):
    pass


class InvalidBlockTransaction(BlockError):
    """A transaction inside a block is invalid; `index` and `cause` say which and why."""

    def __init__(self, index: int, cause: TransactionError) -> None:
        self.index = index
        self.cause = cause
        super().__init__(
            f"transaction {index} invalid: {cause}", got=cause.got, expected=cause.expected
        )

