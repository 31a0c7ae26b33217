"""The state transition: `apply_block(state, parent, block, genesis, rules) -> receipts`, and genesis.

Pure and synchronous, in the manner of ethereum/execution-specs: a block is
checked against its parent, every transaction is validated and applied in
order, the recognition economy (`WorkRulesAPI`) finalises the block, and the
header's commitments are checked against what execution produced.

What the chain itself applies, per transaction: the nonce, the tip (into the
pool), offerings (into the pool) and evidence (a slash into the pool). Every
other kind (register_worker, inference_request, inference_result, attestation,
annotation_task, annotation) goes to `rules.apply_work`, because the economy
keeps the worker registry, jobs and tasks those kinds act on.

Invalid versus failed. A transaction that fails a check any node can make
before applying it (signature, chain id, kind, value, size, fee fields, nonce,
balance, per-account limit, payload format) makes the whole block invalid: the
proposer should never have included it, and `build_block` skips it. A
well-formed work payload that the rules (or evidence verification) refuse given
the current state is *included and failed*: its receipt has status 0, the
nonce and tip are consumed, its payload effects are reverted, and the reason is
returned in `BlockOutcome.failures` (the side index; not part of any root).
We chose this because such refusals depend on state that moves while a
transaction waits in a mempool (a job already scored, a deadline passed); with
status 0 the sender's nonce still advances, so its later transactions are not
stuck, and spam stays bounded by the per-account limit per block.

Events. The context carries a `chain.events.LogSink`: what a transaction's
payload emits goes into its receipt (nothing when it is refused: the logs go
with the reverted effects), what `finalize_block` emits into the block receipt
appended after the transactions' receipts when there is any (`chain.events`).
The chain emits `Offering` and `Slashed` itself; the economy emits the rest.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from chain import ledger
from chain.abc import BlockContext, StateAPI, TxContext, WorkRulesAPI
from chain.blocks import (
    BLANK_ROOT_HASH,
    EMPTY_COMMIT,
    ZERO_ADDRESS,
    ZERO_HASH,
    Block,
    Header,
    Receipt,
    compute_commit_hash,
    compute_receipts_root,
    compute_transactions_root,
    make_receipt,
)
from chain.events import (
    OFFERING,
    SLASHED,
    LogSink,
    emit_event,
    mark_logs,
    take_logs,
    truncate_logs,
)
from chain.exceptions import (
    AccountTxLimitExceeded,
    BadSignature,
    ChainError,
    HeaderMismatch,
    InsufficientBalance,
    InvalidBlockTransaction,
    InvalidEvidence,
    InvalidHeader,
    NonceMismatch,
    TooManyTransactions,
    TransactionError,
)
from chain.payloads import Evidence, Offering, decode_payload
from chain.transactions import (
    ADDRESS_BY_KIND,
    POOL_ADDRESS,
    Transaction,
    decode_transaction,
    is_system_address,
)
from consensus.validators import (
    ValidatorSet,
    compute_validator_set,
    compute_validators_hash,
    is_epoch_boundary,
)
from consensus.evidence import decode_evidence_votes, validate_evidence
from consensus.exceptions import ConsensusError
from genesis import Genesis, Params

OFFERING_ADDRESS = ADDRESS_BY_KIND["offering"]


class TxOutcome(NamedTuple):
    succeeded: bool
    reason: str | None  # why the rules refused the work (failed receipts only)


class BlockOutcome(NamedTuple):
    receipts: tuple[Receipt, ...]
    failures: tuple[tuple[int, str], ...]  # (tx index, reason) of the failed receipts
    recognition: int
    state_root: bytes
    transactions: tuple[Transaction, ...]
    block_receipt: Receipt | None = None  # end-of-block events, when finalize_block emitted any

    @property
    def committed_receipts(self) -> tuple[Receipt, ...]:
        """What the receipts trie holds: the transactions' receipts, then the block receipt if any."""
        return compute_committed_receipts(self.receipts, self.block_receipt)


# --- blocks ---------------------------------------------------------------------------------------


def apply_block(
    state: StateAPI, parent: Header, block: Block, genesis: Genesis, rules: WorkRulesAPI
) -> tuple[Receipt, ...]:
    """Validate and apply `block` on top of `parent`; returns its receipts. See `execute_block`."""
    return execute_block(state, parent, block, genesis, rules).receipts


