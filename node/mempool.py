"""The mempool: a bounded pool of validated transactions, ordered by nonce per sender.

Owns admission (the chain's `chain.transition.validate_admission` against the
head state: every check a block makes, except that a nonce a little above the
sender's next one is a *future* transaction kept for later, not an error;
then the pool's own limits), replacement of a pending
transaction by one with the same nonce and a higher tip, the per-account
limit, eviction when full, block selection and clean-up after each block.

Eviction takes the last transaction (highest nonce) of the sender holding
the most pending transactions, so no sender's sequence is left with a gap and
one busy account cannot crowd out the others while fees are zero.

Inference requests beyond the network's free capacity are refused at the door
(`NetworkBusy`, "network busy: N jobs waiting for capacity; ..."): while the
jobs WAITING on the head state plus the requests pending here reach the
chain's `max_waiting_jobs`, a request whose job has no offering yet is not
admitted unless a worker has room for it on the head state and the pending
requests' costs all fit the workers' free room. Every pending request
counts as if it will wait, so the pool never holds more than the chain could
queue; a request with an offering is left to the chain's rule, where it may
out-offer a waiting job.
"""
from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from typing import Callable, Sequence

from eth_utils import keccak

from chain.abc import StateAPI
from chain.exceptions import AccountTxLimitExceeded, NonceMismatch
from chain.payloads import compute_work_id, decode_payload
from chain.transactions import Transaction
from chain.transition import get_job_offering, validate_admission
from economy import (
    EconomyParams, WorkRules, compute_job_cost, get_free_room, get_waiting_job_count, make_work_rules,
    validate_waiting_room,
)
from genesis import Genesis
from node.abc import MempoolAPI, PendingTx
from node.exceptions import (
    AccountLimitReached,
    AlreadyKnown,
    MempoolFull,
    NonceGapTooLarge,
    NonceTooLow,
    ReplacementUnderpriced,
)

REPLACEMENT_BUMP_PERCENT = 10  # a replacement must raise the tip by at least this much (geth's default)


@dataclass(frozen=True)
class MempoolConfig:
    max_size: int = 20_000
    max_per_account: int = 64
    max_nonce_gap: int = 64  # how far ahead of the sender's next nonce a future tx may be


@dataclass(frozen=True, slots=True)
class Entry:
    tx: Transaction
    seq: int  # arrival order: the tie-break that keeps selection fair and deterministic

    def as_pending(self) -> PendingTx:
        return PendingTx(self.tx.hash, self.tx.sender, self.tx.nonce, self.tx.raw)


