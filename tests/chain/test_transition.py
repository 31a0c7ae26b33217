"""apply_block / execute_block / build_block on a LevelDB-backed State: every kind, every bad block."""

from __future__ import annotations

import pytest
import rlp

from chain import ledger
from chain.blocks import Block, compute_receipts_root, compute_transactions_root
from chain.exceptions import (
    AccountTxLimitExceeded,
    HeaderMismatch,
    InsufficientBalance,
    InvalidBlockTransaction,
    InvalidHeader,
    MalformedPayload,
    NonceMismatch,
    TooManyTransactions,
    ValueTransferNotAllowed,
)
from chain.payloads import Annotation, Offering, decode_payload
from chain.transactions import POOL_ADDRESS, decode_transaction
from chain.abc import BlockContext
from chain.builder import simulate_transactions
from chain.transition import (
    NoWorkRules,
    apply_block,
    execute_block,
    get_job_offering,
    validate_admission,
    validate_transaction,
)
from consensus.votes import EMPTY_COMMIT
from genesis import MUAGIC
from tests.chain.conftest import (
    CHAIN_ID,
    TEST_GENESIS,
    USER_KEYS,
    USERS,
    VALIDATOR_KEYS,
    VALIDATORS,
    sample_payloads,
    sign_with_eth_account,
)

KINDS = list(sample_payloads())


def build_and_check(chain, raw_txs, **kwargs):
    """Build a block, re-apply it with apply_block on a fresh state at the parent root, then advance."""
    built = chain.build(raw_txs, **kwargs)
    receipts = apply_block(chain.state(), chain.head, built.block, chain.genesis, chain.rules)
    assert receipts == built.receipts
    chain.advance(built)
    return built


def test_genesis_block_commits_to_params_and_state(test_chain):
    header = test_chain.head
    state = test_chain.state()
    assert header.number == 0 and header.extra_data == TEST_GENESIS.genesis_hash
    assert sum(balance for _, balance in state.iter_accounts()) == TEST_GENESIS.supply
    for validator in TEST_GENESIS.validators:
        assert ledger.get_recognition(state, validator.address) == validator.recognition
    assert ledger.get_pool_balance(state) == TEST_GENESIS.pool_balance
    assert ledger.get_issued(state) == 0


def test_every_kind_signed_by_eth_account_is_accepted(test_chain):
    sender = USER_KEYS[0]  # a zero-balance account: work must not need MUAGIC
    payloads = sample_payloads(signer_key=VALIDATOR_KEYS[1])
    raw = [
        sign_with_eth_account(sender, nonce=i, kind=kind, payload=payloads[kind])
        for i, kind in enumerate(kinds for kinds in KINDS if kinds != "offering")
    ]
    # Three per block: TEST_PARAMS.max_txs_per_account_per_block.
    built = [build_and_check(test_chain, raw[start:start + 3]) for start in range(0, len(raw), 3)]
    assert all(r.succeeded for b in built for r in b.receipts)
    assert [tx.kind for b in built for tx in b.transactions] == [k for k in KINDS if k != "offering"]
    assert not any(b.skipped for b in built)

    # An offering needs balance: a validator offers, with a tip, also signed by eth-account.
    offering = sign_with_eth_account(
        VALIDATOR_KEYS[2],
        nonce=0,
        kind="offering",
        payload=payloads["offering"],
        value=5 * MUAGIC,
        tip=10**9,
    )
    built = build_and_check(test_chain, [offering])
    assert built.receipts[0].succeeded and built.transactions[0].sender == VALIDATORS[2]


