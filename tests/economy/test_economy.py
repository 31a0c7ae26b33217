"""The recognition economy (consensus/economy.py) over the real State on LevelDB and the real ledger.

Each test drives `WorkRules` the way the state transition does: one
`apply_work` per transaction (reverted to a snapshot when it is rejected), then
`finalize_block`, and checks the ledger invariant after every block.
"""
from __future__ import annotations

import itertools

import pytest
import rlp
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings, strategies as st

from chain import ledger
from chain.ledger import get_recognition
from chain.abc import BlockContext, TxContext
from chain.db import LevelDB
from chain.exceptions import WorkRejected
from chain.payloads import (
    Annotation, AnnotationTask, Attestation, ChatMessage, InferenceRequest, InferenceResult, RegisterWorker,
    compute_work_id,
)
from chain.state import State
from economy import (
    POOL_ADDRESS, EconomyParams, JobStatus, TaskStatus, WorkRules, compute_block_budget, compute_block_payout,
    compute_weighted_median, get_job, get_registered_workers, get_routing_snapshot, get_standing, get_task,
    get_worker_record,
)
from economy.router import compute_routing_snapshot_hash, is_assignment_valid
from economy.accuracy import compute_recognised_label
from economy.audit import AuditPolicy
from economy.store import HELD_MODELS_SLOT, set_list
from genesis import DEFAULT_MODEL_CARD, ModelCard

MUAGIC = 10**18
PPM = 1_000_000
MODEL = keccak(b"test-model")
# The harness chain knows the stand-in model as a genesis would (economy.models).
MODEL_CARD = ModelCard(MODEL, b"test-model", keccak(b"test-template"), keccak(b"test-vocab"), 8192)
VALIDATORS = [bytes([0xA0 + i]) * 20 for i in range(4)]
WORKERS = [bytes([0xB0 + i]) * 20 for i in range(3)]
REQUESTER = b"\xc0" * 20
ANNOTATORS = [bytes([0xD0 + i]) * 20 for i in range(4)]


def make_rules(params: EconomyParams = EconomyParams(), policy: AuditPolicy | None = None) -> WorkRules:
    return WorkRules(params, policy, models=[MODEL_CARD, DEFAULT_MODEL_CARD])


def always_audit(committee_size: int = 3) -> AuditPolicy:
    return AuditPolicy(base_rate_ppm=PPM, committee_size=committee_size, escalation_committee_size=3)


def never_audit() -> AuditPolicy:
    return AuditPolicy(base_rate_ppm=0, probation_jobs=0, caught_window_jobs=0, failure_rate_step_ppm=0)


