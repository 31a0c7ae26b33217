"""Block building: run candidate transactions on top of a parent and seal the header.

Owns `simulate_transactions`, the one loop that tries raw transactions over a
state (snapshot, decode, apply; revert and skip what is invalid), and
`build_block`, which seals its result into a block. Used by proposers (the node
and the devnet), by the gateway to predict what the next block will do, and by
the benchmarks. It applies the same functions as
`chain.transition.execute_block`, so a built block always passes `apply_block`
on the same parent state; invalid candidates are left out (and reported),
refused work is included with a failed receipt. Receipts carry the events the
transactions emitted when the context has a `chain.events.LogSink` (a built
block always has one), and the block receipt follows them when
`finalize_block` emitted any, as in `execute_block`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from chain.abc import BlockContext, StateAPI, WorkRulesAPI
from chain.blocks import (
    Block,
    Header,
    Receipt,
    compute_commit_hash,
    compute_receipts_root,
    compute_transactions_root,
    make_receipt,
)
from chain.events import LogSink, mark_logs, take_logs, truncate_logs
from chain.exceptions import InvalidHeader, TransactionError
from chain.transactions import Transaction, decode_transaction
from chain.transition import (
    apply_transaction,
    compute_committed_receipts,
    compute_next_validators_hash,
    make_block_receipt,
    validate_account_tx_limit,
)
from consensus.votes import Commit
from genesis import Genesis


class Simulation(NamedTuple):
    """What running candidate transactions over a state did; the state holds their effects."""

    transactions: tuple[Transaction, ...]  # included, in order
    receipts: tuple[Receipt, ...]
    failures: tuple[tuple[int, str], ...]  # (index in block, why the rules refused the work)
    skipped: tuple[tuple[bytes, TransactionError], ...]  # candidates left out, and why


class BuiltBlock(NamedTuple):
    block: Block
    receipts: tuple[Receipt, ...]
    failures: tuple[tuple[int, str], ...]  # (index in block, why the rules refused the work)
    skipped: tuple[tuple[bytes, TransactionError], ...]  # candidates left out, and why
    transactions: tuple[Transaction, ...]
    block_receipt: Receipt | None = None  # end-of-block events (`chain.events`), when there are any

    @property
    def committed_receipts(self) -> tuple[Receipt, ...]:
        return compute_committed_receipts(self.receipts, self.block_receipt)


def simulate_transactions(
    state: StateAPI,
    context: BlockContext,
    raw_txs: Sequence[bytes],
    genesis: Genesis,
    rules: WorkRulesAPI,
    *,
    block_limits: bool = True,
) -> Simulation:
    """Apply `raw_txs` in order on `state` as the block `context` describes, leaving out the invalid ones.

    Each candidate runs over a snapshot: one that fails a validity check is
    reverted and reported in `skipped`; one whose work the rules refuse stays,
    failed. With `block_limits` a block's caps apply (candidates beyond
    `max_block_txs` are neither included nor reported; more than
    `max_txs_per_account_per_block` from one sender are skipped). Without them
    every candidate is tried: a prediction of what the candidates will do even
    if some must wait for a later block.
    """
    params = genesis.params
    max_txs = params.max_block_txs if block_limits else len(raw_txs)
    included: list[Transaction] = []
    receipts: list[Receipt] = []
    failures: list[tuple[int, str]] = []
    skipped: list[tuple[bytes, TransactionError]] = []
    sent: dict[bytes, int] = {}
    gas_used = 0
    for raw in raw_txs:
        if len(included) >= max_txs:
            break
        checkpoint = state.snapshot()
        logs_mark = mark_logs(context)
        try:
            tx = decode_transaction(raw, genesis.chain_id, params.max_payload_size)
            if block_limits:
                validate_account_tx_limit(tx, sent, params)
            outcome = apply_transaction(state, context, tx, len(included), genesis, rules)
        except TransactionError as error:
            state.revert(checkpoint)
            truncate_logs(context, logs_mark)
            skipped.append((raw, error))
            continue
        sent[tx.sender] = sent.get(tx.sender, 0) + 1
        gas_used += tx.gas_used
        if not outcome.succeeded:
            failures.append((len(included), outcome.reason))
        included.append(tx)
        receipts.append(make_receipt(outcome.succeeded, gas_used, take_logs(context)))
    return Simulation(tuple(included), tuple(receipts), tuple(failures), tuple(skipped))


def build_block(
    state: StateAPI,
    parent: Header,
    raw_txs: Sequence[bytes],
    timestamp_ms: int,
    proposer: bytes,
    last_commit: Commit,
    genesis: Genesis,
    rules: WorkRulesAPI,
    extra_data: bytes = b"",
) -> BuiltBlock:
    """Build the block after `parent` from `raw_txs` (in the order given), executing it on `state`.

    `state` must be the post-state of `parent`; it is left as the post-state of the
    new block (its root computed), so pass a State opened at `parent.state_root`
    that you can drop if the block is not committed. Candidates beyond
    `max_block_txs` are neither included nor reported: they wait for the next block.
    `skipped` lists the others left out with their typed error; those refused for
    `AccountTxLimitExceeded` or a future `NonceMismatch` may still fit a later block.
    """
    if timestamp_ms <= parent.timestamp_ms:
        raise InvalidHeader("timestamp_ms", got=timestamp_ms, expected=f"> {parent.timestamp_ms}")
    number = parent.number + 1
    context = BlockContext(
        number=number, timestamp_ms=timestamp_ms, proposer=proposer, parent_hash=parent.hash, logs=LogSink()
    )
    simulation = simulate_transactions(state, context, raw_txs, genesis, rules)
    recognition = rules.finalize_block(state, context)
    block_receipt = make_block_receipt(simulation.receipts, take_logs(context))
    next_validators_hash = compute_next_validators_hash(
        state, number, parent.next_validators_hash, genesis.params
    )
    state_root = state.make_state_root()
    raw_included = [tx.raw for tx in simulation.transactions]
    header = Header(
        parent_hash=parent.hash,
        number=number,
        timestamp_ms=timestamp_ms,
        proposer=proposer,
        state_root=state_root,
        transactions_root=compute_transactions_root(raw_included),
        receipts_root=compute_receipts_root(compute_committed_receipts(simulation.receipts, block_receipt)),
        validators_hash=parent.next_validators_hash,
        next_validators_hash=next_validators_hash,
        last_commit_hash=compute_commit_hash(last_commit),
        recognition=recognition,
        extra_data=extra_data,
    )
    block = Block(header, raw_included, last_commit)
    return BuiltBlock(
        block, simulation.receipts, simulation.failures, simulation.skipped, simulation.transactions, block_receipt
    )
