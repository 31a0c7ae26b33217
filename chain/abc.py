"""Interfaces of the chain package, in one place (in the manner of py-evm's eth/abc.py).

Other packages depend on these, not on the concrete classes behind them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Iterable, NamedTuple, Sequence

if TYPE_CHECKING:
    from chain.events import LogSink


class StorageProof(NamedTuple):
    key: bytes  # the 32-byte slot
    value: int
    proof: tuple[bytes, ...]  # RLP-encoded trie nodes, root first


class AccountProof(NamedTuple):
    """An EIP-1186 account proof against one state root."""

    address: bytes
    nonce: int
    balance: int
    storage_hash: bytes
    code_hash: bytes
    account_proof: tuple[bytes, ...]  # RLP-encoded trie nodes, root first
    storage_proof: tuple[StorageProof, ...]


class StateAPI(ABC):
    """The world state: a journaled cache over the account trie and storage tries."""

    @abstractmethod
    def get_nonce(self, address: bytes) -> int: ...

    @abstractmethod
    def set_nonce(self, address: bytes, nonce: int) -> None: ...

    @abstractmethod
    def get_balance(self, address: bytes) -> int: ...

    @abstractmethod
    def set_balance(self, address: bytes, balance: int) -> None: ...

    @abstractmethod
    def get_storage(self, address: bytes, slot: bytes) -> bytes:
        """The RLP-decoded value bytes stored at a 32-byte slot, b'' when absent."""

    @abstractmethod
    def set_storage(self, address: bytes, slot: bytes, value: bytes) -> None:
        """Store value bytes at a 32-byte slot; b'' deletes the slot."""

    @abstractmethod
    def account_exists(self, address: bytes) -> bool: ...

    @abstractmethod
    def snapshot(self) -> int:
        """Mark the journal; revert(token) undoes every write made after it."""

    @abstractmethod
    def revert(self, token: int) -> None: ...

    @abstractmethod
    def make_state_root(self) -> bytes:
        """Flush every dirty account and storage slot into the tries and return the root."""

    @abstractmethod
    def get_proof(self, address: bytes, slots: Sequence[bytes] = ()) -> AccountProof: ...

    @abstractmethod
    def iter_accounts(self) -> Iterable[tuple[bytes, int]]:
        """(address, balance) of every account known to the state (for invariant checks)."""


class BlockContext(NamedTuple):
    """What the state transition knows about the block being applied."""

    number: int
    timestamp_ms: int
    proposer: bytes
    parent_hash: bytes  # seeds committees: the hash of the block the work builds on
    # Where work events go (`chain.events.emit_event`); None when nobody keeps them (a prediction).
    logs: LogSink | None = None


class TxContext(NamedTuple):
    sender: bytes
    nonce: int
    tx_hash: bytes
    index: int


class WorkRulesAPI(ABC):
    """The recognition economy, as the state transition sees it.

    `chain.transition` validates everything common to all transactions (signature,
    chain id, nonce, kind, value, fee) and then hands work payloads here. The
    implementation (`economy`) moves balances only through
    `chain.ledger`, so the ledger rules hold whatever it decides.
    """

    @abstractmethod
    def apply_work(self, state: StateAPI, block: BlockContext, tx: TxContext, kind: str, payload: object) -> None:
        """Apply one decoded work payload. Raises a chain.exceptions error to reject it.

        Events go to `block.logs` through `chain.events.emit_event`; on a refusal
        the transition drops them along with the payload's state effects.
        """

    @abstractmethod
    def finalize_block(self, state: StateAPI, block: BlockContext) -> int:
        """End-of-block duties (deadlines, issuance and pool drip, rewards).

        Returns the block's recognition: the sum of recognised work it finalises.
        Events emitted here go into the block receipt (`chain.events`).
        """
