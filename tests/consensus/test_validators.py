"""Validator set derivation, hashing, weighted quorums and epochs."""
import pytest
import rlp
from eth_utils import keccak
from hypothesis import given, settings, strategies as st

from consensus.validators import (
    InvalidValidatorSet,
    ValidatorSet,
    compute_validator_set,
    compute_validators_hash,
    get_epoch_start,
    is_epoch_boundary,
    is_one_third_plus,
    is_quorum,
)


def addr(i: int) -> bytes:
    return bytes([i]) * 20


def test_members_are_sorted_and_weighed():
    vs = ValidatorSet([(addr(3), 5), (addr(1), 2), (addr(2), 7)])
    assert vs.addresses == (addr(1), addr(2), addr(3))
    assert vs.total_weight == 14
    assert vs.get_weight(addr(2)) == 7 and vs.get_weight(addr(9)) == 0
    assert addr(3) in vs and addr(9) not in vs


@pytest.mark.parametrize(
    "members",
    [[], [(addr(1), 0)], [(addr(1), 1), (addr(1), 2)], [(b"\x01" * 19, 1)]],
)
def test_bad_sets_are_rejected(members):
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet(members)


def test_validators_hash_is_keccak_of_rlp_pairs():
    vs = ValidatorSet([(addr(2), 7), (addr(1), 2)])
    assert compute_validators_hash(vs) == keccak(rlp.encode([[addr(1), 2], [addr(2), 7]]))
    assert compute_validators_hash(vs) != compute_validators_hash(ValidatorSet([(addr(2), 8), (addr(1), 2)]))


def test_threshold_and_cap_with_address_tie_break():
    candidates = [(addr(5), 10), (addr(4), 10), (addr(3), 30), (addr(2), 9), (addr(1), 10)]
    vs = compute_validator_set(candidates, threshold=10, cap=3)
    # 30 first, then the 10s by address: addr(1), addr(4); addr(5) loses the tie; addr(2) is under threshold.
    assert set(vs.addresses) == {addr(3), addr(1), addr(4)}
    assert compute_validator_set(candidates, threshold=10, cap=10).addresses == (addr(1), addr(3), addr(4), addr(5))


@given(
    st.lists(st.tuples(st.integers(1, 200), st.integers(0, 50)), min_size=1, max_size=30, unique_by=lambda t: t[0]),
    st.integers(0, 50),
    st.integers(1, 10),
)
@settings(max_examples=60, deadline=None)
def test_derivation_ignores_candidate_order(candidates, threshold, cap):
    cands = [(addr(a), r) for a, r in candidates]
    eligible = [c for c in cands if c[1] >= threshold and c[1] > 0]
    if not eligible:
        with pytest.raises(InvalidValidatorSet):
            compute_validator_set(cands, threshold, cap)
        return
    a = compute_validator_set(cands, threshold, cap)
    b = compute_validator_set(list(reversed(cands)), threshold, cap)
    assert a == b
    assert len(a) == min(cap, len(eligible))
    # Nobody left out outranks anybody let in.
    chosen = set(a.addresses)
    worst_in = min((r, -int.from_bytes(x, "big")) for x, r in eligible if x in chosen)
    for x, r in eligible:
        if x not in chosen:
            assert (r, -int.from_bytes(x, "big")) < worst_in


def test_quorum_is_strictly_more_than_two_thirds():
    assert not is_quorum(2, 3)
    assert is_quorum(3, 4)
    assert not is_quorum(66, 99) and is_quorum(67, 99)
    assert not is_quorum(4, 6) and is_quorum(5, 6)


def test_one_third_plus_is_strict():
    assert not is_one_third_plus(1, 3)
    assert is_one_third_plus(2, 4)
    assert not is_one_third_plus(33, 99) and is_one_third_plus(34, 99)


def test_epoch_boundaries():
    assert [h for h in range(0, 25) if is_epoch_boundary(h, 10)] == [1, 11, 21]
    assert get_epoch_start(1, 10) == 1 and get_epoch_start(10, 10) == 1 and get_epoch_start(11, 10) == 11
    assert all(is_epoch_boundary(h, 1) for h in range(1, 5))
    with pytest.raises(InvalidValidatorSet):
        is_epoch_boundary(5, 0)
