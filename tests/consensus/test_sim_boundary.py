"""The 1/3 boundary: conflicting finality needs byzantine weight over 1/3.

Twins-style attack: each byzantine key runs two instances, one on each side of
a partition that never heals. Each side finalises on its own when its honest
weight plus the byzantine weight is over 2/3 of the total, which for both sides
at once requires byzantine weight over 1/3.
"""
from hypothesis import HealthCheck, given, settings, strategies as st

from consensus.sim import SILENT, TWINS, NetworkConfig, Scenario, run_scenario

SIM_SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def split_twins(weights, twins, seed, heights=3, max_time_ms=15_000):
    """Every twin's first instance with the first half of the honest keys, its second with the rest."""
    scenario = Scenario(weights=weights, faults=tuple((v, TWINS) for v in twins))
    side_a, side_b, seen = [], [], set()
    honest = [v for v in range(len(weights)) if v not in twins]
    first_half = set(honest[: (len(honest) + 1) // 2])
    for node, v in enumerate(scenario.get_node_validators()):
        if v in twins:
            (side_b if v in seen else side_a).append(node)
            seen.add(v)
        else:
            (side_a if v in first_half else side_b).append(node)
    network = NetworkConfig(partitions=(tuple(side_a), tuple(side_b)), heal_partitions=False)
    return Scenario(
        weights=weights, faults=scenario.faults, network=network, heights=heights, seed=seed, max_time_ms=max_time_ms
    )


def test_over_one_third_by_count_finalises_conflicting_blocks():
    # 2 of 4 equal keys are byzantine (1/2 of the weight): each side has 3/4.
    result = run_scenario(split_twins((1, 1, 1, 1), twins=(0, 1), seed=0))
    assert result.agreement_violations >= 1
    assert result.safety_violations >= result.agreement_violations


def test_just_over_one_third_by_weight_finalises_conflicting_blocks():
    # One key with 34 of 100: 34 + 33 = 67 > 200/3 on both sides.
    result = run_scenario(split_twins((34, 33, 33), twins=(0,), seed=1))
    assert result.agreement_violations >= 1


def test_just_under_one_third_by_weight_cannot():
    # The same attack with 33 of 100 byzantine: one side has 67, the other 66, which is not a quorum.
    for seed in range(3):
        result = run_scenario(split_twins((33, 34, 33), twins=(0,), seed=seed))
        assert result.agreement_violations == 0


@st.composite
def boundary_scenarios(draw):
    """Byzantine weight at or under 1/3 (exactly 1/3 included), any partition, healing or not."""
    shape = draw(st.sampled_from(["n4f1", "n6f2-exact-third", "n7f2", "weighted-third"]))
    if shape == "n4f1":
        weights, twins = (1, 1, 1, 1), (draw(st.integers(0, 3)),)
    elif shape == "n6f2-exact-third":
        weights, twins = (1,) * 6, tuple(sorted(draw(st.sets(st.integers(0, 5), min_size=2, max_size=2))))
    elif shape == "n7f2":
        weights, twins = (1,) * 7, tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=2, max_size=2))))
    else:
        weights, twins = (50, 40, 30, 30), (0,)  # 50 of 150 is exactly 1/3
    probe = Scenario(weights=weights, faults=tuple((v, TWINS) for v in twins))
    nodes = len(probe.get_node_validators())
    groups = draw(st.lists(st.integers(0, 2), min_size=nodes, max_size=nodes))
    partitions = tuple(tuple(n for n in range(nodes) if groups[n] == g) for g in range(3) if g in groups)
    network = NetworkConfig(
        partitions=partitions,
        heal_partitions=draw(st.booleans()),
        gst_ms=draw(st.integers(0, 4000)),
        drop_rate=draw(st.sampled_from([0.0, 0.2])),
    )
    return Scenario(
        weights=weights,
        faults=probe.faults,
        network=network,
        heights=2,
        seed=draw(st.integers(0, 2**32 - 1)),
        max_time_ms=12_000,
    )


@given(boundary_scenarios())
@settings(max_examples=40, **SIM_SETTINGS)
def test_at_or_under_one_third_never_finalises_conflicting_blocks(scenario):
    assert 3 * scenario.get_byzantine_weight() <= sum(scenario.weights)
    result = run_scenario(scenario)
    assert result.safety_violations == 0, (scenario, result)
    assert result.invariant_violations == 0


def test_over_one_third_silent_halts_but_stays_safe():
    scenario = Scenario(
        weights=(1, 1, 1, 1), faults=((0, SILENT), (1, SILENT)), heights=2, seed=3, max_time_ms=10_000
    )
    result = run_scenario(scenario)
    assert result.finalized_heights == 0 and result.safety_violations == 0
    assert result.rounds_max == 0  # nobody decided anything