def test_offering_moves_value_to_pool_not_recognition(test_chain):
    state = test_chain.state()
    before_balance, before_recognition = state.get_balance(VALIDATORS[1]), ledger.get_recognition(
        state, VALIDATORS[1]
    )
    pool_before = ledger.get_pool_balance(state)
    job_id = b"\x44" * 32
    tip = 10**9
    raw = sign_with_eth_account(
        VALIDATOR_KEYS[1],
        nonce=0,
        kind="offering",
        payload=Offering(b"speed", job_id),
        value=7 * MUAGIC,
        tip=tip,
    )
    fee = decode_transaction(raw, CHAIN_ID, 2048).fee
    assert fee == tip * decode_transaction(raw, CHAIN_ID, 2048).intrinsic_gas > 0
    build_and_check(test_chain, [raw])
    state = test_chain.state()
    assert state.get_balance(VALIDATORS[1]) == before_balance - 7 * MUAGIC - fee
    assert ledger.get_recognition(state, VALIDATORS[1]) == before_recognition
    issued = ledger.get_issued(state)
    assert ledger.get_pool_balance(state) == pool_before + 7 * MUAGIC + fee + issued
    assert get_job_offering(state, job_id) == 7 * MUAGIC
    assert state.get_nonce(VALIDATORS[1]) == 1


def test_evidence_slashes_into_the_pool(test_chain):
    offender = VALIDATORS[3]
    state = test_chain.state()
    balance = state.get_balance(offender)
    pool = ledger.get_pool_balance(state)
    evidence = sample_payloads(signer_key=VALIDATOR_KEYS[3])["evidence"]
    raw = sign_with_eth_account(USER_KEYS[1], nonce=0, kind="evidence", payload=evidence)
    built = build_and_check(test_chain, [raw])
    assert built.receipts[0].succeeded
    state = test_chain.state()
    assert state.get_balance(offender) == 0 and ledger.get_recognition(state, offender) == 0
    assert ledger.get_pool_balance(state) == pool + balance + ledger.get_issued(state)
    # The same evidence again proves nothing new: included, failed, nothing moves.
    again = sign_with_eth_account(USER_KEYS[1], nonce=1, kind="evidence", payload=evidence)
    built = build_and_check(test_chain, [again])
    assert not built.receipts[0].succeeded and "no recognition" in built.failures[0][1]


def test_evidence_that_proves_nothing_fails_without_slashing(test_chain):
    payloads = sample_payloads(signer_key=VALIDATOR_KEYS[0])
    forged = sample_payloads(signer_key=USER_KEYS[2])[
        "evidence"
    ]  # signed by someone else about themselves
    real = payloads["evidence"]
    # Votes signed by validator 0 but presented as validator 1's: the signature check must catch it.
    a = rlp.decode(real.vote_a, sedes=__import__("consensus.votes", fromlist=["Vote"]).Vote)
    b = rlp.decode(real.vote_b, sedes=type(a))
    framed = type(real)(
        rlp.encode(a.copy(validator=VALIDATORS[1])), rlp.encode(b.copy(validator=VALIDATORS[1]))
    )
    before = {v: test_chain.state().get_balance(v) for v in VALIDATORS}
    raw = [
        sign_with_eth_account(USER_KEYS[0], nonce=i, kind="evidence", payload=p)
        for i, p in enumerate([forged, framed])
    ]
    built = build_and_check(test_chain, raw)
    assert [r.succeeded for r in built.receipts] == [False, False]
    after = {v: test_chain.state().get_balance(v) for v in VALIDATORS}
    assert after == before


def test_refused_work_gets_a_failed_receipt_and_consumes_the_nonce(test_chain):
    raw = [
        sign_with_eth_account(
            USER_KEYS[0], nonce=0, kind="annotation", payload=Annotation(b"\x01" * 32, 5)
        ),
        sign_with_eth_account(
            USER_KEYS[0], nonce=1, kind="annotation", payload=Annotation(b"\x01" * 32, 1)
        ),
    ]
    built = build_and_check(test_chain, raw)
    assert [r.status for r in built.receipts] == [0, 1]
    assert built.failures[0][0] == 0 and "label index" in built.failures[0][1]
    assert test_chain.state().get_nonce(USERS[0]) == 2


