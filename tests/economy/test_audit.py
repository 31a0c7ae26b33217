"""The audit policy: pure, deterministic, adaptive; and what its simulation says."""
import pytest
from hypothesis import given, settings, strategies as st

from economy.audit import (
    DEFAULT_AUDIT_POLICY,
    PPM,
    AuditDecision,
    AuditPolicy,
    WorkerHistory,
    apply_audit_outcome,
    compute_audit_decision,
    compute_catch_probability,
    compute_required_rate_ppm,
    compute_audit_rate_ppm,
    compute_escalation_committee_size,
    simulate_catch,
    simulate_network,
)

histories = st.builds(
    lambda done, failed, since: WorkerHistory(done, min(failed, done), min(since, done)),
    st.integers(0, 10_000),
    st.integers(0, 50),
    st.integers(0, 10_000),
)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), histories)
def test_decision_is_a_pure_function(job_id, seed, history):
    first = compute_audit_decision(job_id, seed, history, DEFAULT_AUDIT_POLICY)
    assert first == compute_audit_decision(job_id, seed, history, DEFAULT_AUDIT_POLICY)
    assert isinstance(first, AuditDecision)
    assert first.committee_size == (DEFAULT_AUDIT_POLICY.committee_size if first.audited else 0)
    assert DEFAULT_AUDIT_POLICY.base_rate_ppm <= compute_audit_rate_ppm(history, DEFAULT_AUDIT_POLICY) <= PPM


def test_new_and_caught_workers_are_audited_more():
    policy = DEFAULT_AUDIT_POLICY
    new = compute_audit_rate_ppm(WorkerHistory(0, 0, 0), policy)
    halfway = compute_audit_rate_ppm(WorkerHistory(policy.probation_jobs // 2, 0, policy.probation_jobs // 2), policy)
    established = compute_audit_rate_ppm(WorkerHistory(5_000, 0, 5_000), policy)
    just_caught = compute_audit_rate_ppm(WorkerHistory(5_000, 1, 3), policy)
    long_ago = compute_audit_rate_ppm(WorkerHistory(5_000, 1, 4_000), policy)
    repeat = compute_audit_rate_ppm(WorkerHistory(5_000, 3, 4_000), policy)
    assert new == PPM and just_caught == PPM
    assert new > halfway > established == policy.base_rate_ppm
    assert established < long_ago < repeat


def test_rate_matches_decisions_over_many_jobs():
    history = WorkerHistory(5_000, 0, 5_000)
    audited = sum(
        compute_audit_decision(i.to_bytes(32, "big"), b"seed", history).audited for i in range(4_000)
    )
    assert abs(audited / 4_000 - DEFAULT_AUDIT_POLICY.base_rate_ppm / PPM) < 0.03


def test_escalation_only_on_a_rejecting_score():
    assert compute_escalation_committee_size(PPM, 1) == 0
    assert compute_escalation_committee_size(990_000, 1) == 0
    assert compute_escalation_committee_size(100_000, 1) == DEFAULT_AUDIT_POLICY.escalation_committee_size - 1
    assert compute_escalation_committee_size(0, DEFAULT_AUDIT_POLICY.escalation_committee_size) == 0


def test_history_bookkeeping():
    history = WorkerHistory(10, 0, 10)
    assert apply_audit_outcome(history, audited=True, failed=True) == WorkerHistory(11, 1, 0)
    assert apply_audit_outcome(history, audited=False, failed=False) == WorkerHistory(11, 0, 11)


def test_simulation_catches_a_new_ten_percent_cheater():
    stats = simulate_catch(DEFAULT_AUDIT_POLICY, cheat_fraction=0.1, within_jobs=100, trials=1_000)
    assert stats.probability_caught >= 0.98


def test_simulated_audit_compute_stays_within_budget():
    # 0.30: what one audit pass costs relative to generation (benchmarks/inference.py).
    cost = simulate_network(DEFAULT_AUDIT_POLICY, verification_cost_ratio=0.30, workers=5, jobs_per_worker=1_000)
    assert 0 < cost.audit_compute_share <= 0.15
    assert cost.audit_compute_share == pytest.approx(cost.audit_rate * 0.30)
    never = AuditPolicy(base_rate_ppm=0, probation_jobs=0)
    assert simulate_network(never, verification_cost_ratio=0.33, workers=2, jobs_per_worker=200).audits == 0


def test_required_rate_meets_the_catch_target_and_no_less_does():
    rate = compute_required_rate_ppm(0.1, 100, 0.99)
    flat = AuditPolicy(base_rate_ppm=rate, probation_jobs=0)
    assert compute_catch_probability(flat, 0.1, 100) >= 0.99
    lower = AuditPolicy(base_rate_ppm=rate - 1_000, probation_jobs=0)
    assert compute_catch_probability(lower, 0.1, 100) < 0.99


def test_the_default_policy_catches_new_and_turning_cheaters():
    """A new 10% cheater: p >= 0.99 within 100 jobs. Trust lowers the rate but never opens a window:
    one that turns after any clean record is still caught within 100 jobs with p >= 0.98, within 200 with 0.999."""
    assert compute_catch_probability(DEFAULT_AUDIT_POLICY, 0.1, 100) >= 0.99
    for prior in (10, 1_000, 100_000):
        assert compute_catch_probability(DEFAULT_AUDIT_POLICY, 0.1, 100, prior_clean_jobs=prior) >= 0.98
        assert compute_catch_probability(DEFAULT_AUDIT_POLICY, 0.1, 200, prior_clean_jobs=prior) >= 0.999


def test_exact_catch_probability_agrees_with_simulation():
    policy = AuditPolicy(base_rate_ppm=200_000, probation_jobs=40)
    for prior in (0, 500):
        exact = compute_catch_probability(policy, 0.1, 100, prior_clean_jobs=prior)
        simulated = simulate_catch(policy, 0.1, 100, prior_clean_jobs=prior, trials=4_000).probability_caught
        standard_error = (exact * (1 - exact) / 4_000) ** 0.5
        assert abs(simulated - exact) < 4 * standard_error + 1e-3
    assert compute_catch_probability(policy, 0.1, 100) > compute_catch_probability(policy, 0.1, 100, prior_clean_jobs=500)