def execute_block(
    state: StateAPI, parent: Header, block: Block, genesis: Genesis, rules: WorkRulesAPI
) -> BlockOutcome:
    """Validate and apply `block`, raising a BlockError subclass if anything about it is wrong.

    `state` must be the post-state of `parent`. On an error raised before the
    state root is computed, every write is reverted. A root mismatch is found
    only after `make_state_root()` has folded the writes into the state's tries,
    so on `HeaderMismatch("state_root")` the caller must discard `state` (reopen
    it at `parent.state_root`); the chain store never commits such a state.
    """
    header = block.header
    params = genesis.params
    validate_header(header, parent)
    validate_last_commit(block, parent)
    validate_validators_hash(header, parent)
    validate_transaction_count(block, params)
    validate_transactions_root(block)
    transactions = decode_block_transactions(block, genesis)

    checkpoint = state.snapshot()
    try:
        context = get_block_context(header)
        issued_before = ledger.get_issued(state)
        receipts, failures = apply_transactions(state, context, transactions, genesis, rules)
        recognition = rules.finalize_block(state, context)
        # Supply grows only by the issuance genesis allows; no rules implementation may mint more.
        assert ledger.get_issued(state) - issued_before <= params.issuance_per_block, "over-issuance"
        block_receipt = make_block_receipt(receipts, take_logs(context))
        validate_receipts_root(header, compute_committed_receipts(receipts, block_receipt))
        validate_recognition(header, recognition)
        next_validators_hash = compute_next_validators_hash(
            state, header.number, header.validators_hash, params
        )
        validate_next_validators_hash(header, next_validators_hash)
    except BaseException:
        state.revert(checkpoint)
        raise
    state_root = state.make_state_root()
    validate_state_root(header, state_root)
    return BlockOutcome(
        tuple(receipts), tuple(failures), recognition, state_root, tuple(transactions), block_receipt
    )


def get_block_context(header: Header) -> BlockContext:
    return BlockContext(
        number=header.number,
        timestamp_ms=header.timestamp_ms,
        proposer=header.proposer,
        parent_hash=header.parent_hash,
        logs=LogSink(),
    )


def make_block_receipt(receipts: Sequence[Receipt], logs: Sequence) -> Receipt | None:
    """The receipt of the end-of-block events (`chain.events`): None when finalize_block emitted nothing."""
    if not logs:
        return None
    return make_receipt(True, receipts[-1].cumulative_gas_used if receipts else 0, logs)


def compute_committed_receipts(receipts: Sequence[Receipt], block_receipt: Receipt | None) -> tuple[Receipt, ...]:
    return tuple(receipts) if block_receipt is None else (*receipts, block_receipt)


def validate_header(header: Header, parent: Header) -> None:
    """The header extends `parent`: the next number, its hash, a later timestamp."""
    if header.number != parent.number + 1:
        raise InvalidHeader("number", got=header.number, expected=parent.number + 1)
    if header.parent_hash != parent.hash:
        raise InvalidHeader("parent_hash", got=header.parent_hash, expected=parent.hash)
    # Strictly later, so that time (and every deadline measured in it) only moves forward.
    if header.timestamp_ms <= parent.timestamp_ms:
        raise InvalidHeader(
            "timestamp_ms", got=header.timestamp_ms, expected=f"> {parent.timestamp_ms}"
        )


def validate_last_commit(block: Block, parent: Header) -> None:
    """The block carries a commit for its parent (genesis is never voted on: block 1 carries none).

    Whether the commit's signatures carry > 2/3 of the parent's validator set is
    checked by the caller with `consensus.votes.validate_commit`, which needs the set.
    """
    commit = block.last_commit
    commit_hash = compute_commit_hash(commit)
    if block.header.last_commit_hash != commit_hash:
        raise HeaderMismatch(
            "last_commit_hash", got=block.header.last_commit_hash, expected=commit_hash
        )
    if parent.number == 0:
        if commit != EMPTY_COMMIT:
            raise InvalidHeader(
                "last_commit",
                got=compute_commit_hash(commit),
                expected=compute_commit_hash(EMPTY_COMMIT),
            )
        return
    if commit.height != parent.number:
        raise InvalidHeader("last_commit.height", got=commit.height, expected=parent.number)
    if commit.block_hash != parent.hash:
        raise InvalidHeader("last_commit.block_hash", got=commit.block_hash, expected=parent.hash)