def test_builder_skips_invalid_candidates(test_chain):
    payloads = sample_payloads()
    good = sign_with_eth_account(
        USER_KEYS[0], nonce=0, kind="attestation", payload=payloads["attestation"]
    )
    gap = sign_with_eth_account(
        USER_KEYS[1], nonce=5, kind="attestation", payload=payloads["attestation"]
    )
    broke = sign_with_eth_account(
        USER_KEYS[2], nonce=0, kind="offering", payload=payloads["offering"], value=1
    )
    junk = b"\x02\xc3\x01\x02\x03"
    built = build_and_check(test_chain, [good, gap, broke, junk, good])
    assert [tx.raw for tx in built.transactions] == [good]
    reasons = [type(error) for _, error in built.skipped]
    assert (
        reasons[0] is NonceMismatch
        and reasons[1] is InsufficientBalance
        and reasons[3] is NonceMismatch
    )


def test_per_account_limit_and_block_size(test_chain):
    payload = sample_payloads()["attestation"]
    raw = [
        sign_with_eth_account(USER_KEYS[0], nonce=i, kind="attestation", payload=payload)
        for i in range(5)
    ]
    built = build_and_check(test_chain, raw)
    limit = TEST_GENESIS.params.max_txs_per_account_per_block
    assert len(built.transactions) == limit
    assert all(isinstance(error, AccountTxLimitExceeded) for _, error in built.skipped[:1])

    # A block that breaks the limit is invalid as a whole.
    header = built.block.header
    txs = raw[limit : limit + 1] + [
        sign_with_eth_account(
            USER_KEYS[0], nonce=limit + i + 1, kind="attestation", payload=payload
        )
        for i in range(limit)
    ]
    candidate = test_chain.build(txs[:limit])
    forged = forge(candidate.block, transactions=txs)
    with pytest.raises(InvalidBlockTransaction) as info:
        apply_block(test_chain.state(), test_chain.head, forged, TEST_GENESIS, test_chain.rules)
    assert isinstance(info.value.cause, AccountTxLimitExceeded) and info.value.index == limit
    assert header == test_chain.head

    too_many = forge(
        candidate.block, transactions=[b"\x02"] * (TEST_GENESIS.params.max_block_txs + 1)
    )
    with pytest.raises(TooManyTransactions):
        apply_block(test_chain.state(), test_chain.head, too_many, TEST_GENESIS, test_chain.rules)


def forge(block: Block, *, transactions=None, **header_fields) -> Block:
    """The block with some fields replaced (transactions_root recomputed unless given)."""
    txs = block.transactions if transactions is None else transactions
    fields = {"transactions_root": compute_transactions_root(txs), **header_fields}
    return Block(block.header.copy(**fields), txs, block.last_commit)


@pytest.mark.parametrize(
    "field",
    [
        "state_root",
        "receipts_root",
        "recognition",
        "transactions_root",
        "validators_hash",
        "next_validators_hash",
        "last_commit_hash",
    ],
)
def test_wrong_commitment_is_named(test_chain, field):
    payload = sample_payloads()["inference_result"]
    built = test_chain.build(
        [sign_with_eth_account(USER_KEYS[0], nonce=0, kind="inference_result", payload=payload)]
    )
    header = built.block.header
    wrong = {"recognition": header.recognition + 1}.get(field, b"\x13" * 32)
    bad = Block(header.copy(**{field: wrong}), built.block.transactions, built.block.last_commit)
    state = test_chain.state()
    root_before = state.root
    with pytest.raises(HeaderMismatch) as info:
        apply_block(state, test_chain.head, bad, TEST_GENESIS, test_chain.rules)
    assert info.value.field == field and info.value.got == wrong
    assert info.value.expected == getattr(header, field)
    if field != "state_root":  # found before the root is folded in: every write was reverted
        assert state.make_state_root() == root_before


