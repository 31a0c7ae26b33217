"""Sampled audits: which inference results are re-checked, and by how many validators.

Re-running every job on every validator would cost the network several times
the work it pays for. Instead each result is audited with a probability that
depends on the worker's record:

- a new worker is on probation: every one of its first results is audited, and
  the rate falls linearly to the base rate over `probation_jobs` jobs;
- a worker that failed an audit is audited on every job for the next
  `caught_window_jobs` jobs, and each failure on record raises its base rate;
- an established worker with a clean record is audited at `base_rate_ppm`.

A routine audit is done by one validator (`committee_size` 1). When that
validator's score rejects the output, `compute_escalation_committee_size` asks
for a full committee, so no single validator can convict a worker alone and
honest work (false-rejection rate 0, see `inference.verifier`) never pays for
escalations.

The decision is a pure function of (job id, seed, history, policy): the coin is
`keccak(b"magicoin/audit" || seed || job_id)`, so every node computes the same
decision, and a worker cannot know whether it will be audited before the seed
(the hash of a block after its result) exists. `simulate_*` below measure what
the policy costs and what it catches; `benchmarks/inference.py` reports them.

Why these numbers (the defaults of `genesis.DEFAULT_PARAMS`, which hold them
as consensus rules). A worker cheating on 10% of its jobs escapes one job with
probability 1 - 0.1 * rate, so catching it within 100 jobs with p >= 0.99 needs
an average rate of 0.4501 over those jobs (`compute_required_rate_ppm`), and
the audit compute is that rate times the price of one audit: a teacher-forced
pass that skips the prefix its KV cache holds (`LocalModel.score_output`)
costs 0.31-0.34 of the job's generation on this machine (benchmarks/inference.py).
Auditing every worker at 0.45 for ever would cost 15-16% of generation, over
the 15% budget, so, as intended, trust is earned and the rate follows the record:

- a new worker is audited on every job at first, falling to the base rate
  over 50 jobs: a new 10% cheater is caught within 100 jobs with p = 0.997;
- an established worker is audited at the 0.40 base rate: the honest
  network spends about 0.41 * 0.33 = 14% of generation on audits; a worker
  that turns cheater after any clean record is caught within 100 jobs with
  p = 0.983 and within 200 with p = 0.9997 (`compute_catch_probability`);
- a worker caught once is audited on every job for the next 100, and each
  failure on record raises its base rate for good.

Raising `audit_base_rate_ppm` to 460,000 in a genesis buys p >= 0.99 for a
turning worker too, at about 16% of generation.
"""
from __future__ import annotations

import random
from typing import NamedTuple

from genesis import DEFAULT_PARAMS
from primitives.hashing import keccak

PPM = 1_000_000
AUDIT_DOMAIN = b"magicoin/audit"
# An audited output scoring below this failed its audit: the genesis param
# `acceptance_threshold_ppm`, which the verifier is calibrated to (inference.verifier).
ACCEPTANCE_THRESHOLD_PPM = DEFAULT_PARAMS.acceptance_threshold_ppm


class WorkerHistory(NamedTuple):
    jobs_done: int  # results the worker has delivered, all time
    jobs_failed_audit: int  # audits it has failed, all time
    jobs_since_caught: int  # results since its last failed audit (== jobs_done if never caught)


class AuditPolicy(NamedTuple):
    base_rate_ppm: int = 400_000
    probation_jobs: int = 50
    caught_window_jobs: int = 100
    # Each failure on record adds this to the base rate, for good.
    failure_rate_step_ppm: int = 150_000
    committee_size: int = 1
    escalation_committee_size: int = 3
    # Below this score the first auditor's verdict is escalated (matches the verifier's threshold).
    escalation_below_score_ppm: int = ACCEPTANCE_THRESHOLD_PPM

    @classmethod
    def from_genesis(cls, params: object) -> "AuditPolicy":
        """The policy a chain runs: its `genesis.Params` fix it, so every node audits alike.

        Escalation is asked for below the score that fails an audit, so it reads
        the chain's acceptance threshold rather than a policy field of its own.
        """
        return cls(
            base_rate_ppm=params.audit_base_rate_ppm,
            probation_jobs=params.audit_probation_jobs,
            caught_window_jobs=params.audit_caught_window_jobs,
            failure_rate_step_ppm=params.audit_failure_rate_step_ppm,
            committee_size=params.audit_committee_size,
            escalation_committee_size=params.audit_escalation_committee_size,
            escalation_below_score_ppm=params.acceptance_threshold_ppm,
        )