class Harness:
    """A tiny chain: blocks of work transactions over one State, with the invariant checked per block."""

    def __init__(self, path, rules: WorkRules, recognition: dict[bytes, int]) -> None:
        self.db = LevelDB(path)
        self.state = State(self.db)
        self.rules = rules
        self.nonces = dict.fromkeys(itertools.chain(VALIDATORS, WORKERS, [REQUESTER], ANNOTATORS), 0)
        for address, amount in recognition.items():
            ledger.apply_genesis_allocation(self.state, address, amount, amount)
            # The genesis validators hold the model (as their declare_models would say): they can audit it.
            set_list(self.state, address, HELD_MODELS_SLOT, [MODEL, DEFAULT_MODEL_CARD.sha256])
        self.genesis_supply = sum(recognition.values())
        self.parent_hash = self.state.make_state_root()
        self.number = 1
        self.block_txs = 0
        self.recognition_log: list[int] = []
        self.redeclared: set[bytes] = set()

    @property
    def block(self) -> BlockContext:
        return BlockContext(number=self.number, timestamp_ms=1_000 * self.number, proposer=VALIDATORS[0],
                            parent_hash=self.parent_hash)

    def send(self, sender: bytes, kind: str, payload) -> bytes:
        """Apply one work tx; returns its work id (keccak(sender, nonce)); raises WorkRejected after reverting."""
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        if kind == "register_worker" and get_worker_record(self.state, sender) is not None:
            self.redeclared.add(sender)
        payload.validate()
        tx = TxContext(sender=sender, nonce=nonce, tx_hash=keccak(rlp.encode([sender, nonce, b"tx"])),
                       index=self.block_txs)
        self.block_txs += 1
        token = self.state.snapshot()
        try:
            self.rules.apply_work(self.state, self.block, tx, kind, payload)
        except WorkRejected:
            self.state.revert(token)
            raise
        return compute_work_id(sender, nonce)

    def end_block(self) -> int:
        before = self.balances()
        recognition_before = {a: get_recognition(self.state, a) for a in before}
        recognised = self.rules.finalize_block(self.state, self.block)
        after = self.balances()
        assert_supply_invariant(self.state, self.genesis_supply)
        gained = 0
        for address, balance in before.items():
            assert after.get(address, 0) >= balance or address == POOL_ADDRESS, "no balance ever decreases"
            if address != POOL_ADDRESS:
                gained += get_recognition(self.state, address) - recognition_before[address]
        gained += sum(get_recognition(self.state, a) for a in after if a not in before and a != POOL_ADDRESS)
        assert recognised == gained, "the block's recognition is the recognition it credited"
        for worker in get_registered_workers(self.state):  # nothing is ever scheduled into sacred space
            if worker in self.redeclared:
                continue  # a worker that shrank its declared capacity may sit above 70% until its jobs end
            record, standing = get_worker_record(self.state, worker), get_standing(self.state, worker)
            assert 10 * standing.load <= 7 * record.capacity
        self.recognition_log.append(recognised)
        self.parent_hash = self.state.make_state_root()
        self.number += 1
        self.block_txs = 0
        return recognised

    def run_blocks(self, n: int) -> None:
        for _ in range(n):
            self.end_block()

    def balances(self) -> dict[bytes, int]:
        return dict(self.state.iter_accounts())

    def balance(self, address: bytes) -> int:
        return self.state.get_balance(address)


def compute_share(pool_before: int, params: EconomyParams, units: int, total_units: int) -> int:
    """A claim's reward: its pro rata part of what the block's work earns of issuance plus drip."""
    payout = compute_block_payout(total_units, compute_block_budget(pool_before, params), params)
    return units * payout // total_units


def assert_supply_invariant(state: State, genesis_supply: int) -> None:
    assert sum(balance for _, balance in state.iter_accounts()) == genesis_supply + ledger.get_issued(state)


def genesis() -> dict[bytes, int]:
    return {v: 10 * MUAGIC for v in VALIDATORS}


@pytest.fixture
def make_harness(tmp_path):
    counter = itertools.count()

    def make(policy=None, params=EconomyParams(), recognition=None) -> Harness:
        rules = make_rules(params, policy if policy is not None else always_audit())
        return Harness(tmp_path / f"db{next(counter)}", rules, genesis() if recognition is None else recognition)

    return make


def request(h: Harness, max_tokens: int = 30) -> bytes:
    return h.send(REQUESTER, "inference_request", InferenceRequest(
        messages=[ChatMessage(role=b"user", content=b"hello")], model_sha256=MODEL, max_tokens=max_tokens))


def register(h: Harness, worker: bytes, capacity: int = 100) -> None:
    h.send(worker, "register_worker", RegisterWorker(model_sha256=MODEL, capacity=capacity))


def answer(h: Harness, job_id: bytes, tokens: int = 20, decide: bool = True) -> None:
    """The assigned worker answers; with `decide`, run the block that holds it and the one that decides its audit."""
    job = get_job(h.state, job_id)
    h.send(job.worker, "inference_result", InferenceResult(job_id=job_id, output_tokens=list(range(tokens))))
    if decide:
        h.run_blocks(2)