def validate_transaction_count(block: Block, params: Params) -> None:
    count = len(block.transactions)
    if count > params.max_block_txs:
        raise TooManyTransactions(
            "block has too many transactions", got=count, expected=f"<= {params.max_block_txs}"
        )


def validate_transactions_root(block: Block) -> None:
    computed = compute_transactions_root(block.transactions)
    if block.header.transactions_root != computed:
        raise HeaderMismatch(
            "transactions_root", got=block.header.transactions_root, expected=computed
        )


def validate_receipts_root(header: Header, receipts: Sequence[Receipt]) -> None:
    computed = compute_receipts_root(receipts)
    if header.receipts_root != computed:
        raise HeaderMismatch("receipts_root", got=header.receipts_root, expected=computed)


def validate_recognition(header: Header, recognition: int) -> None:
    if header.recognition != recognition:
        raise HeaderMismatch("recognition", got=header.recognition, expected=recognition)


def validate_state_root(header: Header, state_root: bytes) -> None:
    if header.state_root != state_root:
        raise HeaderMismatch("state_root", got=header.state_root, expected=state_root)


def validate_validators_hash(header: Header, parent: Header) -> None:
    """The set in force is the one the parent announced."""
    if header.validators_hash != parent.next_validators_hash:
        raise HeaderMismatch(
            "validators_hash", got=header.validators_hash, expected=parent.next_validators_hash
        )


def validate_next_validators_hash(header: Header, next_validators_hash: bytes) -> None:
    """The set announced for the next block: it may change only at an epoch boundary."""
    if header.next_validators_hash != next_validators_hash:
        raise HeaderMismatch(
            "next_validators_hash", got=header.next_validators_hash, expected=next_validators_hash
        )


def decode_block_transactions(block: Block, genesis: Genesis) -> list[Transaction]:
    transactions = []
    for index, raw in enumerate(block.transactions):
        try:
            transactions.append(
                decode_transaction(raw, genesis.chain_id, genesis.params.max_payload_size)
            )
        except TransactionError as error:
            raise InvalidBlockTransaction(index, error) from None
    return transactions


# --- validator sets -------------------------------------------------------------------------------


def get_validator_set(state: StateAPI, params: Params) -> ValidatorSet | None:
    """The set the state's recognition selects now (threshold and cap), None if nobody qualifies."""
    candidates = []
    for address, _balance in state.iter_accounts():
        if is_system_address(address):
            continue
        recognition = ledger.get_recognition(state, address)
        if recognition:
            candidates.append((address, recognition))
    try:
        return compute_validator_set(candidates, params.validator_threshold, params.validator_cap)
    except ConsensusError:
        return None


def compute_next_validators_hash(
    state: StateAPI, number: int, validators_hash: bytes, params: Params
) -> bytes:
    """The set for block number+1: re-derived from state when number+1 starts an epoch, else unchanged.

    If nobody qualifies any more (everyone slashed) the set in force stays, so the
    chain can still finalise the blocks that would let work rebuild recognition.
    """
    if not is_epoch_boundary(number + 1, params.epoch_length):
        return validators_hash
    validator_set = get_validator_set(state, params)
    if validator_set is None:
        return validators_hash
    return compute_validators_hash(validator_set)


# --- transactions ---------------------------------------------------------------------------------


def apply_transactions(
    state: StateAPI,
    context: BlockContext,
    transactions: Sequence[Transaction],
    genesis: Genesis,
    rules: WorkRulesAPI,
) -> tuple[list[Receipt], list[tuple[int, str]]]:
    receipts: list[Receipt] = []
    failures: list[tuple[int, str]] = []
    sent: dict[bytes, int] = {}
    gas_used = 0
    for index, tx in enumerate(transactions):
        try:
            validate_account_tx_limit(tx, sent, genesis.params)
            outcome = apply_transaction(state, context, tx, index, genesis, rules)
        except TransactionError as error:
            raise InvalidBlockTransaction(index, error) from None
        sent[tx.sender] = sent.get(tx.sender, 0) + 1
        gas_used += tx.gas_used
        receipts.append(make_receipt(outcome.succeeded, gas_used, take_logs(context)))
        if not outcome.succeeded:
            failures.append((index, outcome.reason))
    return receipts, failures


