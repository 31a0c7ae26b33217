"""Adaptive timeouts (`consensus.pacing`) in the simulated network: a silent validator costs little,
a healthy network is not slowed, and safety holds under the same adversarial schedules as without them."""
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.sim import (
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
from consensus.sim.scenario import SIM_PACING
from tests.consensus.test_sim import (
    SIM_SETTINGS,
    assert_safe_and_live,
    byzantine_addresses,
)

HEIGHTS = 60


def get_ms_per_height(scenario: Scenario) -> float:
    result = run_scenario(scenario)
    assert_safe_and_live(scenario, result)
    return result.simulated_ms / scenario.heights


def seven_validators(silent: tuple[int, ...], pacing, seed: int = 1) -> Scenario:
    return Scenario(weights=(1,) * 7, faults=tuple((v, SILENT) for v in silent), heights=HEIGHTS, seed=seed,
                    pacing=pacing)


def test_one_silent_validator_of_seven_costs_much_less_with_pacing():
    for seed in (1, 2, 3):
        all_up = get_ms_per_height(seven_validators((), SIM_PACING, seed))
        static = get_ms_per_height(seven_validators((4,), None, seed))
        paced = get_ms_per_height(seven_validators((4,), SIM_PACING, seed))
        # Static: each of its turns waits the whole propose timeout and then the precommit timeout.
        assert paced < 0.75 * static, (seed, all_up, paced, static)
        assert paced - all_up < 0.5 * (static - all_up), (seed, all_up, paced, static)


def test_two_silent_validators_of_seven_cost_much_less_with_pacing():
    static = get_ms_per_height(seven_validators((2, 5), None))
    paced = get_ms_per_height(seven_validators((2, 5), SIM_PACING))
    assert paced < 0.7 * static, (paced, static)


def test_a_healthy_network_is_not_slowed():
    for seed in (1, 2):
        static = get_ms_per_height(seven_validators((), None, seed))
        paced = get_ms_per_height(seven_validators((), SIM_PACING, seed))
        assert paced <= static * 1.02, (seed, paced, static)


def test_a_silent_validator_is_timed_out_fast_once_known_absent():
    sim = Simulation(seven_validators((4,), SIM_PACING))
    result = sim.run()
    assert_safe_and_live(sim.scenario, result)
    silent = sim.addresses[4]
    for node in sim.nodes:
        liveness = node.pacer.liveness
        assert liveness.is_absent(silent, node.machine.height)
        assert not any(liveness.is_absent(sim.addresses[v], node.machine.height) for v in range(7) if v != 4)


schedules = {
    "seed": st.integers(0, 2**32 - 1),
    "drop_rate": st.sampled_from([0.0, 0.1, 0.3]),
    "gst_ms": st.integers(0, 6000),
    "partition": st.booleans(),
}


@given(**schedules, crashes=st.integers(0, 1))
@settings(max_examples=30, **SIM_SETTINGS)
def test_n4_f1_equivocating_twins_with_pacing(seed, drop_rate, gst_ms, partition, crashes):
    scenario = dataclasses.replace(build_random_scenario(
        4, 1, seed, 3, fault_kind=TWINS, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes,
    ), pacing=SIM_PACING)
    sim = Simulation(scenario)
    result = sim.run()
    assert_safe_and_live(scenario, result)
    assert set(result.evidence_offenders) <= byzantine_addresses(sim)


@given(**schedules, crashes=st.integers(0, 2))
@settings(max_examples=15, **SIM_SETTINGS)
def test_n7_f2_mixed_byzantine_kinds_with_pacing(seed, drop_rate, gst_ms, partition, crashes):
    # One equivocating twin and one silent validator: the silent one is timed out fast, the twin is heard.
    scenario = dataclasses.replace(build_random_scenario(
        7, 2, seed, 3, fault_kind=MIXED, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes,
    ), pacing=SIM_PACING)
    assert_safe_and_live(scenario, run_scenario(scenario))


@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=15, **SIM_SETTINGS)
def test_long_delays_after_gst_still_finalise_with_pacing(data, seed):
    # Post-GST delays far beyond the floors: the paced timeouts must grow with the rounds until they fit.
    base = build_random_scenario(4, 1, seed, 3, fault_kind=data.draw(st.sampled_from([TWINS, SILENT])),
                                 partition=False)
    max_delay = data.draw(st.integers(5, 800))
    network = NetworkConfig(min_delay_ms=data.draw(st.integers(0, max_delay)), max_delay_ms=max_delay,
                            pre_gst_max_delay_ms=data.draw(st.integers(max_delay, 3000)),
                            drop_rate=data.draw(st.sampled_from([0.0, 0.2])), gst_ms=data.draw(st.integers(0, 4000)))
    crashes = tuple(Crash(0, at, at + 500) for at in data.draw(st.lists(st.integers(0, 3000), max_size=2)))
    scenario = Scenario(weights=base.weights, faults=base.faults, network=network, crashes=crashes, heights=3,
                        seed=seed, pacing=SIM_PACING)
    assert_safe_and_live(scenario, run_scenario(scenario))