def attest_all(h: Harness, job_id: bytes, scores: list[int]) -> list[bytes]:
    job = get_job(h.state, job_id)
    members = [seat.address for seat in job.committee]
    for member, score in zip(members, scores):
        if get_job(h.state, job_id).status != JobStatus.ATTESTING:
            break  # the quorum is already in
        h.send(member, "attestation", Attestation(job_id=job_id, score_ppm=score))
    return members


# --- inference jobs -----------------------------------------------------------------------------------------


def test_honest_worker_and_attesters_are_paid(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    assert get_job(h.state, job_id).worker == WORKERS[0]
    answer(h, job_id, tokens=20)
    job = get_job(h.state, job_id)
    assert job.status == JobStatus.ATTESTING and len(job.committee) == 3
    assert WORKERS[0] not in {seat.address for seat in job.committee}
    members = attest_all(h, job_id, [990_000, 985_000, 1_000_000])
    pool_before = h.balance(POOL_ADDRESS)
    recognised = h.end_block()

    p = h.rules.params
    job = get_job(h.state, job_id)
    assert job.status == JobStatus.ACCEPTED and job.score_ppm == 990_000
    worker_units, attester_units = 20 * 990_000, 20 * p.attester_share_ppm
    total_units = worker_units + 3 * attester_units
    assert h.balance(WORKERS[0]) == compute_share(pool_before, p, worker_units, total_units)
    assert get_recognition(h.state, WORKERS[0]) == h.balance(WORKERS[0])
    for member in members:
        assert h.balance(member) == 10 * MUAGIC + compute_share(pool_before, p, attester_units, total_units)
    assert recognised == sum(compute_share(pool_before, p, units, total_units)
                             for units in (worker_units, *3 * [attester_units]))
    assert get_standing(h.state, WORKERS[0]).quality_ppm > p.initial_quality_ppm


def test_outlier_attester_earns_nothing(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    answer(h, job_id)
    members = attest_all(h, job_id, [990_000, 200_000, 980_000])
    h.end_block()
    assert get_job(h.state, job_id).score_ppm == 980_000
    assert h.balance(members[1]) == 10 * MUAGIC
    assert h.balance(members[0]) > 10 * MUAGIC and h.balance(members[2]) > 10 * MUAGIC


def test_cheating_worker_caught_by_audit_earns_nothing_and_loses_quality(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    quality_before = get_standing(h.state, WORKERS[0]).quality_ppm
    job_id = request(h)
    answer(h, job_id, tokens=30)  # random tokens: the committee's teacher-forced scores are near zero
    members = attest_all(h, job_id, [0, 10_000, 5_000])
    h.run_blocks(3)
    job = get_job(h.state, job_id)
    assert job.status == JobStatus.FAILED_AUDIT
    assert h.balance(WORKERS[0]) == 0 and get_recognition(h.state, WORKERS[0]) == 0
    standing = get_standing(h.state, WORKERS[0])
    assert standing.quality_ppm < quality_before
    assert standing.jobs_failed_audit == 1 and standing.jobs_since_caught == 0
    # The members that caught it did useful work: they are paid.
    assert all(h.balance(m) > 10 * MUAGIC for m in members)


def test_repeated_cheating_drops_the_worker_below_the_floor_and_out_of_routing(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    for _ in range(8):
        job_id = request(h)
        if get_job(h.state, job_id).status != JobStatus.ASSIGNED:
            break
        answer(h, job_id)
        attest_all(h, job_id, [0, 0, 0])
        h.end_block()
    assert get_standing(h.state, WORKERS[0]).quality_ppm < h.rules.params.quality_floor_ppm
    job_id = request(h)
    assert get_job(h.state, job_id).status == JobStatus.WAITING
    assert h.balance(WORKERS[0]) == 0


def test_no_reward_without_a_committee_quorum(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    answer(h, job_id)
    members = attest_all(h, job_id, [990_000, 990_000])  # 2 of 3 equal weights is not more than 2/3
    before = h.balances()
    h.run_blocks(h.rules.params.attestation_window_blocks + 1)
    assert get_job(h.state, job_id).status == JobStatus.UNVERIFIED
    assert h.balance(WORKERS[0]) == 0
    for member in members:
        assert h.balance(member) == before[member]
    with pytest.raises(WorkRejected):  # a late member cannot revive it
        h.send(get_job(h.state, job_id).committee[2].address, "attestation",
               Attestation(job_id=job_id, score_ppm=990_000))


def test_only_the_assigned_worker_and_committee_members_count(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    with pytest.raises(WorkRejected):
        h.send(WORKERS[1], "inference_result", InferenceResult(job_id=job_id, output_tokens=[1, 2, 3]))
    with pytest.raises(WorkRejected):  # more tokens than asked for
        h.send(WORKERS[0], "inference_result", InferenceResult(job_id=job_id, output_tokens=list(range(31))))
    answer(h, job_id)
    with pytest.raises(WorkRejected):  # a second answer
        answer(h, job_id)
    outsider = next(v for v in VALIDATORS if v not in {s.address for s in get_job(h.state, job_id).committee})
    with pytest.raises(WorkRejected):
        h.send(outsider, "attestation", Attestation(job_id=job_id, score_ppm=1_000_000))
    member = get_job(h.state, job_id).committee[0].address
    h.send(member, "attestation", Attestation(job_id=job_id, score_ppm=1_000_000))
    with pytest.raises(WorkRejected):
        h.send(member, "attestation", Attestation(job_id=job_id, score_ppm=1_000_000))
    with pytest.raises(WorkRejected):
        h.send(REQUESTER, "attestation", Attestation(job_id=keccak(b"nope"), score_ppm=1))


def test_unaudited_results_are_paid_at_the_workers_quality_average(make_harness):
    h = make_harness(policy=never_audit())
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    answer(h, job_id, tokens=10, decide=False)
    h.end_block()  # the result lands; the next block accepts it on standing and pays it
    pool_before = h.balance(POOL_ADDRESS)
    h.end_block()
    p = h.rules.params
    assert get_job(h.state, job_id).status == JobStatus.ACCEPTED
    units = 10 * p.initial_quality_ppm
    assert h.balance(WORKERS[0]) == compute_share(pool_before, p, units, units)


def test_late_result_lowers_reliability_and_the_job_is_reassigned(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    register(h, WORKERS[1])
    h.end_block()
    job_id = request(h)
    first = get_job(h.state, job_id).worker
    other = WORKERS[1] if first == WORKERS[0] else WORKERS[0]
    h.run_blocks(h.rules.params.result_deadline_blocks + 1)  # the deadline block itself is still in time
    job = get_job(h.state, job_id)
    assert job.status == JobStatus.ASSIGNED and job.worker == other and job.attempts == 2
    late = get_standing(h.state, first)
    assert late.reliability_ppm < h.rules.params.initial_reliability_ppm and late.jobs_late == 1
    assert late.load == 0
    with pytest.raises(WorkRejected):
        h.send(first, "inference_result", InferenceResult(job_id=job_id, output_tokens=[1]))
    answer(h, job_id)
    attest_all(h, job_id, [1_000_000] * 3)
    h.end_block()
    assert h.balance(other) > 0 and h.balance(first) == 0


def test_a_job_nobody_answers_expires_unpaid(make_harness):
    h = make_harness()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    h.run_blocks(h.rules.params.result_deadline_blocks * h.rules.params.max_assignment_attempts + 1)
    assert get_job(h.state, job_id).status == JobStatus.EXPIRED
    assert h.balance(WORKERS[0]) == 0


def test_jobs_wait_when_nobody_is_eligible_and_the_cap_is_kept(make_harness):
    h = make_harness()
    job_id = request(h)
    assert get_job(h.state, job_id).status == JobStatus.WAITING
    h.end_block()
    register(h, WORKERS[0], capacity=10)  # 7 tokens/s schedulable
    h.end_block()  # the waiting job is retried at the end of the block
    assert get_job(h.state, job_id).worker == WORKERS[0]  # cost ceil(30/30) = 1
    snapshot = get_routing_snapshot(h.state, h.rules.params, h.number, excluded=[REQUESTER])
    more = [request(h, max_tokens=60) for _ in range(4)]  # cost 2 each
    recorded = get_job(h.state, more[0])
    assert recorded.snapshot_hash == compute_routing_snapshot_hash(snapshot)
    assert is_assignment_valid(more[0], MODEL, snapshot, recorded.worker, cost=recorded.cost)
    statuses = [get_job(h.state, j).status for j in more]
    assert statuses == [JobStatus.ASSIGNED] * 3 + [JobStatus.WAITING]
    assert get_standing(h.state, WORKERS[0]).load == 7
    h.end_block()
    assert get_job(h.state, more[3]).status == JobStatus.WAITING
    answer(h, more[0])  # frees 2 tokens/s
    h.end_block()
    assert get_job(h.state, more[3]).status == JobStatus.ASSIGNED


def test_recognition_draws_the_committee(make_harness):
    recognition = {VALIDATORS[0]: 1_000 * MUAGIC, VALIDATORS[1]: 1 * MUAGIC, VALIDATORS[2]: 1 * MUAGIC,
                   VALIDATORS[3]: 10**15}  # below the validator threshold: never drawn
    h = make_harness(policy=always_audit(committee_size=1), recognition=recognition)
    register(h, WORKERS[0], capacity=10**6)
    h.end_block()
    drawn = []
    for _ in range(12):
        job_id = request(h)
        answer(h, job_id)
        drawn.append(get_job(h.state, job_id).committee[0].address)
    assert VALIDATORS[3] not in drawn
    assert drawn.count(VALIDATORS[0]) >= 10


# --- annotation ---------------------------------------------------------------------------------------------


# Drawn annotators, gold tasks and accuracy weight: tests/economy/test_annotations.py and test_annotation_chain.py.


# --- rewards ------------------------------------------------------------------------------------------------


def test_claims_beyond_the_budget_are_scaled_and_the_rest_stays_in_the_pool(make_harness):
    params = EconomyParams(issuance_per_block=10**15, pool_drip_ppm=0)
    h = make_harness(policy=never_audit(), params=params)
    register(h, WORKERS[0])
    register(h, WORKERS[1])
    h.end_block()
    jobs = [request(h), request(h)]
    for job_id in jobs:
        answer(h, job_id, tokens=30, decide=False)
    h.end_block()  # the results land; the next block accepts them on standing
    pool_before = h.balance(POOL_ADDRESS)
    recognised = h.end_block()
    assert recognised <= compute_block_budget(pool_before, params)
    assert h.balance(WORKERS[0]) == h.balance(WORKERS[1]) == 10**15 // 2
    empty = h.end_block()
    assert empty == 0 and h.balance(POOL_ADDRESS) > 0  # issuance without work stays pooled


def test_weighted_median_and_majority_rules():
    assert compute_weighted_median([(10, 1), (20, 1), (30, 1)]) == 20
    assert compute_weighted_median([(10, 5), (20, 1), (30, 1)]) == 10
    assert compute_weighted_median([(0, 1), (1_000_000, 1)]) == 0  # the lower median: doubt pays nothing
    assert compute_recognised_label([(0, 2), (1, 1), (1, 1)], 4) is None  # exactly half is not a majority
    assert compute_recognised_label([(0, 3), (1, 1), (1, 1)], 5) == 0


# --- the ledger invariant under arbitrary traffic -----------------------------------------------------------

action_st = st.one_of(
    st.tuples(st.just("register"), st.integers(0, 2), st.integers(1, 60)),
    st.tuples(st.just("request"), st.integers(1, 120)),
    st.tuples(st.just("answer"), st.integers(0, 9), st.booleans(), st.integers(0, 2), st.integers(0, 120)),
    st.tuples(st.just("attest"), st.integers(0, 9), st.booleans(), st.integers(0, 3),
              st.one_of(st.integers(0, 1_000_000), st.integers(950_000, 1_000_000))),
    st.tuples(st.just("task"), st.integers(1, 3)),
    st.tuples(st.just("annotate"), st.integers(0, 5), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("end_block"),),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 60), min_size=1, max_size=3), st.lists(action_st, min_size=5, max_size=80),
       st.booleans())
def test_supply_invariant_and_rewards_only_for_recognised_work(make_harness, capacities, actions, audit):
    h = make_harness(policy=always_audit() if audit else never_audit())
    jobs: list[bytes] = []
    tasks: list[bytes] = []
    workers = [("register", i, capacity) for i, capacity in enumerate(capacities)]
    for action in workers + actions + [("end_block",)] * 3:
        try:
            apply_action(h, action, jobs, tasks)
        except WorkRejected:
            pass
    assert_only_recognised_work_was_paid(h, jobs, tasks)


def assert_only_recognised_work_was_paid(h: Harness, jobs: list[bytes], tasks: list[bytes]) -> None:
    """Everyone holding more than genesis gave them earned it by work the rules recognised."""
    earners = set()
    tolerance = h.rules.params.attestation_tolerance_ppm
    for job_id in jobs:
        job = get_job(h.state, job_id)
        if job.status == JobStatus.ACCEPTED:
            earners.add(job.worker)
        if job.status in (JobStatus.ACCEPTED, JobStatus.FAILED_AUDIT):
            earners.update(s.address for s in job.attestations if abs(s.score_ppm - job.score_ppm) <= tolerance)
    for task_id in tasks:
        task = get_task(h.state, task_id)
        if task.status == TaskStatus.RECOGNISED:
            earners.update(a.address for a in task.annotations if a.label_index == task.label_index)
    start = genesis()
    for address, balance in h.balances().items():
        if address != POOL_ADDRESS and balance > start.get(address, 0):
            assert address in earners, f"{address.hex()} was paid without recognised work"
    for job_id in jobs:  # failed, unverified and expired work paid its worker nothing
        job = get_job(h.state, job_id)
        if job.status not in JobStatus.OPEN and job.status != JobStatus.ACCEPTED and job.worker:
            if not any(get_job(h.state, j).status == JobStatus.ACCEPTED and get_job(h.state, j).worker == job.worker
                       for j in jobs):
                assert h.balance(job.worker) == start.get(job.worker, 0)


def apply_action(h: Harness, action: tuple, jobs: list[bytes], tasks: list[bytes]) -> None:
    kind = action[0]
    if kind == "end_block":
        h.end_block()
    elif kind == "register":
        h.send(WORKERS[action[1]], "register_worker", RegisterWorker(model_sha256=MODEL, capacity=action[2]))
    elif kind == "request":
        jobs.append(request(h, max_tokens=action[1]))
    elif kind == "answer" and jobs:
        # Mostly the assigned worker, sometimes anyone: both must keep the invariants.
        job_id = jobs[action[1] % len(jobs)]
        _, _, by_assigned, other, tokens = action
        worker = get_job(h.state, job_id).worker if by_assigned else WORKERS[other]
        h.send(worker or WORKERS[other], "inference_result",
               InferenceResult(job_id=job_id, output_tokens=list(range(tokens))))
    elif kind == "attest" and jobs:
        job_id = jobs[action[1] % len(jobs)]
        _, _, by_member, index, score = action
        committee = get_job(h.state, job_id).committee
        attester = committee[index % len(committee)].address if by_member and committee else VALIDATORS[index]
        h.send(attester, "attestation", Attestation(job_id=job_id, score_ppm=score))
    elif kind == "task":
        tasks.append(h.send(REQUESTER, "annotation_task", AnnotationTask(content=b"c", labels=[b"a", b"b", b"c"],
                                                                          k=action[1])))
    elif kind == "annotate" and tasks:
        annotator = (VALIDATORS + ANNOTATORS)[action[2]]
        h.send(annotator, "annotation", Annotation(task_id=tasks[action[1] % len(tasks)], label_index=action[3]))


job_plan_st = st.fixed_dictionaries({
    "max_tokens": st.integers(1, 120),
    "behaviour": st.sampled_from(["honest", "honest", "cheat", "silent"]),
    "tokens": st.integers(0, 120),
    "scores": st.lists(st.one_of(st.integers(950_000, 1_000_000), st.integers(0, 1_000_000)), min_size=4, max_size=4),
    "attend": st.lists(st.booleans(), min_size=4, max_size=4),
    "blocks_after": st.integers(0, 3),
})
task_plan_st = st.fixed_dictionaries({
    "k": st.integers(1, 4),
    "labels": st.lists(st.integers(0, 2), min_size=4, max_size=4),
    "annotators": st.permutations(VALIDATORS + ANNOTATORS),
})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(1, 60), min_size=1, max_size=3), st.lists(job_plan_st, min_size=1, max_size=10),
       st.lists(task_plan_st, max_size=3), st.booleans())
def test_honest_cheating_and_silent_work_over_many_blocks(make_harness, capacities, job_plans, task_plans, audit):
    """Scripted lifecycles: the invariant holds per block and only recognised work is ever paid."""
    h = make_harness(policy=always_audit() if audit else never_audit())
    for i, capacity in enumerate(capacities):
        register(h, WORKERS[i], capacity)
    h.end_block()
    jobs, tasks = [], []
    for plan in task_plans:
        try:  # with no annotator measured on gold, a task is refused and annotations are not drawn
            task_id = h.send(REQUESTER, "annotation_task", AnnotationTask(content=b"c", labels=[b"a", b"b", b"c"],
                                                                         k=plan["k"]))
        except WorkRejected:
            continue
        tasks.append(task_id)
        for annotator, label in zip(plan["annotators"], plan["labels"][: plan["k"]]):
            try:
                h.send(annotator, "annotation", Annotation(task_id=task_id, label_index=label))
            except WorkRejected:
                pass
    for plan in job_plans:
        job_id = request(h, plan["max_tokens"])
        jobs.append(job_id)
        job = get_job(h.state, job_id)
        if job.status == JobStatus.ASSIGNED and plan["behaviour"] != "silent":
            answer(h, job_id, min(plan["tokens"], plan["max_tokens"]))
        job = get_job(h.state, job_id)
        for seat, attend, score in zip(job.committee, plan["attend"], plan["scores"]):
            if get_job(h.state, job_id).status != JobStatus.ATTESTING:
                break
            if attend:
                score = score if plan["behaviour"] == "honest" else score // 20
                h.send(seat.address, "attestation", Attestation(job_id=job_id, score_ppm=score))
        h.run_blocks(plan["blocks_after"])
    h.run_blocks(h.rules.params.result_deadline_blocks + 2)
    assert_only_recognised_work_was_paid(h, jobs, tasks)
    for job_id, plan in zip(jobs, job_plans):
        job = get_job(h.state, job_id)
        if plan["behaviour"] == "silent" and job.status == JobStatus.ACCEPTED:
            assert job.attempts > 1  # a silent worker's job is only ever paid to its replacement


def test_work_that_reaches_the_threshold_makes_an_account_a_committee_candidate(make_harness):
    h = make_harness(params=EconomyParams(validator_threshold=10**16))
    register(h, WORKERS[0])
    h.end_block()
    assert WORKERS[0] not in dict(h.rules.get_recognised_accounts(h.state))
    job_id = request(h)
    answer(h, job_id, tokens=20)
    attest_all(h, job_id, [1_000_000] * 3)
    h.end_block()
    assert get_recognition(h.state, WORKERS[0]) >= 10**16
    assert dict(h.rules.get_recognised_accounts(h.state))[WORKERS[0]] == get_recognition(h.state, WORKERS[0])


def test_an_audit_nobody_independent_can_do_leaves_the_work_unpaid(make_harness):
    h = make_harness(recognition={VALIDATORS[0]: 10 * MUAGIC})
    h.send(VALIDATORS[0], "register_worker", RegisterWorker(model_sha256=MODEL, capacity=100))
    h.end_block()
    job_id = request(h)
    assert get_job(h.state, job_id).worker == VALIDATORS[0]  # the only recognised account is the worker
    h.send(VALIDATORS[0], "inference_result", InferenceResult(job_id=job_id, output_tokens=[1, 2, 3]))
    h.run_blocks(2)
    assert get_job(h.state, job_id).status == JobStatus.UNVERIFIED
    assert h.balance(VALIDATORS[0]) == 10 * MUAGIC


def attest_rest(h: Harness, job_id: bytes, score: int) -> None:
    """Members who have not attested yet attest `score`, until the quorum closes the job."""
    for seat in get_job(h.state, job_id).committee:
        job = get_job(h.state, job_id)
        if job.status != JobStatus.ATTESTING:
            return
        if seat.address not in {a.address for a in job.attestations}:
            h.send(seat.address, "attestation", Attestation(job_id=job_id, score_ppm=score))


def test_one_auditor_can_pass_a_result_but_never_convict_alone(make_harness):
    h = make_harness(policy=always_audit(committee_size=1))
    register(h, WORKERS[0])
    h.end_block()
    honest = request(h)
    answer(h, honest)
    assert len(get_job(h.state, honest).committee) == 1
    attest_all(h, honest, [1_000_000])
    h.end_block()
    assert get_job(h.state, honest).status == JobStatus.ACCEPTED and h.balance(WORKERS[0]) > 0
    paid = h.balance(WORKERS[0])

    # A lying first auditor only escalates: two more members are seated and outvote it.
    framed = request(h)
    answer(h, framed)
    liar = attest_all(h, framed, [0])[0]
    job = get_job(h.state, framed)
    assert job.status == JobStatus.ATTESTING and job.escalated and len(job.committee) == 3
    liar_balance = h.balance(liar)
    attest_rest(h, framed, 1_000_000)
    h.end_block()
    assert get_job(h.state, framed).status == JobStatus.ACCEPTED
    assert h.balance(WORKERS[0]) > paid and h.balance(liar) == liar_balance  # the outlier earns nothing

    # A real cheat is convicted by the escalated committee.
    cheat = request(h)
    answer(h, cheat)
    attest_all(h, cheat, [10_000])
    attest_rest(h, cheat, 20_000)
    before = h.balance(WORKERS[0])
    h.end_block()
    assert get_job(h.state, cheat).status == JobStatus.FAILED_AUDIT
    assert h.balance(WORKERS[0]) == before
    assert get_standing(h.state, WORKERS[0]).jobs_failed_audit == 1


def test_the_audit_is_seeded_by_the_block_that_holds_the_result(make_harness):
    h = make_harness(policy=always_audit(committee_size=1))
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h)
    answer(h, job_id, decide=False)
    assert get_job(h.state, job_id).status == JobStatus.RESULTED
    h.end_block()  # the block holding the result: its hash does not exist yet
    assert get_job(h.state, job_id).status == JobStatus.RESULTED
    result_block_hash = h.parent_hash
    h.end_block()
    job = get_job(h.state, job_id)
    assert job.status == JobStatus.ATTESTING
    from economy.committee import compute_committee
    expected = compute_committee(h.rules.get_recognised_accounts(h.state), keccak(result_block_hash + job_id), 1)
    assert job.committee[0].address == expected[0].address