@pytest.mark.parametrize(
    "field,value", [("number", 5), ("parent_hash", b"\x01" * 32), ("timestamp_ms", 1)]
)
def test_header_must_follow_parent(test_chain, field, value):
    built = test_chain.build([])
    bad = Block(built.block.header.copy(**{field: value}), [], built.block.last_commit)
    with pytest.raises(InvalidHeader) as info:
        apply_block(test_chain.state(), test_chain.head, bad, TEST_GENESIS, test_chain.rules)
    assert info.value.field == field and info.value.got == value


def test_last_commit_must_be_for_the_parent(test_chain):
    build_and_check(test_chain, [])
    built = test_chain.build([])
    assert built.block.last_commit.block_hash == test_chain.head.hash
    for wrong in (EMPTY_COMMIT, built.block.last_commit.copy(height=9)):
        from consensus.votes import compute_commit_hash

        bad = Block(built.block.header.copy(last_commit_hash=compute_commit_hash(wrong)), [], wrong)
        with pytest.raises(InvalidHeader):
            apply_block(test_chain.state(), test_chain.head, bad, TEST_GENESIS, test_chain.rules)


def test_value_transfer_in_a_block_is_rejected_and_nothing_moves(test_chain):
    """A forged block moving MUAGIC between accounts is invalid; the state stays at the parent."""
    from eth_account import Account
    from eth_utils import to_checksum_address

    fields = {
        "type": 2,
        "chainId": CHAIN_ID,
        "nonce": 0,
        "to": to_checksum_address(USERS[0]),
        "value": MUAGIC,
        "data": b"",
        "gas": 21000,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
    }
    transfer = bytes(Account.sign_transaction(fields, VALIDATOR_KEYS[0]).raw_transaction)
    built = test_chain.build([transfer])
    assert isinstance(built.skipped[0][1], ValueTransferNotAllowed)
    forged = forge(built.block, transactions=[transfer])
    state = test_chain.state()
    with pytest.raises(InvalidBlockTransaction) as info:
        apply_block(state, test_chain.head, forged, TEST_GENESIS, test_chain.rules)
    assert isinstance(info.value.cause, ValueTransferNotAllowed) and info.value.index == 0
    assert state.get_balance(USERS[0]) == 0 and state.get_balance(VALIDATORS[0]) == 100 * MUAGIC


def test_nonce_gap_in_a_block_is_named(test_chain):
    payload = sample_payloads()["attestation"]
    raw = [
        sign_with_eth_account(USER_KEYS[0], nonce=n, kind="attestation", payload=payload)
        for n in (0, 2)
    ]
    built = test_chain.build(raw[:1])
    forged = forge(built.block, transactions=raw)
    with pytest.raises(InvalidBlockTransaction) as info:
        execute_block(test_chain.state(), test_chain.head, forged, TEST_GENESIS, test_chain.rules)
    assert isinstance(info.value.cause, NonceMismatch)
    assert (info.value.index, info.value.got, info.value.expected) == (1, 2, 1)


def test_validate_transaction_for_a_mempool(test_chain):
    state = test_chain.state()
    payload = sample_payloads()["attestation"]
    future = decode_transaction(
        sign_with_eth_account(USER_KEYS[0], nonce=3, kind="attestation", payload=payload),
        CHAIN_ID,
        2048,
    )
    with pytest.raises(NonceMismatch) as info:
        validate_transaction(state, future, TEST_GENESIS.params)
    assert info.value.got > info.value.expected
    malformed = decode_transaction(
        sign_with_eth_account(USER_KEYS[0], nonce=0, kind="attestation", payload=b"\xc1\x80"),
        CHAIN_ID,
        2048,
    )
    with pytest.raises(MalformedPayload):
        validate_transaction(state, malformed, TEST_GENESIS.params)
    ok = decode_transaction(
        sign_with_eth_account(USER_KEYS[0], nonce=0, kind="attestation", payload=payload),
        CHAIN_ID,
        2048,
    )
    assert validate_transaction(state, ok, TEST_GENESIS.params) == decode_payload(
        "attestation", ok.data
    )