def validate_account_tx_limit(tx: Transaction, sent: dict[bytes, int], params: Params) -> None:
    # Fees can be zero, so this per-account cap is what bounds spam in a block.
    already = sent.get(tx.sender, 0)
    if already >= params.max_txs_per_account_per_block:
        raise AccountTxLimitExceeded(
            "too many transactions from one account in this block",
            got=already + 1,
            expected=f"<= {params.max_txs_per_account_per_block}",
        )


def validate_transaction(state: StateAPI, tx: Transaction, params: Params) -> object:
    """Every check of `tx` against `state` (after `decode_transaction`'s stateless ones); returns the payload.

    A NonceMismatch whose `got` is above its `expected` is a future transaction,
    not a bad one: `validate_admission` holds such a transaction to the other checks.
    """
    # A system address has no private key, so a signature recovering to one is forged or broken.
    if is_system_address(tx.sender):
        raise BadSignature(
            "signature recovers to a system address", got=tx.sender, expected="an account"
        )
    payload = tx.payload if tx.payload is not None else decode_payload(tx.kind, tx.data)
    expected_nonce = state.get_nonce(tx.sender)
    if tx.nonce != expected_nonce:
        raise NonceMismatch(
            "nonce is not the sender's next nonce", got=tx.nonce, expected=expected_nonce
        )
    validate_balance(state, tx)
    return payload


def validate_balance(state: StateAPI, tx: Transaction) -> None:
    balance = state.get_balance(tx.sender)
    cost = tx.value + tx.fee
    if cost > balance:
        raise InsufficientBalance(
            "balance does not cover value plus tip", got=balance, expected=f">= {cost}"
        )


def validate_admission(
    state: StateAPI, raw_tx: bytes, genesis: Genesis, max_nonce_ahead: int
) -> Transaction:
    """Every check a pool makes before holding `raw_tx` for a later block; returns it decoded.

    The checks a block makes (`decode_transaction`, then `validate_transaction`
    against `state`), except that a nonce ahead of the sender's next one by
    less than `max_nonce_ahead` is allowed: a future transaction, valid once
    the gap before it is filled, so it must pass every other check now.
    Raises `NonceMismatch` (`got` the nonce, `expected` the sender's next one)
    for a nonce already used or one too far ahead, and the other
    `TransactionError`s as a block would.
    """
    tx = decode_transaction(raw_tx, genesis.chain_id, genesis.params.max_payload_size)
    try:
        validate_transaction(state, tx, genesis.params)
    except NonceMismatch as error:
        # validate_transaction stops at the nonce; the checks after it still apply to a future tx.
        validate_future_nonce(tx, error.expected, max_nonce_ahead)
        validate_balance(state, tx)
    return tx


def validate_future_nonce(tx: Transaction, next_nonce: int, max_nonce_ahead: int) -> None:
    if tx.nonce < next_nonce:
        raise NonceMismatch("nonce already used", got=tx.nonce, expected=next_nonce)
    if tx.nonce - next_nonce >= max_nonce_ahead:
        raise NonceMismatch(
            "nonce too far ahead of the sender's next nonce", got=tx.nonce, expected=next_nonce
        )


def apply_transaction(
    state: StateAPI,
    context: BlockContext,
    tx: Transaction,
    index: int,
    genesis: Genesis,
    rules: WorkRulesAPI,
) -> TxOutcome:
    payload = validate_transaction(state, tx, genesis.params)
    apply_common_effects(state, tx)
    checkpoint = state.snapshot()
    logs_mark = mark_logs(context)
    try:
        apply_payload(
            state,
            context,
            TxContext(tx.sender, tx.nonce, tx.hash, index),
            tx,
            payload,
            genesis,
            rules,
        )
    except ChainError as refusal:
        # Refused work is included and failed: its payload effects go, its nonce and tip stay.
        state.revert(checkpoint)
        truncate_logs(context, logs_mark)
        return TxOutcome(False, str(refusal))
    return TxOutcome(True, None)


def apply_common_effects(state: StateAPI, tx: Transaction) -> None:
    state.set_nonce(tx.sender, tx.nonce + 1)
    if tx.fee:
        # The tip goes to the pool, never to the proposer: no account can be paid by another.
        ledger.apply_offering(state, tx.sender, tx.fee)


