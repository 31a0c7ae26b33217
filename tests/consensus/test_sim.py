"""Hypothesis-driven schedules in the simulated network: safety always, liveness after GST."""
import dataclasses
import json
import subprocess
import sys

from hypothesis import HealthCheck, given, settings, strategies as st

from consensus.sim import (
    INVALID,
    MIXED,
    SILENT,
    TWINS,
    Crash,
    NetworkConfig,
    Scenario,
    Simulation,
    build_random_scenario,
    run_scenario,
)
from consensus.validators import is_epoch_boundary

SIM_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def assert_safe_and_live(scenario, result):
    context = (scenario, result)
    assert result.safety_violations == 0, context
    assert result.agreement_violations == 0 and result.validity_violations == 0, context
    assert result.invariant_violations == 0, context
    # Honest weight is over 2/3 and every crashed node restarts: all honest nodes finish after GST.
    assert result.liveness_ok and result.finalized_heights == scenario.heights, context


def byzantine_addresses(sim):
    return {sim.addresses[v].hex() for v, _ in sim.scenario.faults}


schedules = dict(
    seed=st.integers(0, 2**32 - 1),
    drop_rate=st.sampled_from([0.0, 0.1, 0.3]),
    gst_ms=st.integers(0, 6000),
    partition=st.booleans(),
)


@given(**schedules, crashes=st.integers(0, 1))
@settings(max_examples=60, **SIM_SETTINGS)
def test_n4_f1_equivocating_twins(seed, drop_rate, gst_ms, partition, crashes):
    scenario = build_random_scenario(
        4, 1, seed, 3, fault_kind=TWINS, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes
    )
    sim = Simulation(scenario)
    result = sim.run()
    assert_safe_and_live(scenario, result)
    # Only the twin's key can ever be accused, and only by real double votes.
    assert set(result.evidence_offenders) <= byzantine_addresses(sim)


@given(**schedules, crashes=st.integers(0, 2))
@settings(max_examples=25, **SIM_SETTINGS)
def test_n7_f2_equivocating_twins(seed, drop_rate, gst_ms, partition, crashes):
    scenario = build_random_scenario(
        7, 2, seed, 3, fault_kind=TWINS, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes
    )
    sim = Simulation(scenario)
    result = sim.run()
    assert_safe_and_live(scenario, result)
    assert set(result.evidence_offenders) <= byzantine_addresses(sim)


@st.composite
def arbitrary_partitions(draw, nodes):
    groups = draw(st.lists(st.integers(0, 2), min_size=nodes, max_size=nodes))
    return tuple(tuple(n for n in range(nodes) if groups[n] == g) for g in range(3) if g in groups)


@given(data=st.data(), seed=st.integers(0, 2**32 - 1), kind=st.sampled_from([TWINS, SILENT, INVALID]))
@settings(max_examples=20, **SIM_SETTINGS)
def test_arbitrary_partitions_delays_and_drops_until_gst(data, seed, kind):
    base = build_random_scenario(4, 1, seed, 3, fault_kind=kind, partition=False)
    nodes = len(base.get_node_validators())
    partitions = data.draw(arbitrary_partitions(nodes))
    gst = data.draw(st.integers(500, 5000))
    # Delays after GST may exceed the first rounds' timeouts; timeouts grow until they fit.
    max_delay = data.draw(st.integers(5, 800))
    pre_gst_max_delay = data.draw(st.integers(max_delay, 4000))
    network = NetworkConfig(
        min_delay_ms=data.draw(st.integers(0, max_delay)),
        max_delay_ms=max_delay,
        pre_gst_max_delay_ms=pre_gst_max_delay,
        drop_rate=data.draw(st.sampled_from([0.0, 0.2, 0.5])),
        gst_ms=gst,
        partitions=partitions,
    )
    scenario = Scenario(
        weights=base.weights,
        faults=base.faults,
        network=network,
        heights=3,
        seed=seed,
    )
    assert_safe_and_live(scenario, run_scenario(scenario))


@given(
    seed=st.integers(0, 2**32 - 1),
    at=st.lists(st.integers(0, 4000), min_size=1, max_size=3),
    downtime=st.integers(100, 4000),
)
@settings(max_examples=25, **SIM_SETTINGS)
def test_crash_and_restart_of_honest_nodes(seed, at, downtime):
    base = build_random_scenario(4, 1, seed, 4, fault_kind=TWINS, partition=True, gst_ms=2000)
    honest = [n for n, v in enumerate(base.get_node_validators()) if base.get_fault(v) is None]
    crashes = tuple(Crash(honest[i % len(honest)], t, t + downtime) for i, t in enumerate(at))
    scenario = Scenario(
        weights=base.weights, faults=base.faults, network=base.network, crashes=crashes, heights=4, seed=seed
    )
    assert_safe_and_live(scenario, run_scenario(scenario))