def test_validate_admission_allows_a_near_future_nonce_only(test_chain):
    state = test_chain.state()
    payload = sample_payloads()["attestation"]

    def attestation(nonce: int, key=USER_KEYS[0]) -> bytes:
        return sign_with_eth_account(key, nonce=nonce, kind="attestation", payload=payload)

    assert validate_admission(state, attestation(0), TEST_GENESIS, 4).nonce == 0
    assert validate_admission(state, attestation(3), TEST_GENESIS, 4).nonce == 3  # held for later
    with pytest.raises(NonceMismatch) as info:
        validate_admission(state, attestation(4), TEST_GENESIS, 4)
    assert (info.value.got, info.value.expected) == (4, 0)
    # A future transaction is still held to the checks after the nonce.
    broke = sign_with_eth_account(
        USER_KEYS[2], nonce=2, kind="offering", payload=sample_payloads()["offering"], value=1
    )
    with pytest.raises(InsufficientBalance):
        validate_admission(state, broke, TEST_GENESIS, 4)
    built = build_and_check(test_chain, [attestation(0)])
    assert len(built.transactions) == 1
    with pytest.raises(NonceMismatch) as info:
        validate_admission(test_chain.state(), attestation(0), TEST_GENESIS, 4)
    assert (info.value.got, info.value.expected) == (0, 1)  # already used


def test_simulation_without_block_limits_tries_every_candidate(test_chain):
    payload = sample_payloads()["attestation"]
    raw = [
        sign_with_eth_account(USER_KEYS[0], nonce=i, kind="attestation", payload=payload)
        for i in range(5)
    ] + [b"\x02junk"]
    head = test_chain.head
    context = BlockContext(head.number + 1, head.timestamp_ms + 1, VALIDATORS[0], head.hash)
    limited = simulate_transactions(
        test_chain.state(), context, raw, TEST_GENESIS, test_chain.rules
    )
    limit = TEST_GENESIS.params.max_txs_per_account_per_block
    assert len(limited.transactions) == limit
    assert [type(error) for _, error in limited.skipped][0] is AccountTxLimitExceeded
    state = test_chain.state()
    every = simulate_transactions(
        state, context, raw, TEST_GENESIS, test_chain.rules, block_limits=False
    )
    assert [tx.raw for tx in every.transactions] == raw[:5]
    assert [raw_tx for raw_tx, _ in every.skipped] == [raw[5]]
    assert state.get_nonce(USERS[0]) == 5


def test_validator_set_changes_only_at_epoch_boundaries(test_chain):
    # epoch_length 2: blocks 1-2, 3-4, ... ; the set for block 3 is announced by block 2.
    evidence = sample_payloads(signer_key=VALIDATOR_KEYS[3])["evidence"]
    first = build_and_check(
        test_chain,
        [sign_with_eth_account(USER_KEYS[0], nonce=0, kind="evidence", payload=evidence)],
    )
    assert first.block.header.next_validators_hash == first.block.header.validators_hash
    second = build_and_check(test_chain, [])
    assert second.block.header.next_validators_hash != second.block.header.validators_hash
    third = build_and_check(test_chain, [])
    assert third.block.header.validators_hash == second.block.header.next_validators_hash


def test_no_work_rules_is_inert(test_chain):
    test_chain.rules = NoWorkRules()
    built = build_and_check(test_chain, [])
    assert built.block.header.recognition == 0
    assert ledger.get_issued(test_chain.state()) == 0


def test_receipts_root_is_over_typed_receipts(test_chain):
    payload = sample_payloads()["attestation"]
    built = build_and_check(
        test_chain,
        [sign_with_eth_account(USER_KEYS[0], nonce=0, kind="attestation", payload=payload)],
    )
    assert built.block.header.receipts_root == compute_receipts_root(built.receipts)
    assert built.receipts[0].encode()[:1] == b"\x02"
    assert built.receipts[0].cumulative_gas_used == built.transactions[0].intrinsic_gas
    assert POOL_ADDRESS == (0x1000).to_bytes(20, "big")
