"""The ledger rules as a Hypothesis state machine, against a small reference ledger.

Random sequences of every transaction kind, valid and invalid (value transfers
to accounts, value on work kinds, nonce gaps and replays, wrong chain ids,
malformed payloads, the pool as a `to`, offerings beyond the balance, real and
bogus equivocation evidence), are built into blocks with `build_block` on
LevelDB and re-applied with `execute_block` on a fresh state. After every block:

- the state equals the reference ledger (balances, recognition, nonces, pool, issued);
- sum of all balances (pool included) == genesis supply + issued so far;
- no account's balance decreased except by its own signed offering/tip, or by
  an evidence-backed slash (which leaves it at zero);
- forged blocks (a transfer between accounts slipped in, tampered commitments)
  are rejected with their typed error and change nothing.

The reference shares no code with chain/: it recomputes intrinsic gas, validity
and every balance move itself.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import rlp
from eth_account import Account
from eth_utils import to_checksum_address
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from chain import ledger
from chain.blocks import Block, compute_transactions_root
from chain.exceptions import HeaderMismatch, InvalidBlockTransaction, ValueTransferNotAllowed
from chain.payloads import Annotation, Evidence
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS, make_work_tx_fields
from chain.transition import apply_block, execute_block
from consensus.votes import PRECOMMIT, make_vote, sign_vote
from genesis import MUAGIC
from tests.chain.conftest import (
    CHAIN_ID,
    TEST_GENESIS,
    USER_KEYS,
    VALIDATOR_KEYS,
    ChainHarness,
    RecordingRules,
    sample_payloads,
)

KEYS = VALIDATOR_KEYS + USER_KEYS
ADDRESSES = [Account.from_key(k).address for k in KEYS]
ACCOUNTS = [bytes.fromhex(a[2:]) for a in ADDRESSES]
KINDS = list(ADDRESS_BY_KIND)
VARIANTS = ["valid"] * 12 + [
    "nonce_gap",
    "replay",
    "transfer",
    "value_on_work",
    "wrong_chain",
    "malformed",
    "to_pool",
]
AMOUNTS = [0, 1, 10**15, 5 * MUAGIC, 60 * MUAGIC, 500 * MUAGIC]
TIPS = [0, 0, 1, 10**9]
ISSUANCE = 2 * MUAGIC
REWARD = 3 * MUAGIC
PARAMS = TEST_GENESIS.params
TX_SPECS = st.tuples(
    st.integers(0, len(KEYS) - 1),  # sender
    st.sampled_from(KINDS),
    st.sampled_from(VARIANTS),
    st.sampled_from(AMOUNTS),
    st.sampled_from(TIPS),
    st.integers(0, 3),  # annotation label index (>= 2 is refused by the rules)
    st.integers(0, len(KEYS) - 1),  # evidence offender
    st.booleans(),  # conflicting votes (real evidence) or not
    st.integers(0, len(KEYS) - 1),  # the other account of a transfer attempt
)


def intrinsic_gas(data: bytes) -> int:
    """Yellow paper intrinsic gas for a call with `data` (Istanbul costs, no access list)."""
    zeros = data.count(0)
    return 21_000 + 4 * zeros + 16 * (len(data) - zeros)


class Candidate:
    def __init__(
        self, raw, sender, kind, nonce, value, tip, data, well_formed, effect=None, offender=None
    ):
        self.raw, self.sender, self.kind, self.nonce = raw, sender, kind, nonce
        self.value, self.tip, self.data, self.well_formed = value, tip, data, well_formed
        self.effect, self.offender = (
            effect,
            offender,
        )  # effect: None, "claim", "refused", "slash", "bogus"


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ledger-machine-"))
        self.chain = ChainHarness(self.tmp / "db", rules=RecordingRules(ISSUANCE, REWARD))
        self.balance = {v.address: v.balance for v in TEST_GENESIS.validators}
        self.recognition = {v.address: v.recognition for v in TEST_GENESIS.validators}
        self.nonce: dict[bytes, int] = {}
        self.pool = TEST_GENESIS.pool_balance
        self.issued = 0
        self.pending: list[Candidate] = []
        self.next_nonce: dict[bytes, int] = {}

    def teardown(self) -> None:
        self.chain.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- transactions -------------------------------------------------------------------------

    def sign(self, key, *, to, nonce, value, data, tip, chain_id=CHAIN_ID) -> bytes:
        fields = make_work_tx_fields(
            chain_id=chain_id,
            nonce=nonce,
            kind="attestation",
            data=data,
            value=value,
            gas=500_000,
            max_fee_per_gas=tip,
            max_priority_fee_per_gas=tip,
        )
        fields["to"] = to_checksum_address(to)
        return bytes(Account.sign_transaction(fields, key).raw_transaction)

    @rule(specs=st.lists(TX_SPECS, min_size=2, max_size=12))
    def submit(self, specs):
        for spec in specs:
            self.submit_one(*spec)

    def submit_one(self, sender, kind, variant, amount, tip, label, offender, conflicting, other):
        key, address = KEYS[sender], ACCOUNTS[sender]
        guess = self.next_nonce.get(address, self.nonce.get(address, 0))
        nonce = {"nonce_gap": guess + 1, "replay": max(guess - 1, 0)}.get(variant, guess)
        payload, effect, offender_address = self.make_payload(kind, label, offender, conflicting)
        data = rlp.encode(payload)
        value = amount if kind == "offering" else 0
        to = ADDRESS_BY_KIND[kind]
        chain_id = CHAIN_ID
        well_formed = variant in ("valid", "nonce_gap", "replay")
        if variant == "transfer":
            to, value = ACCOUNTS[other], max(amount, 1)
        elif variant == "value_on_work":
            kind = "attestation" if kind == "offering" else kind
            to, value = ADDRESS_BY_KIND[kind], max(amount, 1)
        elif variant == "wrong_chain":
            chain_id = CHAIN_ID + 1
        elif variant == "malformed":
            data = b"\xc3\x01\x02"
        elif variant == "to_pool":
            to, value = POOL_ADDRESS, max(amount, 1)
        raw = self.sign(key, to=to, nonce=nonce, value=value, data=data, tip=tip, chain_id=chain_id)
        self.pending.append(
            Candidate(
                raw, address, kind, nonce, value, tip, data, well_formed, effect, offender_address
            )
        )
        if variant == "valid":
            self.next_nonce[address] = guess + 1

    def make_payload(self, kind, label, offender, conflicting):
        payloads = sample_payloads()
        if kind == "annotation":
            return Annotation(b"\x01" * 32, label), ("refused" if label >= 2 else None), None
        if kind == "inference_result":
            return payloads[kind], "claim", None
        if kind == "evidence":
            key, address = KEYS[offender], ACCOUNTS[offender]
            vote_a = sign_vote(make_vote(PRECOMMIT, 9, 0, b"\xaa" * 32, address), key, CHAIN_ID)
            # Not conflicting: a later round, which is no equivocation at all.
            vote_b = sign_vote(
                make_vote(
                    PRECOMMIT,
                    9,
                    0 if conflicting else 1,
                    b"\xbb" * 32 if conflicting else b"\xaa" * 32,
                    address,
                ),
                key,
                CHAIN_ID,
            )
            return (
                Evidence(rlp.encode(vote_a), rlp.encode(vote_b)),
                ("slash" if conflicting else "bogus"),
                address,
            )
        return payloads[kind], None, None

    # --- the reference ledger -------------------------------------------------------------------

    def model_block(self):
        """Apply the pending candidates to the reference; returns (included raws, statuses, allowed decreases)."""
        included, statuses, sent = [], [], {}
        allowed: dict[bytes, int] = {}
        slashed: set[bytes] = set()
        claims: list[bytes] = []
        for c in self.pending:
            if len(included) >= PARAMS.max_block_txs:
                break
            fee = intrinsic_gas(c.data) * c.tip
            if (
                not c.well_formed
                or sent.get(c.sender, 0) >= PARAMS.max_txs_per_account_per_block
                or c.nonce != self.nonce.get(c.sender, 0)
                or c.value + fee > self.balance.get(c.sender, 0)
            ):
                continue
            sent[c.sender] = sent.get(c.sender, 0) + 1
            self.nonce[c.sender] = c.nonce + 1
            self.move_to_pool(c.sender, fee + c.value)
            allowed[c.sender] = allowed.get(c.sender, 0) + fee + c.value
            succeeded = True
            if c.effect == "refused":
                succeeded = False
            elif c.effect == "claim":
                claims.append(c.sender)
            elif c.effect in ("slash", "bogus"):
                if c.effect == "slash" and self.recognition.get(c.offender, 0) > 0:
                    self.move_to_pool(c.offender, self.balance.get(c.offender, 0))
                    self.recognition[c.offender] = 0
                    slashed.add(c.offender)
                else:
                    succeeded = False
            included.append(c.raw)
            statuses.append(int(succeeded))
        self.pool += ISSUANCE
        self.issued += ISSUANCE
        rewarded: dict[bytes, int] = {}
        for earner in claims:
            amount = min(REWARD, self.pool)
            self.pool -= amount
            self.balance[earner] = self.balance.get(earner, 0) + amount
            self.recognition[earner] = self.recognition.get(earner, 0) + amount
            rewarded[earner] = rewarded.get(earner, 0) + amount
        return included, statuses, allowed, slashed, rewarded

    def move_to_pool(self, account: bytes, amount: int) -> None:
        assert amount <= self.balance.get(account, 0)
        self.balance[account] = self.balance.get(account, 0) - amount
        self.pool += amount

    # --- blocks ---------------------------------------------------------------------------------

    @precondition(lambda self: self.pending)
    @rule()
    def seal_block(self):
        before = dict(self.read_balances())
        included, statuses, allowed, slashed, rewarded = self.model_block()
        built = self.chain.build([c.raw for c in self.pending])
        assert [tx.raw for tx in built.transactions] == included
        assert [r.status for r in built.receipts] == statuses
        # Any node re-executing the block from the parent state reaches the same root.
        outcome = execute_block(
            self.chain.state(), self.chain.head, built.block, TEST_GENESIS, self.chain.rules
        )
        assert outcome.state_root == built.block.header.state_root
        self.chain.advance(built)
        self.pending = []
        self.next_nonce = {}

        after = self.read_balances()
        for account, balance in after.items():
            if account == POOL_ADDRESS:
                continue
            old = before.get(account, 0)
            if account in slashed:
                # The slash took everything; only rewards finalised after it in this block can be there.
                assert balance == rewarded.get(account, 0)
            else:
                # Rewards may raise a balance; only the account's own signed offerings and tips lower it.
                assert balance >= old - allowed.get(account, 0), (account.hex(), old, balance)
        self.check_against_reference()

    @rule(
        variant=st.sampled_from(["transfer", "state_root", "recognition", "receipts_root"]),
        other=st.integers(0, len(KEYS) - 1),
    )
    def forged_block_is_rejected(self, variant, other):
        built = self.chain.build([])
        block = built.block
        if variant == "transfer":
            transfer = self.sign(
                KEYS[0],
                to=ACCOUNTS[other],
                nonce=self.nonce.get(ACCOUNTS[0], 0),
                value=MUAGIC,
                data=b"",
                tip=0,
            )
            txs = [transfer]
            forged = Block(
                block.header.copy(transactions_root=compute_transactions_root(txs)),
                txs,
                block.last_commit,
            )
            expected = InvalidBlockTransaction
        else:
            wrong = block.header.recognition + 1 if variant == "recognition" else b"\x66" * 32
            forged = Block(
                block.header.copy(**{variant: wrong}), block.transactions, block.last_commit
            )
            expected = HeaderMismatch
        try:
            apply_block(self.chain.state(), self.chain.head, forged, TEST_GENESIS, self.chain.rules)
        except expected as error:
            if variant == "transfer":
                assert isinstance(error.cause, ValueTransferNotAllowed)
            else:
                assert error.field == variant
        else:
            raise AssertionError(f"forged block ({variant}) was accepted")
        self.check_against_reference()

    # --- checks ---------------------------------------------------------------------------------

    def read_balances(self) -> dict[bytes, int]:
        return dict(self.chain.state().iter_accounts())

    def check_against_reference(self) -> None:
        state = self.chain.state()
        for account in ACCOUNTS:
            assert state.get_balance(account) == self.balance.get(account, 0)
            assert ledger.get_recognition(state, account) == self.recognition.get(account, 0)
            assert state.get_nonce(account) == self.nonce.get(account, 0)
        assert ledger.get_pool_balance(state) == self.pool
        assert ledger.get_issued(state) == self.issued

    @invariant()
    def supply_is_conserved(self):
        state = self.chain.state()
        total = sum(balance for _, balance in state.iter_accounts())
        assert total == TEST_GENESIS.supply + ledger.get_issued(state)
        assert total == sum(self.balance.values()) + self.pool


LedgerMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestLedgerMachine = LedgerMachine.TestCase


class EconomyLedgerMachine(LedgerMachine):
    """The same random traffic through the real economy (`economy.WorkRules`).

    The economy's rewards are not modelled here (its own tests do that); what is
    checked is the ledger rule whatever the economy decides: supply is conserved,
    no balance falls except by the account's own offering/tip or an evidence-backed
    slash, and recognition only falls by a slash. Results and attestations name
    jobs requested earlier, so routing, results and payouts really happen.
    """

    def __init__(self) -> None:
        from economy import EconomyParams, WorkRules

        super().__init__()
        self.chain.rules = WorkRules(EconomyParams.from_genesis(TEST_GENESIS.params), models=TEST_GENESIS.models)
        self.jobs: list[bytes] = []

    def make_payload(self, kind, label, offender, conflicting):
        from chain.payloads import Attestation, InferenceResult

        if self.jobs and kind in ("inference_result", "attestation"):
            job_id = self.jobs[label % len(self.jobs)]
            if kind == "inference_result":
                return InferenceResult(job_id, [5, 6, 7]), "claim", None
            return Attestation(job_id, 1_000_000 - 10_000 * label), None, None
        return super().make_payload(kind, label, offender, conflicting)

    @precondition(lambda self: self.pending)
    @rule()
    def seal_block(self):
        from chain.payloads import compute_work_id

        state = self.chain.state()
        before = dict(state.iter_accounts())
        recognition_before = {a: ledger.get_recognition(state, a) for a in ACCOUNTS}
        built = self.chain.build([c.raw for c in self.pending])
        outcome = execute_block(
            self.chain.state(), self.chain.head, built.block, TEST_GENESIS, self.chain.rules
        )
        assert (
            outcome.state_root == built.block.header.state_root
            and outcome.receipts == built.receipts
        )
        self.chain.advance(built)
        self.pending = []
        self.next_nonce = {}

        allowed: dict[bytes, int] = {}
        slashed = set()
        for tx, receipt in zip(built.transactions, built.receipts):
            allowed[tx.sender] = allowed.get(tx.sender, 0) + tx.fee + tx.value
            if tx.kind == "inference_request" and receipt.succeeded:
                self.jobs.append(compute_work_id(tx.sender, tx.nonce))
            if tx.kind == "evidence" and receipt.succeeded:
                slashed.add(rlp.decode(rlp.decode(tx.data)[0])[4])  # Vote.validator
        state = self.chain.state()
        for account, balance in state.iter_accounts():
            if account == POOL_ADDRESS or account in slashed:
                continue
            assert balance >= before.get(account, 0) - allowed.get(account, 0)
        for account in ACCOUNTS:
            self.nonce[account] = state.get_nonce(account)
            if account not in slashed:
                assert ledger.get_recognition(state, account) >= recognition_before[account]
        self.balance = {a: b for a, b in state.iter_accounts() if a != POOL_ADDRESS}
        self.pool = ledger.get_pool_balance(state)

    @initialize()
    def register_everyone(self):
        """Every account serves the model, so requests get routed from the first block on."""
        for index in range(len(KEYS)):
            self.submit_one(index, "register_worker", "valid", 0, 0, 0, 0, False, 0)
        self.seal_block()
        # One job done start to finish, so every run has the economy paying out before the random traffic.
        self.submit_one(len(KEYS) - 1, "inference_request", "valid", 0, 0, 0, 0, False, 0)
        self.seal_block()
        self.do_the_work(0, 1_000_000)
        assert self.chain.head.recognition > 0 or any(h.recognition for h in self.chain.headers)

    @precondition(lambda self: self.jobs)
    @rule(tip=st.sampled_from(TIPS), score=st.sampled_from([1_000_000, 990_000, 950_000, 300_000]))
    def do_the_work(self, tip, score):
        """Honest nodes at work for three blocks: assigned workers answer, committee members attest."""
        for _ in range(
            3
        ):  # result -> audit decision -> attestations: each needs the block before it
            self.submit_open_work(tip, score)
            self.seal_block()

    def submit_open_work(self, tip, score):
        from chain.payloads import Attestation, InferenceResult
        from economy import JobStatus, get_job

        state = self.chain.state()
        for job_id in self.jobs:
            job = get_job(state, job_id)
            if job.status == JobStatus.ASSIGNED:
                work = [
                    (
                        job.worker,
                        "inference_result",
                        InferenceResult(job_id, list(range(1, job.max_tokens + 1))),
                    )
                ]
            elif job.status == JobStatus.ATTESTING:
                work = [
                    (seat.address, "attestation", Attestation(job_id, score))
                    for seat in job.committee
                ]
            else:
                continue
            for address, kind, payload in work:
                key = KEYS[ACCOUNTS.index(address)]
                nonce = self.next_nonce.get(address, self.nonce.get(address, 0))
                data = rlp.encode(payload)
                raw = self.sign(
                    key, to=ADDRESS_BY_KIND[kind], nonce=nonce, value=0, data=data, tip=tip
                )
                self.pending.append(Candidate(raw, address, kind, nonce, 0, tip, data, True))
                self.next_nonce[address] = nonce + 1

    def check_against_reference(self) -> None:
        """Nothing to compare outside seal_block: the economy's payouts are not modelled."""


EconomyLedgerMachine.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEconomyLedgerMachine = EconomyLedgerMachine.TestCase
