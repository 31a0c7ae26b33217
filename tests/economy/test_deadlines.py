"""Deadlines that follow the work, and the bounded waiting queue (issue 11, point 3), at the rules level.

Blocks here are `step_ms` apart (block timestamps are the economy's only clock).
"""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from chain.exceptions import WorkRejected
from chain.payloads import InferenceResult, compute_work_id
from chain.transition import OFFERING_ADDRESS
from economy import (
    EconomyParams, JobStatus, NetworkBusy, compute_job_cost, compute_result_deadline_ms, get_job, get_standing,
    get_waiting_job_count,
)
from tests.economy.test_economy import (
    REQUESTER, WORKERS, Harness, genesis, make_rules, never_audit, register, request,
)

PPM = 1_000_000
LONG = 512  # max_tokens of the burst's jobs


class ClockedHarness(Harness):
    """The economy tests' harness with block timestamps `step_ms` apart (changeable between blocks)."""

    def __init__(self, *args, step_ms: int = 1_000, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.step_ms = step_ms
        self.now_ms = 1_000

    @property
    def block(self):
        return super().block._replace(timestamp_ms=self.now_ms)

    def end_block(self) -> int:
        recognised = super().end_block()
        self.now_ms += self.step_ms
        return recognised


@pytest.fixture
def make_clocked(tmp_path):
    from economy import WorkRules

    made = []

    def make(params: EconomyParams = EconomyParams(), step_ms: int = 1_000) -> ClockedHarness:
        h = ClockedHarness(tmp_path / f"db{len(made)}", make_rules(params, never_audit()), genesis(), step_ms=step_ms)
        made.append(h)
        return h

    return make


def offer(h: Harness, job_id: bytes, amount: int) -> None:
    """What an `offering` tx with this job id leaves in state (chain.transition.apply_offering_payload)."""
    h.state.set_storage(OFFERING_ADDRESS, job_id, amount.to_bytes(32, "big"))


def next_job_id(h: Harness) -> bytes:
    return compute_work_id(REQUESTER, h.nonces[REQUESTER])


def send_result(h: Harness, worker: bytes, job_id: bytes, tokens: int = 5) -> None:
    h.send(worker, "inference_result", InferenceResult(job_id=job_id, output_tokens=list(range(tokens))))


def run_until(h: Harness, predicate, limit: int = 500) -> int:
    for blocks in range(limit):
        if predicate():
            return blocks
        h.end_block()
    raise AssertionError(f"not reached within {limit} blocks")


# --- the formula ---------------------------------------------------------------------------------------------


def test_deadline_is_the_workers_queue_at_its_declared_speed_with_margin_and_grace():
    p = EconomyParams()
    cost = compute_job_cost(LONG, p)  # 18 tokens/s: 540 tokens at the 30 s target
    # 540 tokens at 80 tokens/s = 6.75 s, x 300% = 20.25 s, + 10 s grace.
    assert compute_result_deadline_ms(1_000, cost, 80, p) == 1_000 + 10_000 + 20_250
    # A job queued behind another waits for both.
    assert compute_result_deadline_ms(1_000, 2 * cost, 80, p) == 1_000 + 10_000 + 40_500
    # Twice the speed, half the allowance; rounding is up, so the worker never loses the last ms.
    assert compute_result_deadline_ms(0, 1, 7, p) == 10_000 + -(-3 * 30 * 1000 // 7)


@given(load=st.integers(1, 10_000), capacity=st.integers(1, 10**6), at=st.integers(0, 2**40))
def test_a_worker_at_its_declared_speed_always_makes_its_deadline(load, capacity, at):
    p = EconomyParams()
    deadline = compute_result_deadline_ms(at, load, capacity, p)
    exact_ms = load * p.job_target_seconds * 1000 / capacity  # its whole queue at the declared speed
    assert deadline - at >= p.result_deadline_grace_ms + exact_ms * p.result_deadline_margin_percent / 100


def test_assignment_records_the_deadline_of_the_workers_queue(make_clocked):
    h = make_clocked()
    register(h, WORKERS[0], capacity=100)  # 70 schedulable: three 18-token/s jobs fit
    h.end_block()
    first, second = request(h, LONG), request(h, LONG)
    p = h.rules.params
    for job_id, queued in ((first, 18), (second, 36)):
        job = get_job(h.state, job_id)
        assert job.status == JobStatus.ASSIGNED
        assert job.deadline_ms == compute_result_deadline_ms(h.now_ms, queued, 100, p)
        assert job.deadline_block == h.number + p.result_deadline_blocks
    assert get_job(h.state, second).deadline_ms > get_job(h.state, first).deadline_ms


# --- lateness is the worker's own ------------------------------------------------------------------------------


def test_a_slow_worker_keeps_its_reliability_when_it_answers_within_its_own_deadline(make_clocked):
    """The old rule (20 blocks) would have expired a 512-token job on a 30 tokens/s worker."""
    h = make_clocked()
    register(h, WORKERS[0], capacity=30)
    h.end_block()
    job_id = request(h, LONG)
    job = get_job(h.state, job_id)
    assert job.deadline_ms - h.now_ms == 10_000 + 3 * 540 * 1000 // 30  # 64 s
    h.run_blocks(60)  # 60 s, three times the old 20-block deadline
    assert get_job(h.state, job_id).status == JobStatus.ASSIGNED
    send_result(h, WORKERS[0], job_id)
    h.run_blocks(2)
    standing = get_standing(h.state, WORKERS[0])
    assert get_job(h.state, job_id).status == JobStatus.ACCEPTED
    assert standing.reliability_ppm == PPM and standing.jobs_late == 0


def test_one_proposers_clock_cannot_make_a_worker_late(make_clocked):
    """A block stamped far ahead is past the time deadline, but not the minimum of result_deadline_blocks."""
    h = make_clocked()
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h, LONG)
    h.step_ms = 10**9
    h.end_block()
    assert get_job(h.state, job_id).status == JobStatus.ASSIGNED
    send_result(h, WORKERS[0], job_id)  # still in time: the block minimum has not passed
    h.run_blocks(2)
    assert get_standing(h.state, WORKERS[0]).reliability_ppm == PPM


def test_a_late_worker_pays_once_and_its_replacement_is_judged_by_its_own_deadline(make_clocked):
    h = make_clocked()
    register(h, WORKERS[0], capacity=100)
    register(h, WORKERS[1], capacity=30)
    h.end_block()
    job_id = request(h, LONG)
    first = get_job(h.state, job_id)
    late = first.worker
    other = WORKERS[1] if late == WORKERS[0] else WORKERS[0]
    run_until(h, lambda: get_job(h.state, job_id).worker == other)
    reassigned = get_job(h.state, job_id)
    assert reassigned.attempts == 2 and reassigned.excluded == (late,)
    other_capacity = 30 if other == WORKERS[1] else 100
    # Its deadline was set when it got the job, from its own queue and speed.
    assert reassigned.deadline_ms == compute_result_deadline_ms(h.now_ms - h.step_ms, 18, other_capacity,
                                                                h.rules.params)
    lowered = get_standing(h.state, late)
    assert lowered.jobs_late == 1 and lowered.reliability_ppm < PPM and lowered.load == 0

    with pytest.raises(WorkRejected, match="missed its deadline and the job was reassigned"):
        send_result(h, late, job_id)
    assert get_standing(h.state, late) == lowered  # the refused result cost nothing more

    h.run_blocks(25)  # the replacement takes its time, within its own deadline
    send_result(h, other, job_id)
    h.run_blocks(2)
    assert get_job(h.state, job_id).status == JobStatus.ACCEPTED
    assert get_standing(h.state, other).reliability_ppm == PPM and get_standing(h.state, other).jobs_late == 0


def test_a_result_after_the_job_expired_is_refused_with_the_reason(make_clocked):
    h = make_clocked(EconomyParams(max_assignment_attempts=1))
    register(h, WORKERS[0])
    h.end_block()
    job_id = request(h, LONG)
    run_until(h, lambda: get_job(h.state, job_id).status == JobStatus.EXPIRED)
    before = get_standing(h.state, WORKERS[0])
    assert before.jobs_late == 1
    with pytest.raises(WorkRejected, match="missed its deadline and the job expired"):
        send_result(h, WORKERS[0], job_id)
    assert get_standing(h.state, WORKERS[0]) == before


def test_waiting_jobs_expire_without_touching_anyones_reliability(make_clocked):
    """A burst beyond the free capacity: the served jobs are answered, the rest wait and expire."""
    h = make_clocked()
    for worker in WORKERS[:2]:
        register(h, worker, capacity=60)  # 42 schedulable: two 512-token jobs each
    h.end_block()
    jobs = [request(h, LONG) for _ in range(40)]
    assigned = [j for j in jobs if get_job(h.state, j).status == JobStatus.ASSIGNED]
    assert len(assigned) == 4 and get_waiting_job_count(h.state) == 36
    h.run_blocks(15)
    for job_id in assigned:
        send_result(h, get_job(h.state, job_id).worker, job_id)
    h.end_block()
    # Freed capacity goes to waiting jobs; answer those too, each within its deadline.
    while any(get_job(h.state, j).status in (JobStatus.WAITING, JobStatus.ASSIGNED) for j in jobs):
        for job_id in jobs:
            job = get_job(h.state, job_id)
            if job.status == JobStatus.ASSIGNED and h.number >= job.deadline_block - 10:
                send_result(h, job.worker, job_id)
        h.end_block()
    statuses = [get_job(h.state, j).status for j in jobs]
    assert JobStatus.EXPIRED in statuses and JobStatus.ACCEPTED in statuses
    assert get_waiting_job_count(h.state) == 0
    for worker in WORKERS[:2]:
        standing = get_standing(h.state, worker)
        assert standing.reliability_ppm == PPM and standing.jobs_late == 0 and standing.load == 0


# --- the waiting queue ---------------------------------------------------------------------------------------


def test_requests_beyond_the_waiting_bound_are_refused_with_a_clear_error(make_clocked):
    h = make_clocked(EconomyParams(max_waiting_jobs=3))
    waiting = [request(h, LONG) for _ in range(3)]  # nobody registered: every job waits
    assert get_waiting_job_count(h.state) == 3
    with pytest.raises(NetworkBusy, match="network busy: 3 jobs waiting for capacity; add an offering to prioritise"):
        request(h, LONG)
    h.end_block()
    register(h, WORKERS[0], capacity=30)  # room for one
    h.end_block()
    assert get_waiting_job_count(h.state) == 2
    assert sum(get_job(h.state, j).status == JobStatus.ASSIGNED for j in waiting) == 1
    request(h, LONG)  # room again
    assert get_waiting_job_count(h.state) == 3


def test_an_offering_buys_a_place_in_a_full_queue_and_is_served_first(make_clocked):
    h = make_clocked(EconomyParams(max_waiting_jobs=3))
    waiting = [request(h, LONG) for _ in range(3)]
    offer(h, waiting[1], 5)
    rich = next_job_id(h)
    offer(h, rich, 10)
    assert request(h, LONG) == rich  # admitted: it out-offers the job that would be served last ...
    assert get_job(h.state, waiting[2]).status == JobStatus.EXPIRED  # ... which expires unserved
    assert get_waiting_job_count(h.state) == 3
    poor = next_job_id(h)
    offer(h, poor, 5)  # more than the job served last now (waiting[0], nothing offered): admitted
    request(h, LONG)
    assert get_job(h.state, waiting[0]).status == JobStatus.EXPIRED
    with pytest.raises(NetworkBusy):
        request(h, LONG)  # nothing offered: refused
    h.end_block()
    register(h, WORKERS[0], capacity=30)  # room for one job at a time
    h.end_block()
    assert get_job(h.state, rich).status == JobStatus.ASSIGNED  # the largest offering first
    assert get_job(h.state, waiting[1]).status == JobStatus.WAITING


def test_waiting_count_matches_the_records_through_a_busy_run(make_clocked):
    h = make_clocked(EconomyParams(max_waiting_jobs=8), step_ms=700)
    register(h, WORKERS[0], capacity=60)
    h.end_block()
    jobs = []
    for block in range(80):
        for _ in range(3):
            try:
                jobs.append(request(h, LONG if block % 2 else 64))
            except NetworkBusy:
                pass
        for job_id in jobs:
            job = get_job(h.state, job_id)
            if job.status == JobStatus.ASSIGNED and block % 5 == 0:
                send_result(h, job.worker, job_id)
        h.end_block()
        assert get_waiting_job_count(h.state) == sum(get_job(h.state, j).status == JobStatus.WAITING for j in jobs)
        assert get_waiting_job_count(h.state) <= 8
