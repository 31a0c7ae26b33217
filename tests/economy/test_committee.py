"""Deterministic weighted committees (consensus/committee.py)."""
import pytest
from eth_utils import keccak
from hypothesis import given, settings, strategies as st

from economy.committee import CommitteeError, compute_committee

candidates_st = st.lists(
    st.tuples(st.binary(min_size=20, max_size=20), st.integers(0, 10**6)), max_size=15, unique_by=lambda c: c[0]
)


@settings(max_examples=200, deadline=None)
@given(candidates_st, st.binary(min_size=32, max_size=32), st.integers(0, 20), st.randoms(use_true_random=False))
def test_committee_is_distinct_positive_weight_and_order_independent(candidates, seed, size, rnd):
    committee = compute_committee(candidates, seed, size)
    positive = {a: w for a, w in candidates if w > 0}
    assert len(committee) == min(size, len(positive))
    assert len({m.address for m in committee}) == len(committee)
    assert all(positive[m.address] == m.weight for m in committee)
    shuffled = list(candidates)
    rnd.shuffle(shuffled)
    assert compute_committee(shuffled, seed, size) == committee


def test_draws_follow_weight():
    heavy, light = b"\x01" * 20, b"\x02" * 20
    first = [compute_committee([(heavy, 9), (light, 1)], keccak(bytes([i, j])), 1)[0].address
             for i in range(20) for j in range(50)]
    share = first.count(heavy) / len(first)
    assert 0.86 < share < 0.94  # 0.9 expected over 1000 seeds


def test_bad_input_raises():
    with pytest.raises(CommitteeError):
        compute_committee([(b"\x01" * 20, 1)], b"s", -1)
    with pytest.raises(CommitteeError):
        compute_committee([(b"\x01" * 20, 1), (b"\x01" * 20, 2)], b"s", 1)