def apply_payload(
    state: StateAPI,
    context: BlockContext,
    tx_context: TxContext,
    tx: Transaction,
    payload: object,
    genesis: Genesis,
    rules: WorkRulesAPI,
) -> None:
    if tx.kind == "offering":
        apply_offering_payload(state, tx, payload)
        emit_event(context, OFFERING, tx.sender, bytes(payload.job_id).rjust(32, b"\x00"), tx.value)
    elif tx.kind == "evidence":
        offender, amount = apply_evidence_payload(state, payload, genesis.chain_id)
        emit_event(context, SLASHED, offender, tx.sender, amount)
    else:
        rules.apply_work(state, context, tx_context, tx.kind, payload)


def apply_offering_payload(state: StateAPI, tx: Transaction, payload: Offering) -> None:
    ledger.apply_offering(state, tx.sender, tx.value)
    if payload.job_id and tx.value:
        # Kept per job so the economy and the RPC can see what a job was prioritised with.
        total = get_job_offering(state, payload.job_id) + tx.value
        state.set_storage(
            OFFERING_ADDRESS, payload.job_id, total.to_bytes((total.bit_length() + 7) // 8, "big")
        )


def get_job_offering(state: StateAPI, job_id: bytes) -> int:
    return int.from_bytes(state.get_storage(OFFERING_ADDRESS, job_id), "big")


def apply_evidence_payload(state: StateAPI, payload: Evidence, chain_id: int) -> tuple[bytes, int]:
    """Slash the validator that signed both votes; refuse evidence that proves nothing.

    Returns (offender, amount moved to the pool).
    """
    try:
        vote_a, vote_b = decode_evidence_votes(payload.vote_a, payload.vote_b)
        offender = vote_a.validator
        recognition = ledger.get_recognition(state, offender)
        # Only weight can be misused: an account without recognition (never a validator, or
        # already slashed, which also makes resubmitted evidence harmless) cannot be slashed.
        if recognition == 0:
            raise InvalidEvidence(
                "the accused has no recognition to slash",
                got=offender,
                expected="an account with recognition",
            )
        validate_evidence(vote_a, vote_b, chain_id, ValidatorSet([(offender, recognition)]))
    except ConsensusError as error:
        raise InvalidEvidence(
            f"evidence rejected: {error}",
            got=getattr(error, "got", None),
            expected=getattr(error, "expected", None),
        ) from None
    return offender, ledger.apply_slash(state, offender)


# --- genesis --------------------------------------------------------------------------------------


def apply_genesis(state: StateAPI, genesis: Genesis) -> Block:
    """Write the initial state of `genesis` into an empty `state` and return block 0.

    Block 0's `extra_data` is `genesis.genesis_hash`, so its hash commits to the
    parameters and the fork table as well as to the state.
    """
    genesis.validate()
    for validator in genesis.validators:
        ledger.apply_genesis_allocation(
            state, validator.address, validator.balance, validator.recognition
        )
    ledger.apply_genesis_allocation(state, POOL_ADDRESS, genesis.pool_balance, 0)
    state_root = state.make_state_root()
    validator_set = compute_validator_set(
        [(v.address, v.recognition) for v in genesis.validators],
        genesis.params.validator_threshold,
        genesis.params.validator_cap,
    )
    validators_hash = compute_validators_hash(validator_set)
    header = Header(
        parent_hash=ZERO_HASH,
        number=0,
        timestamp_ms=genesis.timestamp_ms,
        proposer=ZERO_ADDRESS,
        state_root=state_root,
        transactions_root=BLANK_ROOT_HASH,
        receipts_root=BLANK_ROOT_HASH,
        validators_hash=validators_hash,
        next_validators_hash=validators_hash,
        last_commit_hash=compute_commit_hash(EMPTY_COMMIT),
        recognition=0,
        extra_data=genesis.genesis_hash,
    )
    return Block(header, [], EMPTY_COMMIT)


# --- for testing the chain in isolation -----------------------------------------------------------


class NoWorkRules(WorkRulesAPI):
    """TEST ONLY: accepts every work payload and does nothing with it; finalises 0 recognition.

    The real rules are `economy.WorkRules`. This exists so the chain's own
    tests can exercise the transition without the economy; never run a node with it.
    """

    def apply_work(
        self, state: StateAPI, block: BlockContext, tx: TxContext, kind: str, payload: object
    ) -> None:
        return None

    def finalize_block(self, state: StateAPI, block: BlockContext) -> int:
        return 0