@given(**schedules, crashes=st.integers(0, 1))
@settings(max_examples=12, **SIM_SETTINGS)
def test_n7_f2_mixed_byzantine_kinds(seed, drop_rate, gst_ms, partition, crashes):
    # One equivocating twin and one silent validator at once.
    scenario = build_random_scenario(
        7, 2, seed, 3, fault_kind=MIXED, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes
    )
    assert sorted(kind for _, kind in scenario.faults) == [SILENT, TWINS]
    assert_safe_and_live(scenario, run_scenario(scenario))


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=6, **SIM_SETTINGS)
def test_n10_f3_twins_silent_and_invalid_proposer(seed):
    scenario = build_random_scenario(10, 3, seed, 3, fault_kind=MIXED, drop_rate=0.2, gst_ms=2000, crashes=1)
    assert sorted(kind for _, kind in scenario.faults) == sorted([TWINS, SILENT, INVALID])
    assert_safe_and_live(scenario, run_scenario(scenario))


def test_invalid_proposals_are_never_decided():
    for seed in range(6):
        scenario = build_random_scenario(4, 1, seed, 6, fault_kind=INVALID, partition=False, drop_rate=0.0, gst_ms=0)
        sim = Simulation(scenario)
        result = sim.run()
        assert_safe_and_live(scenario, result)


class LyingVerdictSimulation(Simulation):
    """Honest machines told every block is valid: the validity check must catch what follows."""

    def _get_verdict(self, node, block_hash):
        return True


def test_validity_check_catches_a_machine_fed_wrong_verdicts():
    caught = 0
    for seed in range(6):
        scenario = build_random_scenario(4, 1, seed, 6, fault_kind=INVALID, partition=False, drop_rate=0.0, gst_ms=0)
        # Nodes stop at the first invalid block they decide, so a short horizon is enough.
        result = LyingVerdictSimulation(dataclasses.replace(scenario, max_time_ms=4000)).run()
        caught += result.validity_violations
    assert caught > 0


def test_runs_are_deterministic_per_seed():
    scenario = build_random_scenario(7, 2, 42, 3, crashes=1)
    a, b = run_scenario(scenario), run_scenario(scenario)
    for field in ("finalized_heights", "messages", "rounds_max", "events", "simulated_ms", "decided_heights_by_node"):
        assert getattr(a, field) == getattr(b, field)


def test_healthy_network_decides_every_height_in_one_round():
    scenario = build_random_scenario(7, 0, 3, 5, partition=False, drop_rate=0.0, gst_ms=0)
    result = run_scenario(scenario)
    assert_safe_and_live(scenario, result)
    assert result.rounds_max == 1


def test_cli_prints_the_result_json_last():
    cmd = [sys.executable, "-m", "consensus.sim", "--validators", "4", "--byzantine", "1",
           "--seed", "7", "--heights", "3", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    last = json.loads(proc.stdout.strip().splitlines()[-1])
    assert list(last) == ["finalized_heights", "safety_violations", "invariant_violations", "rounds_max", "messages"]
    assert all(isinstance(v, int) for v in last.values())
    assert last["finalized_heights"] == 3 and last["safety_violations"] == 0 and last["invariant_violations"] == 0
    assert last["messages"] > 0 and last["rounds_max"] >= 1


@given(
    seed=st.integers(0, 2**32 - 1),
    epoch_length=st.integers(1, 3),
    crashes=st.integers(0, 1),
    partition=st.booleans(),
)
@settings(max_examples=12, **SIM_SETTINGS)
def test_validator_set_follows_recognition_at_epoch_boundaries(seed, epoch_length, crashes, partition):
    base = build_random_scenario(4, 0, seed, 6, partition=partition, crashes=crashes, gst_ms=1500)
    scenario = dataclasses.replace(base, epoch_length=epoch_length)
    sim = Simulation(scenario)
    result = sim.run()
    assert_safe_and_live(scenario, result)
    views = [node.app.sets for node in sim.nodes]
    # Every node derived the same sets, only at epoch boundaries, and rewards really moved the weights.
    shared = {e: views[0][e] for e in views[0] if e <= scenario.heights}
    assert all({e: v[e] for e in v if e <= scenario.heights} == shared for v in views)
    assert all(is_epoch_boundary(e, epoch_length) for e in shared)
    assert len(shared) > 1 and len({tuple(s.members) for s in shared.values()}) > 1


def test_runs_replay_across_processes_whatever_the_hash_seed():
    # Python salts str/bytes hashes per process; a run must not depend on set iteration order.
    import os

    cmd = [sys.executable, "-m", "consensus.sim", "-n", "5", "-f", "1", "--seed", "11", "--heights", "3",
           "--crashes", "1", "--json"]
    outputs = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert proc.returncode == 0, proc.stderr
        outputs.add(proc.stdout.strip().splitlines()[-1])
    assert len(outputs) == 1