DEFAULT_AUDIT_POLICY = AuditPolicy()


class AuditDecision(NamedTuple):
    audited: bool
    committee_size: int  # 0 when not audited


def compute_audit_rate_ppm(history: WorkerHistory, policy: AuditPolicy) -> int:
    """The probability, in parts per million, that this worker's next result is audited."""
    rates = [policy.base_rate_ppm]
    # Probation: trust is earned, so a worker without a record is checked on
    # every job at first; the rate decays linearly to the base rate.
    if history.jobs_done < policy.probation_jobs:
        remaining = policy.probation_jobs - history.jobs_done
        rates.append(policy.base_rate_ppm + (PPM - policy.base_rate_ppm) * remaining // policy.probation_jobs)
    if history.jobs_failed_audit > 0:
        # Just caught: a cheater that was caught once is checked on every job for a while.
        if history.jobs_since_caught < policy.caught_window_jobs:
            rates.append(PPM)
        # A record of failures never fully washes out.
        rates.append(policy.base_rate_ppm + policy.failure_rate_step_ppm * history.jobs_failed_audit)
    return min(PPM, max(rates))


def compute_audit_coin(job_id: bytes, seed: bytes) -> int:
    """A uniform integer in [0, PPM) that nobody can predict before `seed` exists."""
    return int.from_bytes(keccak(AUDIT_DOMAIN + seed + job_id), "big") % PPM


def compute_audit_decision(job_id: bytes, seed: bytes, history: WorkerHistory, policy: AuditPolicy = DEFAULT_AUDIT_POLICY) -> AuditDecision:
    rate = compute_audit_rate_ppm(history, policy)
    if compute_audit_coin(job_id, seed) < rate:
        return AuditDecision(audited=True, committee_size=policy.committee_size)
    return AuditDecision(audited=False, committee_size=0)


def compute_escalation_committee_size(first_score_ppm: int, committee_size: int, policy: AuditPolicy = DEFAULT_AUDIT_POLICY) -> int:
    """How many more validators must check a result after the first committee scored it.

    0 when the first committee accepted it, or was already a full committee.
    """
    if first_score_ppm >= policy.escalation_below_score_ppm:
        return 0
    return max(0, policy.escalation_committee_size - committee_size)


def apply_audit_outcome(history: WorkerHistory, audited: bool, failed: bool) -> WorkerHistory:
    """The worker's record after one more result (for simulations and the economy's bookkeeping)."""
    if audited and failed:
        return WorkerHistory(history.jobs_done + 1, history.jobs_failed_audit + 1, 0)
    return WorkerHistory(history.jobs_done + 1, history.jobs_failed_audit, history.jobs_since_caught + 1)


def compute_required_rate_ppm(cheat_fraction: float, within_jobs: int, probability: float) -> int:
    """The smallest constant audit rate that catches such a cheater in time with that probability."""
    per_job = 1 - (1 - probability) ** (1 / within_jobs)
    return min(PPM, -(-int(per_job / cheat_fraction * PPM * 1_000) // 1_000))


def compute_catch_probability(
    policy: AuditPolicy,
    cheat_fraction: float,
    within_jobs: int,
    *,
    prior_clean_jobs: int = 0,
    detection_rate: float = 1.0,
) -> float:
    """Exact probability that a worker cheating on `cheat_fraction` of its jobs is caught within `within_jobs`.

    Until it is first caught the worker's record is a deterministic function
    of how many jobs it has done (no failures, never caught), so so is each
    job's audit rate, and the coins are independent: the chance of escaping
    is the product over those jobs of (1 - cheat_fraction * rate * detection).
    """
    escape = 1.0
    for done in range(prior_clean_jobs, prior_clean_jobs + within_jobs):
        rate = compute_audit_rate_ppm(WorkerHistory(done, 0, done), policy) / PPM
        escape *= 1 - cheat_fraction * rate * detection_rate
    return 1 - escape


# --- simulation ---------------------------------------------------------------


class CatchStats(NamedTuple):
    probability_caught: float
    mean_jobs_to_catch: float  # among the caught runs


def simulate_catch(
    policy: AuditPolicy,
    cheat_fraction: float,
    within_jobs: int,
    *,
    prior_clean_jobs: int = 0,
    detection_rate: float = 1.0,
    trials: int = 20_000,
    seed: int = 1,
) -> CatchStats:
    """Probability that a worker cheating on `cheat_fraction` of its jobs is caught within `within_jobs`.

    `prior_clean_jobs` models a worker that behaved for that long first (an
    established worker turning); `detection_rate` is the verifier's rejection
    rate on cheated outputs. Job ids and seeds are random bytes, so the audit
    coins come from the policy's own hash, not from the simulator.
    """
    rng = random.Random(seed)
    caught_runs = 0
    jobs_to_catch = 0
    for _ in range(trials):
        history = WorkerHistory(prior_clean_jobs, 0, prior_clean_jobs)
        for job_number in range(1, within_jobs + 1):
            decision = compute_audit_decision(rng.randbytes(32), rng.randbytes(32), history, policy)
            cheated = rng.random() < cheat_fraction
            failed = decision.audited and cheated and rng.random() < detection_rate
            if failed:
                caught_runs += 1
                jobs_to_catch += job_number
                break
            history = apply_audit_outcome(history, decision.audited, False)
    return CatchStats(caught_runs / trials, jobs_to_catch / caught_runs if caught_runs else float("inf"))


class NetworkCost(NamedTuple):
    jobs: int
    audits: int
    verifications: int  # validator passes, escalations included
    audit_rate: float
    audit_compute_share: float  # verification compute / generation compute
    cheaters_caught: int
    cheaters: int


def simulate_network(
    policy: AuditPolicy,
    *,
    verification_cost_ratio: float,
    workers: int = 50,
    jobs_per_worker: int = 2_000,
    cheater_fraction: float = 0.0,
    cheat_fraction: float = 0.1,
    detection_rate: float = 1.0,
    seed: int = 2,
) -> NetworkCost:
    """Whole-network audit compute relative to generation compute.

    Every worker starts new (so probation is paid for), serves
    `jobs_per_worker` jobs, and a `cheater_fraction` of them cheat on
    `cheat_fraction` of their jobs. One audit pass costs
    `verification_cost_ratio` of the job's generation (measured by the benchmark).
    """
    rng = random.Random(seed)
    n_cheaters = round(workers * cheater_fraction)
    audits = verifications = caught = 0
    for worker in range(workers):
        is_cheater = worker < n_cheaters
        history = WorkerHistory(0, 0, 0)
        was_caught = False
        for _ in range(jobs_per_worker):
            decision = compute_audit_decision(rng.randbytes(32), rng.randbytes(32), history, policy)
            cheated = is_cheater and rng.random() < cheat_fraction
            failed = decision.audited and cheated and rng.random() < detection_rate
            if decision.audited:
                audits += 1
                first_score = 0 if failed else PPM
                verifications += decision.committee_size
                verifications += compute_escalation_committee_size(first_score, decision.committee_size, policy)
            was_caught = was_caught or failed
            history = apply_audit_outcome(history, decision.audited, failed)
        caught += was_caught
    jobs = workers * jobs_per_worker
    return NetworkCost(
        jobs=jobs,
        audits=audits,
        verifications=verifications,
        audit_rate=audits / jobs,
        audit_compute_share=verifications * verification_cost_ratio / jobs,
        cheaters_caught=caught,
        cheaters=n_cheaters,
    )