class Mempool(MempoolAPI):
    def __init__(self, genesis: Genesis, get_state: Callable[[], StateAPI], config: MempoolConfig = MempoolConfig(),
                 rules: WorkRules | None = None) -> None:
        self.genesis = genesis
        self.rules = rules if rules is not None else make_work_rules(genesis)  # the chain's, for the model check
        self.get_state = get_state
        self.config = config
        self._by_hash: dict[bytes, Entry] = {}
        self._by_sender: dict[bytes, dict[int, Entry]] = {}
        self._seq = itertools.count()
        self._requests: dict[bytes, int] = {}  # hash -> job cost (tokens/s) of each pending inference request
        self.economy_params = EconomyParams.from_genesis(genesis.params)
        self._counters = {"added": 0, "replaced": 0, "evicted": 0, "rejected": 0, "included": 0, "dropped": 0}
        # Called when an inference request enters the pool: a client waits on it (node.consensus_driver).
        self.request_listeners: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._by_hash)

    # --- admission --------------------------------------------------------------------------

    def add(self, raw_tx: bytes) -> bytes:
        try:
            tx = self.validate_new(raw_tx)
            self.validate_room(tx)
        except Exception:
            self._counters["rejected"] += 1
            raise
        self.insert(tx)
        return tx.hash

    def validate_new(self, raw_tx: bytes) -> Transaction:
        """Not already pending, and every check of the chain (a nonce ahead of the next one is allowed)."""
        tx_hash = keccak(raw_tx)  # a transaction's hash is the hash of its raw bytes
        if tx_hash in self._by_hash:
            raise AlreadyKnown("transaction already pending", got=tx_hash, expected="a new transaction")
        try:
            return validate_admission(self.get_state(), raw_tx, self.genesis, self.config.max_nonce_gap)
        except NonceMismatch as error:
            if error.got < error.expected:
                raise NonceTooLow("nonce already used", got=error.got, expected=f">= {error.expected}") from None
            raise NonceGapTooLarge("nonce too far ahead of the sender's next nonce", got=error.got,
                                   expected=f"< {error.expected + self.config.max_nonce_gap}") from None

    def validate_room(self, tx: Transaction) -> None:
        """Replacement, per-account limit and room; raises if the pool keeps what it has."""
        pending = self._by_sender.get(tx.sender, {})
        existing = pending.get(tx.nonce)
        if existing is not None:
            validate_replacement(existing.tx, tx)
            return
        if tx.kind == "inference_request":
            self.validate_request_model(tx)
            self.validate_waiting_room(tx)
        if len(pending) >= self.config.max_per_account:
            raise AccountLimitReached("too many pending transactions from this account", got=len(pending) + 1,
                                      expected=f"<= {self.config.max_per_account}")
        if len(self._by_hash) >= self.config.max_size and not self.evict_for(tx):
            raise MempoolFull("mempool is full", got=len(self._by_hash), expected=f"< {self.config.max_size}")

    def validate_request_model(self, tx: Transaction) -> None:
        """The chain's own check (`economy.models`): a request on an unknown or unauditable model is refused here,
        with the reason, rather than included and failed."""
        request = decode_payload(tx.kind, tx.data)
        self.rules.validate_request_model(self.get_state(), tx.sender, request.model_sha256, request.max_tokens)

    def validate_waiting_room(self, tx: Transaction) -> None:
        """NetworkBusy when the waiting queue is full, counting every pending request as waiting.

        Only for a request that would itself wait: one a worker has room for on
        the head state, or one with an offering (it may out-offer a waiting
        job), is left to the chain's rule.
        """
        state = self.get_state()
        waiting = get_waiting_job_count(state) + len(self._requests)
        if waiting < self.economy_params.max_waiting_jobs:
            return
        if get_job_offering(state, compute_work_id(tx.sender, tx.nonce)):
            return
        if self.is_within_free_room(state, tx):
            return
        validate_waiting_room(waiting, self.economy_params)

    def is_within_free_room(self, state: StateAPI, tx: Transaction) -> bool:
        """A worker has room for the job on the head state, and so do all workers together for it and the
        pending requests that fit a worker (those that fit none will wait and take no room)."""
        request = decode_payload(tx.kind, tx.data)
        cost = compute_job_cost(request.max_tokens, self.economy_params)
        rooms = get_free_room(state, self.economy_params, request.model_sha256, excluded=tx.sender)
        if not rooms or cost > max(rooms):
            return False
        pending = sum(c for c in self._requests.values() if c <= max(rooms))
        return pending + cost <= sum(rooms)

    def get_pending_request_count(self) -> int:
        return len(self._requests)

    def evict_for(self, tx: Transaction) -> bool:
        """Make room for `tx` by dropping the tail of the busiest sender, if that sender holds more."""
        victim_sender = max(self._by_sender, key=lambda sender: (len(self._by_sender[sender]), sender))
        own = len(self._by_sender.get(tx.sender, {}))
        if victim_sender == tx.sender or len(self._by_sender[victim_sender]) <= own + 1:
            return False
        victim = self._by_sender[victim_sender][max(self._by_sender[victim_sender])]
        self.remove(victim.tx.hash)
        self._counters["evicted"] += 1
        return True

    def insert(self, tx: Transaction) -> None:
        pending = self._by_sender.setdefault(tx.sender, {})
        replaced = pending.get(tx.nonce)
        if replaced is not None:
            del self._by_hash[replaced.tx.hash]
            self._requests.pop(replaced.tx.hash, None)
            self._counters["replaced"] += 1
        entry = Entry(tx, next(self._seq))
        pending[tx.nonce] = entry
        self._by_hash[tx.hash] = entry
        self._counters["added"] += 1
        if tx.kind == "inference_request":
            self._requests[tx.hash] = compute_job_cost(decode_payload(tx.kind, tx.data).max_tokens,
                                                       self.economy_params)
            for listener in self.request_listeners:
                listener()

    def remove(self, tx_hash: bytes) -> None:
        entry = self._by_hash.pop(tx_hash)
        self._requests.pop(tx_hash, None)
        pending = self._by_sender[entry.tx.sender]
        del pending[entry.tx.nonce]
        if not pending:
            del self._by_sender[entry.tx.sender]

    # --- reads ------------------------------------------------------------------------------

    def get(self, tx_hash: bytes) -> PendingTx | None:
        entry = self._by_hash.get(tx_hash)
        return entry.as_pending() if entry is not None else None

    def get_pending_nonce(self, address: bytes) -> int:
        nonce = self.get_state().get_nonce(address)
        pending = self._by_sender.get(address, {})
        while nonce in pending:
            nonce += 1
        return nonce

    def get_executable(self, sender: bytes, next_nonce: int, limit: int) -> list[Entry]:
        """The sender's transactions that can run in order from its next nonce (no gap), at most `limit`."""
        pending = self._by_sender.get(sender, {})
        run = []
        while next_nonce in pending and len(run) < limit:
            run.append(pending[next_nonce])
            next_nonce += 1
        return run

    def select(self, max_txs: int) -> Sequence[bytes]:
        """Highest tip first across senders, nonce order within a sender, at most the per-block cap each."""
        state = self.get_state()
        per_account = self.genesis.params.max_txs_per_account_per_block
        runs = [self.get_executable(sender, state.get_nonce(sender), per_account) for sender in self._by_sender]
        heap = [(-run[0].tx.effective_tip, run[0].seq, index, 0) for index, run in enumerate(runs) if run]
        heapq.heapify(heap)
        selected: list[bytes] = []
        while heap and len(selected) < max_txs:
            _, _, index, position = heapq.heappop(heap)
            selected.append(runs[index][position].tx.raw)
            if position + 1 < len(runs[index]):
                following = runs[index][position + 1]
                heapq.heappush(heap, (-following.tx.effective_tip, following.seq, index, position + 1))
        return selected

    def drop_invalid(self, skipped: Sequence[tuple[bytes, Exception]]) -> None:
        """Forget what a block builder refused for good (not merely "too many from this account this block").

        A refused transaction would otherwise stay at the head of its sender's queue and hold
        every later one back.
        """
        for raw, error in skipped:
            if isinstance(error, AccountTxLimitExceeded) or is_future_nonce(error):
                continue  # valid later: next block, or once the gap before it is filled
            tx_hash = keccak(raw)
            if tx_hash in self._by_hash:
                self.remove(tx_hash)
                self._counters["dropped"] += 1

    # --- after a block ----------------------------------------------------------------------

    def on_block(self, included_tx_hashes: Sequence[bytes]) -> None:
        for tx_hash in included_tx_hashes:
            if tx_hash in self._by_hash:
                self.remove(tx_hash)
                self._counters["included"] += 1
        self.drop_stale()

    def drop_stale(self) -> None:
        """Drop transactions whose nonce the head state has passed (included elsewhere, or replaced there)."""
        state = self.get_state()
        for sender in list(self._by_sender):
            next_nonce = state.get_nonce(sender)
            for nonce in [n for n in self._by_sender[sender] if n < next_nonce]:
                self.remove(self._by_sender[sender][nonce].tx.hash)
                self._counters["dropped"] += 1

    def statistics(self) -> dict:
        return {
            "size": len(self._by_hash),
            "senders": len(self._by_sender),
            "capacity": self.config.max_size,
            "requests": len(self._requests),
            **self._counters,
        }


def is_future_nonce(error: Exception) -> bool:
    return isinstance(error, NonceMismatch) and isinstance(error.got, int) and isinstance(error.expected, int) \
        and error.got > error.expected


def validate_replacement(old: Transaction, new: Transaction) -> None:
    """A same-nonce transaction replaces a pending one only with a clearly higher tip."""
    needed = old.effective_tip + max(1, old.effective_tip * REPLACEMENT_BUMP_PERCENT // 100)
    if new.effective_tip < needed:
        raise ReplacementUnderpriced("replacement tip too low", got=new.effective_tip, expected=f">= {needed}")
