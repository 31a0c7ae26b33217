"""The life of an inference job on chain: request, routing, result, audit, attestations, deadlines.

Each step is logged as an event of `MagicoinJobs` (`chain.events`): JobRequested,
JobAssigned (also on reassignment), JobResult, JobAttested, JobClosed (any final
status, with the score).
"""
from __future__ import annotations

from typing import Iterable

from chain.abc import BlockContext, StateAPI, TxContext
from chain.events import JOB_ASSIGNED, JOB_ATTESTED, JOB_CLOSED, JOB_REQUESTED, JOB_RESULT, emit_event
from chain.exceptions import WorkRejected
from chain.payloads import compute_work_id
from chain.transition import get_job_offering
from economy.audit import (
    WorkerHistory,
    apply_audit_outcome,
    compute_audit_decision,
    compute_escalation_committee_size,
)
from economy.committee import compute_committee
from economy.maths import (
    compute_job_cost,
    compute_output_hash,
    compute_running_average,
    compute_weighted_median,
    is_committee_decided,
    is_within_tolerance,
)
from economy.params import PPM, EconomyParams
from economy.records import (
    CommitteeSeat,
    JobRecord,
    JobStatus,
    Score,
    StandingRecord,
    compute_without,
    replace_record,
)
from economy.router import (
    compute_encoded_snapshot_hash,
    select_worker,
    validate_job,
)
from economy.routing import (
    get_routing_snapshot,
    validate_routing_floor,
)
from economy.store import (
    INFERENCE_REQUEST_ADDRESS,
    OPEN_JOBS_SLOT,
    STANDING_SLOT,
    get_job,
    get_open_jobs,
    get_standing,
    get_waiting_job_count,
    get_worker_record,
    set_list,
    set_waiting_job_count,
    write_record,
)
from primitives.hashing import keccak


class NetworkBusy(WorkRejected):
    """An inference request that would wait while `max_waiting_jobs` jobs already wait for capacity."""


def compute_busy_message(waiting: int) -> str:
    return f"network busy: {waiting} jobs waiting for capacity; add an offering to prioritise"


def validate_waiting_room(waiting: int, params: EconomyParams) -> None:
    """Raises NetworkBusy when `waiting` jobs already fill the waiting queue (the chain's and the front doors' rule)."""
    if waiting >= params.max_waiting_jobs:
        raise NetworkBusy(compute_busy_message(waiting), got=waiting, expected=f"< {params.max_waiting_jobs}")


