"""CometBFT proposer-priority rotation: hand-checked sequences, tie-break, rescale, fairness."""
import pytest
from hypothesis import given, settings, strategies as st

from consensus.proposer import (
    ProposerSchedule,
    compute_centred_priorities,
    compute_incremented_priorities,
    compute_initial_priorities,
    compute_rescaled_priorities,
)
from consensus.validators import InvalidValidatorSet, ValidatorSet

A, B, C = b"\x01" * 20, b"\x02" * 20, b"\x03" * 20


def test_hand_computed_sequence():
    # Weights 1, 2, 3 (total 6). From zero: +w -> [1,2,3] C; [2,4,0]... worked by hand:
    # C, B, A (tie 3/3 with C goes to the lower address A), C, B, C, then it repeats.
    schedule = ProposerSchedule(ValidatorSet([(A, 1), (B, 2), (C, 3)]))
    sequence = [schedule.get_proposer(h, 0) for h in range(1, 13)]
    assert sequence == [C, B, A, C, B, C] * 2


def test_initial_state_matches_new_validator_set():
    vs = ValidatorSet([(A, 1), (B, 2), (C, 3)])
    priorities, proposer = compute_initial_priorities(vs)
    assert priorities == (1, 2, -3) and proposer == C


def test_tie_goes_to_lower_address():
    vs = ValidatorSet([(C, 1), (A, 1), (B, 1)])
    schedule = ProposerSchedule(vs)
    assert [schedule.get_proposer(h, 0) for h in range(1, 7)] == [A, B, C, A, B, C]


def test_rounds_continue_the_rotation_from_the_height_state():
    vs = ValidatorSet([(A, 1), (B, 2), (C, 3)])
    schedule = ProposerSchedule(vs)
    priorities, _ = schedule.get_height_state(3)
    for r in range(1, 6):
        assert schedule.get_proposer(3, r) == compute_incremented_priorities(vs, priorities, r)[1]
    assert schedule.get_proposer(3, 0) == A


def test_rescale_truncates_like_go():
    # diff 200 > 2 x 6: ratio ceil(200 / 12) = 17; Go's division truncates toward zero.
    assert compute_rescaled_priorities([100, -100, 0], 12) == (5, -5, 0)
    assert compute_rescaled_priorities([3, -3, 0], 12) == (3, -3, 0)


def test_centring_uses_floor_average():
    # sum -4 over 3: Go's big.Int Div is Euclidean, i.e. floor for a positive divisor: -2.
    assert compute_centred_priorities([-7, 2, 1]) == (-5, 4, 3)


def test_out_of_range_queries_are_rejected():
    schedule = ProposerSchedule(ValidatorSet([(A, 1)]), epoch_start=10)
    with pytest.raises(InvalidValidatorSet):
        schedule.get_proposer(9, 0)
    with pytest.raises(InvalidValidatorSet):
        schedule.get_proposer(10, -1)


def test_walking_back_gives_the_same_answers():
    vs = ValidatorSet([(A, 5), (B, 3), (C, 1)])
    forward = ProposerSchedule(vs)
    seq = [forward.get_proposer(h, 0) for h in range(1, 700)]
    # Asking out of order (the memo is walked back from checkpoints) answers the same.
    assert [forward.get_proposer(h, 0) for h in (650, 3, 300, 1, 699)] == [seq[649], seq[2], seq[299], seq[0], seq[698]]


@given(st.lists(st.integers(1, 30), min_size=1, max_size=8), st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_each_proposes_in_exact_proportion_to_weight(weights, windows):
    vs = ValidatorSet([(bytes([i + 1]) * 20, w) for i, w in enumerate(weights)])
    schedule = ProposerSchedule(vs)
    counts: dict[bytes, int] = {}
    for h in range(1, vs.total_weight * windows + 1):
        p = schedule.get_proposer(h, 0)
        counts[p] = counts.get(p, 0) + 1
    assert {v.address: v.weight * windows for v in vs.members} == counts


@given(st.lists(st.integers(1, 1000), min_size=2, max_size=8), st.integers(1, 200))
@settings(max_examples=30, deadline=None)
def test_priorities_stay_in_the_window(weights, steps):
    vs = ValidatorSet([(bytes([i + 1]) * 20, w) for i, w in enumerate(weights)])
    priorities, _ = compute_initial_priorities(vs)
    for _ in range(steps):
        priorities, _ = compute_incremented_priorities(vs, priorities, 1)
        assert max(priorities) - min(priorities) <= 2 * vs.total_weight + max(weights)