def compute_result_deadline_ms(assigned_ms: int, queued_load: int, capacity: int, params: EconomyParams) -> int:
    """When a worker's result is due, in block-timestamp ms: its queue at its declared speed, with margin.

    `queued_load` is the worker's load including this job, in declared tokens/s
    (each job's `compute_job_cost`, ceil(max_tokens / job_target_seconds)), so
    load x job_target_seconds is (rounded up) the tokens of every job the worker
    holds: this one is answered after them (its limiter is first come, first
    served). At `capacity` tokens/s that takes load x target / capacity seconds;
    the deadline allows `result_deadline_margin_percent` of it (shared cores,
    prompt processing, audits on the same model) plus `result_deadline_grace_ms`
    (network, inclusion, block time). Integer and rounded up, so every node gets the same ms.
    """
    queued_tokens = queued_load * params.job_target_seconds
    work_ms = -(-params.result_deadline_margin_percent * queued_tokens * 1000 // (100 * max(1, capacity)))
    return assigned_ms + params.result_deadline_grace_ms + work_ms


def is_past_result_deadline(job: JobRecord, block: BlockContext) -> bool:
    """Past both the time allowed and the minimum blocks: a proposer's clock alone cannot make a worker late."""
    return block.timestamp_ms > job.deadline_ms and block.number > job.deadline_block


def get_job_status_name(status: int) -> str:
    return {v: k.lower() for k, v in vars(JobStatus).items() if isinstance(v, int)}.get(status, str(status))


class JobRules:
    """The inference-job half of `WorkRules` (a mixin: `WorkRules` sets params, policy and caches)."""

    params: EconomyParams

    def get_routing_snapshot(self, state: StateAPI, block: BlockContext, excluded: Iterable[bytes] = ()):
        return get_routing_snapshot(state, self.params, block.number, excluded=excluded)

    def update_standing(self, state: StateAPI, address: bytes, **changes: int) -> StandingRecord:
        standing = get_standing(state, address)
        assert standing is not None, "only registered workers have a standing"
        updated = replace_record(standing, **changes)
        write_record(state, address, STANDING_SLOT, updated)
        return updated

    # -- inference jobs ----------------------------------------------------------------------

    def apply_inference_request(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        # Refused before anything is recorded: a job on a model nobody independent holds could never be audited.
        self.validate_request_model(state, tx.sender, payload.model_sha256, payload.max_tokens)
        job_id = compute_work_id(tx.sender, tx.nonce)
        if get_job(state, job_id) is not None:
            raise WorkRejected("job id already used", got=job_id, expected="a fresh (sender, nonce)")
        job = JobRecord(
            requester=tx.sender, model_sha256=payload.model_sha256, max_tokens=payload.max_tokens,
            cost=compute_job_cost(payload.max_tokens, self.params), created_block=block.number,
            status=JobStatus.WAITING, worker=b"", snapshot_hash=b"", deadline_block=0, attempts=0, excluded=(),
            result_tx=b"", result_block=0, output_hash=b"", output_tokens=0, audited=0, escalated=0, committee=(),
            attestations=(), score_ppm=0, deadline_ms=0)
        emit_event(block, JOB_REQUESTED, job_id, tx.sender, payload.model_sha256, payload.max_tokens)
        job = self.try_assign(state, block, job_id, job)
        if job.status == JobStatus.WAITING:
            self.make_waiting_room(state, block, job_id)
        self.put_job(state, job_id, job)
        set_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT, get_open_jobs(state) + (job_id,))

    def make_waiting_room(self, state: StateAPI, block: BlockContext, job_id: bytes) -> None:
        """Room for one more waiting job, or NetworkBusy (a status-0 receipt, never a silent drop).

        A full queue admits a request only by out-offering the waiting job that
        would be served last (the smallest offering, the latest requested among
        equals); that job expires unserved, which touches nobody's reliability.
        """
        waiting = get_waiting_job_count(state)
        if waiting < self.params.max_waiting_jobs:
            return
        last_id = self.get_last_waiting_job(state)
        if last_id is None or get_job_offering(state, job_id) <= get_job_offering(state, last_id):
            validate_waiting_room(waiting, self.params)
        self.close_job(state, block, last_id, get_job(state, last_id), JobStatus.EXPIRED)

    def get_last_waiting_job(self, state: StateAPI) -> bytes | None:
        """The waiting job `process_job_deadlines` would retry last: smallest offering, then latest requested."""
        waiting = [j for j in get_open_jobs(state) if get_job(state, j).status == JobStatus.WAITING]
        if not waiting:
            return None
        return min(reversed(waiting), key=lambda j: get_job_offering(state, j))  # min keeps the first (latest) tie

    def try_assign(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> JobRecord:
        """Route the job over the current state; nobody eligible leaves it WAITING.

        This is `route(job_id, model, get_routing_snapshot(...), cost)` and
        `compute_routing_snapshot_hash` of that snapshot, computed from cached
        per-worker views (`RoutingViewCache`) instead of a snapshot built per request.
        """
        # A requester is never its own worker: the pool pays for work someone else asked for.
        excluded = set(job.excluded)
        excluded.add(job.requester)
        candidates = [v for v in self.routing_views.get_views(state, block.number) if v.terms.address not in excluded]
        floor = self.params.quality_floor_ppm
        validate_routing_floor(floor)
        validate_job(job_id, job.model_sha256, job.cost)
        worker = select_worker(job_id, job.model_sha256, [c.terms for c in candidates], floor, job.cost)
        if worker is None:
            if job.status == JobStatus.WAITING and not job.worker and not job.snapshot_hash:
                return job  # already exactly what waiting records
            return replace_record(job, status=JobStatus.WAITING, worker=b"", snapshot_hash=b"")
        standing = get_standing(state, worker)
        load = standing.load + job.cost
        self.update_standing(state, worker, load=load)
        snapshot_hash = compute_encoded_snapshot_hash([c.encoded for c in candidates], floor)
        capacity = get_worker_record(state, worker).capacity
        deadline_block = block.number + self.params.result_deadline_blocks
        emit_event(block, JOB_ASSIGNED, job_id, worker, job.attempts + 1, deadline_block)
        return replace_record(job, status=JobStatus.ASSIGNED, worker=worker, snapshot_hash=snapshot_hash,
                              deadline_block=deadline_block,
                              deadline_ms=compute_result_deadline_ms(block.timestamp_ms, load, capacity, self.params),
                              attempts=job.attempts + 1)

    def put_job(self, state: StateAPI, job_id: bytes, job: JobRecord) -> None:
        """Write a job record, keeping the count of WAITING records (the waiting queue's bound) in step."""
        old = get_job(state, job_id)
        was_waiting = old is not None and old.status == JobStatus.WAITING
        is_waiting = job.status == JobStatus.WAITING
        if was_waiting != is_waiting:
            set_waiting_job_count(state, get_waiting_job_count(state) + (1 if is_waiting else -1))
        write_record(state, INFERENCE_REQUEST_ADDRESS, job_id, job)

    def close_job(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord, status: int) -> None:
        emit_event(block, JOB_CLOSED, job_id, status, job.score_ppm)
        self.put_job(state, job_id, replace_record(job, status=status))
        remaining = compute_without(get_open_jobs(state), job_id)
        set_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT, remaining)

    def release_load(self, state: StateAPI, job: JobRecord, **changes: int) -> None:
        """Take the job's cost off its worker's load, with any other `changes` to the standing in the same write."""
        standing = get_standing(state, job.worker)
        self.update_standing(state, job.worker, load=max(0, standing.load - job.cost), **changes)

    def apply_inference_result(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Record the answer; the audit is decided in the next block, once the hash of this one exists.

        A worker cannot know whether it will be audited, or by whom, before it
        has committed to its output: the seed is the hash of the block that holds it.
        """
        job = self.validate_result(state, block, tx, payload)
        standing = get_standing(state, job.worker)
        self.release_load(state, job, reliability_ppm=compute_running_average(
            standing.reliability_ppm, PPM, self.params.average_divisor))
        output_hash = compute_output_hash(payload.output_tokens)
        self.put_job(state, payload.job_id, replace_record(job,
            status=JobStatus.RESULTED, result_tx=tx.tx_hash, result_block=block.number,
            output_hash=output_hash, output_tokens=len(payload.output_tokens)))
        emit_event(block, JOB_RESULT, payload.job_id, tx.sender, len(payload.output_tokens), output_hash)

    def process_audit_decision(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> None:
        """Audit or accept a result, seeded by the hash of the block that holds it (this block's parent)."""
        decision = compute_audit_decision(job_id, block.parent_hash, self.get_worker_history(state, job.worker),
                                          self.audit_policy)
        if not decision.audited:
            self.accept_on_standing(state, block, job_id, job)
            return
        size = decision.committee_size or self.params.committee_size
        committee = self.draw_committee(state, job, keccak(block.parent_hash + job_id), size)
        if not committee:
            # The policy wants it checked and nobody independent can: it stays unverified and unpaid.
            self.close_job(state, block, job_id, replace_record(job, audited=1), JobStatus.UNVERIFIED)
            return
        self.put_job(state, job_id, replace_record(job,
            status=JobStatus.ATTESTING, audited=1, committee=committee,
            deadline_block=block.number + self.params.attestation_window_blocks))

    def draw_committee(self, state: StateAPI, job: JobRecord, seed: bytes, size: int) -> tuple[CommitteeSeat, ...]:
        """Members by recognition among the model's holders, never the worker, the requester, or anyone seated."""
        seated = {seat.address for seat in job.committee} | {job.worker, job.requester}
        candidates = self.get_model_verifiers(state, job.model_sha256, excluded=seated)
        return tuple(CommitteeSeat(m.address, m.weight)
                     for m in compute_committee(candidates, seed, size))

    def validate_result(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> JobRecord:
        """The assigned worker's answer in time; a refusal costs nothing (the lateness was counted once already)."""
        job = get_job(state, payload.job_id)
        if job is None:
            raise WorkRejected("result for an unknown job", got=payload.job_id, expected="a requested job id")
        if tx.sender in job.excluded:
            fate = {JobStatus.EXPIRED: "expired", JobStatus.WAITING: "waits for another worker"}.get(
                job.status, "was reassigned to another worker")
            raise WorkRejected(f"result refused: this worker missed its deadline and the job {fate}",
                               got=get_job_status_name(job.status), expected="a result before the deadline")
        if job.status != JobStatus.ASSIGNED:
            raise WorkRejected("the job is not waiting for a result", got=get_job_status_name(job.status),
                               expected="assigned")
        if tx.sender != job.worker:
            raise WorkRejected("only the assigned worker may answer", got=tx.sender, expected=job.worker)
        if is_past_result_deadline(job, block):
            raise WorkRejected("result after the deadline", got=[block.number, block.timestamp_ms],
                               expected=f"block <= {job.deadline_block} or timestamp_ms <= {job.deadline_ms}")
        if len(payload.output_tokens) > job.max_tokens:
            raise WorkRejected("more tokens than the job asked for", got=len(payload.output_tokens),
                               expected=f"<= {job.max_tokens}")
        return job

    def get_worker_history(self, state: StateAPI, address: bytes) -> WorkerHistory:
        standing = get_standing(state, address)
        return WorkerHistory(jobs_done=standing.jobs_done, jobs_failed_audit=standing.jobs_failed_audit,
                             jobs_since_caught=standing.jobs_since_caught)

    def record_audit_outcome(self, state: StateAPI, worker: bytes, audited: bool, failed: bool, **changes: int) -> None:
        history = apply_audit_outcome(self.get_worker_history(state, worker), audited, failed)
        self.update_standing(state, worker, jobs_done=history.jobs_done, jobs_failed_audit=history.jobs_failed_audit,
                             jobs_since_caught=history.jobs_since_caught, **changes)

    def accept_on_standing(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> None:
        standing = get_standing(state, job.worker)
        self.record_audit_outcome(state, job.worker, audited=False, failed=False)
        self.add_claim(state, job.worker, job.output_tokens * standing.quality_ppm)
        self.close_job(state, block, job_id, replace_record(job, score_ppm=standing.quality_ppm), JobStatus.ACCEPTED)

    def apply_attestation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        job = self.validate_attestation(state, block, tx, payload)
        score = Score(tx.sender, payload.score_ppm)
        emit_event(block, JOB_ATTESTED, payload.job_id, tx.sender, payload.score_ppm)
        job = replace_record(job, attestations=job.attestations + (score,))
        weights = {seat.address: seat.weight for seat in job.committee}
        if is_committee_decided(job.attestations, weights, self.params.acceptance_threshold_ppm):
            self.score_job(state, block, payload.job_id, job, weights)
        else:
            self.put_job(state, payload.job_id, job)

    def validate_attestation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> JobRecord:
        job = get_job(state, payload.job_id)
        if job is None:
            raise WorkRejected("attestation for an unknown job", got=payload.job_id, expected="a requested job id")
        if job.status != JobStatus.ATTESTING:
            raise WorkRejected("the job is not being attested", got=job.status, expected=JobStatus.ATTESTING)
        if tx.sender not in {seat.address for seat in job.committee}:
            raise WorkRejected("only committee members attest", got=tx.sender,
                               expected=[seat.address for seat in job.committee])
        if tx.sender in {s.address for s in job.attestations}:
            raise WorkRejected("this member already attested", got=tx.sender, expected="one attestation per member")
        if block.number > job.deadline_block:
            raise WorkRejected("attestation after the window", got=block.number, expected=f"<= {job.deadline_block}")
        return job

    def score_job(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord,
                  weights: dict[bytes, int]) -> None:
        """The quorum is in: weighted median; a first verdict against the worker is escalated, else paid out."""
        median = compute_weighted_median((s.score_ppm, weights[s.address]) for s in job.attestations)
        extra = compute_escalation_committee_size(median, len(job.committee), self.audit_policy)
        if extra and not job.escalated:
            self.escalate(state, block, job_id, job, extra)
            return
        job = replace_record(job, score_ppm=median)
        standing = get_standing(state, job.worker)
        quality = compute_running_average(standing.quality_ppm, median, self.params.average_divisor)
        accepted = median >= self.params.acceptance_threshold_ppm
        self.record_audit_outcome(state, job.worker, audited=True, failed=not accepted, quality_ppm=quality)
        if accepted:
            self.add_claim(state, job.worker, job.output_tokens * median)
        attester_units = job.output_tokens * self.params.attester_share_ppm
        for s in job.attestations:
            if is_within_tolerance(s.score_ppm, median, self.params.attestation_tolerance_ppm):
                self.add_claim(state, s.address, attester_units)
        self.close_job(state, block, job_id, job, JobStatus.ACCEPTED if accepted else JobStatus.FAILED_AUDIT)

    def escalate(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord, extra: int) -> None:
        """No single member convicts a worker: seat `extra` more, keep the attestations, reopen the window."""
        added = self.draw_committee(state, job, keccak(block.parent_hash + job_id + b"escalation"), extra)
        if not added:
            self.close_job(state, block, job_id, job, JobStatus.UNVERIFIED)
            return
        self.put_job(state, job_id, replace_record(job,
            escalated=1, committee=job.committee + added,
            deadline_block=block.number + self.params.attestation_window_blocks))

    # -- deadlines ---------------------------------------------------------------------------

    def process_job_deadlines(self, state: StateAPI, block: BlockContext) -> None:
        """Late workers lose reliability and their job moves on; silent committees expire; waiting jobs retry.

        Waiting jobs retry after the deadlines have freed capacity, the ones with
        the largest offering first, then in the order they were requested.
        """
        waiting = []
        for job_id in get_open_jobs(state):
            job = get_job(state, job_id)
            status = job.status
            if status == JobStatus.WAITING:
                waiting.append(job_id)
            elif status == JobStatus.ASSIGNED and self.is_result_overdue(job, block):
                if self.process_missed_result(state, block, job_id, job) == JobStatus.WAITING:
                    waiting.append(job_id)
            elif status == JobStatus.RESULTED and block.number > job.result_block:
                self.process_audit_decision(state, block, job_id, job)
            elif status == JobStatus.ATTESTING and block.number >= job.deadline_block:
                self.close_job(state, block, job_id, job, JobStatus.UNVERIFIED)
        # Handling one job never touches another job's record, so `waiting` is, in the open list's order,
        # every job that is WAITING now: the jobs waiting before this loop and those it could not reassign.
        for job_id in sorted(waiting, key=lambda j: -get_job_offering(state, j)):  # sorted() is stable
            self.process_waiting_job(state, block, job_id, get_job(state, job_id))

    @staticmethod
    def is_result_overdue(job: JobRecord, block: BlockContext) -> bool:
        """At the end of this block no result can come in time: the next block is past the deadline.

        Judged by this block's own timestamp: a block stamped at or after the
        deadline ends the wait (a result in it still counted, see `validate_result`).
        """
        return block.timestamp_ms >= job.deadline_ms and block.number >= job.deadline_block

    def process_missed_result(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> int:
        """Release the late worker's load, lower its reliability, and reassign (or expire) the job: its new status."""
        standing = get_standing(state, job.worker)
        self.release_load(state, job, jobs_late=standing.jobs_late + 1, reliability_ppm=(
            compute_running_average(standing.reliability_ppm, 0, self.params.average_divisor)))
        job = replace_record(job, excluded=job.excluded + (job.worker,))
        if job.attempts >= self.params.max_assignment_attempts:
            self.close_job(state, block, job_id, job, JobStatus.EXPIRED)
            return JobStatus.EXPIRED
        job = self.try_assign(state, block, job_id, job)
        self.put_job(state, job_id, job)
        return job.status

    def process_waiting_job(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> None:
        patience = self.params.result_deadline_blocks * self.params.max_assignment_attempts
        if block.number >= job.created_block + patience:
            self.close_job(state, block, job_id, job, JobStatus.EXPIRED)
            return
        assigned = self.try_assign(state, block, job_id, job)
        if assigned is not job:
            # Still nobody eligible gives back the same record: writing its bytes again would change nothing.
            self.put_job(state, job_id, assigned)

    # -- annotation --------------------------------------------------------------------------
