"""Properties of the whoever-needs-most router (consensus/router.py)."""
from fractions import Fraction

import pytest
from eth_utils import keccak
from hypothesis import given, settings, strategies as st

from economy.router import (
    InvalidRoutingInput,
    RoutingSnapshot,
    WorkerView,
    compute_routing_snapshot_hash,
    is_assignment_valid,
    make_routing_snapshot,
    route,
)

MODEL_A = keccak(b"model-a")
MODEL_B = keccak(b"model-b")

workers_st = st.lists(
    st.builds(
        WorkerView,
        address=st.binary(min_size=20, max_size=20),
        model_sha256=st.sampled_from([MODEL_A, MODEL_B]),
        capacity=st.integers(0, 200),
        load=st.integers(0, 200),
        quality_ppm=st.integers(0, 1_000_000),
        recent_rewards=st.integers(0, 5),
    ),
    max_size=12,
    unique_by=lambda w: w.address,
)
job_st = st.binary(min_size=32, max_size=32)
floor_st = st.integers(0, 1_000_000)
cost_st = st.integers(1, 20)
PROPS = settings(max_examples=300, deadline=None)


def by_address(snapshot, address):
    return next(w for w in snapshot.workers if w.address == address)


@PROPS
@given(workers_st, job_st, floor_st, cost_st)
def test_the_seventy_percent_cap_is_never_broken(workers, job_id, floor, cost):
    snapshot = RoutingSnapshot(workers=workers, quality_floor_ppm=floor)
    chosen = route(job_id, MODEL_A, snapshot, cost)
    if chosen is not None:
        worker = by_address(snapshot, chosen)
        assert Fraction(worker.load + cost, worker.capacity) <= Fraction(7, 10)
        assert worker.model_sha256 == MODEL_A
        assert worker.quality_ppm >= floor


@PROPS
@given(workers_st, job_st, floor_st, cost_st)
def test_the_least_utilised_eligible_worker_is_chosen(workers, job_id, floor, cost):
    snapshot = RoutingSnapshot(workers=workers, quality_floor_ppm=floor)
    chosen = route(job_id, MODEL_A, snapshot, cost)
    eligible = [
        w for w in workers
        if w.model_sha256 == MODEL_A and w.quality_ppm >= floor and w.capacity > 0
        and 10 * (w.load + cost) <= 7 * w.capacity
    ]
    if not eligible:
        assert chosen is None
        return
    best = min(Fraction(w.load, w.capacity) for w in eligible)
    tied = [w for w in eligible if Fraction(w.load, w.capacity) == best]
    fewest = min(w.recent_rewards for w in tied)
    tied = [w for w in tied if w.recent_rewards == fewest]
    expected = min(tied, key=lambda w: keccak(job_id + w.address)).address
    assert chosen == expected


@PROPS
@given(workers_st, job_st, floor_st, cost_st, st.randoms(use_true_random=False))
def test_every_node_computes_the_same_answer_whatever_the_worker_order(workers, job_id, floor, cost, rnd):
    shuffled = list(workers)
    rnd.shuffle(shuffled)
    a = RoutingSnapshot(workers=workers, quality_floor_ppm=floor)
    b = RoutingSnapshot(workers=shuffled, quality_floor_ppm=floor)
    assert route(job_id, MODEL_A, a, cost) == route(job_id, MODEL_A, b, cost)
    assert compute_routing_snapshot_hash(a) == compute_routing_snapshot_hash(b)


@PROPS
@given(workers_st, job_st, cost_st)
def test_nobody_eligible_means_the_job_waits(workers, job_id, cost):
    # Push every worker to the edge of its schedulable share: no job fits any more.
    full = [w.copy(load=(7 * w.capacity) // 10) for w in workers]
    assert route(job_id, MODEL_A, RoutingSnapshot(workers=full, quality_floor_ppm=0), cost) is None
    # Nobody serving the model, or nobody good enough, also means waiting.
    other_model = [w.copy(model_sha256=MODEL_B) for w in workers]
    assert route(job_id, MODEL_A, RoutingSnapshot(workers=other_model, quality_floor_ppm=0), cost) is None
    poor = [w.copy(quality_ppm=0) for w in workers]
    assert route(job_id, MODEL_A, RoutingSnapshot(workers=poor, quality_floor_ppm=1), cost) is None


@PROPS
@given(workers_st, job_st, floor_st, cost_st, st.binary(min_size=20, max_size=20))
def test_only_the_routed_worker_is_a_valid_assignment(workers, job_id, floor, cost, other):
    snapshot = RoutingSnapshot(workers=workers, quality_floor_ppm=floor)
    chosen = route(job_id, MODEL_A, snapshot, cost)
    assert is_assignment_valid(job_id, MODEL_A, snapshot, chosen, cost)
    if other != chosen:
        assert not is_assignment_valid(job_id, MODEL_A, snapshot, other, cost)


def make_worker(i, capacity=100, load=0, quality=900_000, rewards=0, model=MODEL_A):
    return WorkerView(address=bytes([i]) * 20, model_sha256=model, capacity=capacity, load=load,
                      quality_ppm=quality, recent_rewards=rewards)


def test_a_lonely_small_worker_beats_a_busy_big_one():
    busy_big = make_worker(1, capacity=1000, load=300)  # 30% used
    idle_small = make_worker(2, capacity=10, load=1)  # 10% used
    snapshot = make_routing_snapshot([busy_big, idle_small], 0)
    assert route(keccak(b"job"), MODEL_A, snapshot) == idle_small.address


def test_the_seventy_percent_boundary_is_inclusive_and_exact():
    worker = make_worker(1, capacity=10, load=6)
    snapshot = make_routing_snapshot([worker], 0)
    assert route(keccak(b"j"), MODEL_A, snapshot, cost=1) == worker.address  # 7/10 exactly
    assert route(keccak(b"j"), MODEL_A, snapshot, cost=2) is None  # 8/10 would be sacred


def test_ties_go_to_fewest_recent_rewards_then_the_job_hash():
    rich = make_worker(1, rewards=10)
    poor = make_worker(2, rewards=3)
    snapshot = make_routing_snapshot([rich, poor], 0)
    assert route(keccak(b"j"), MODEL_A, snapshot) == poor.address
    twins = make_routing_snapshot([make_worker(1), make_worker(2)], 0)
    winners = {route(keccak(bytes([n])), MODEL_A, twins) for n in range(32)}
    assert winners == {bytes([1]) * 20, bytes([2]) * 20}  # the hash spreads ties over both


def test_bad_input_raises_typed_errors():
    with pytest.raises(InvalidRoutingInput):
        make_routing_snapshot([make_worker(1), make_worker(1, load=5)], 0)
    with pytest.raises(InvalidRoutingInput):
        route(b"short", MODEL_A, make_routing_snapshot([make_worker(1)], 0))
    with pytest.raises(InvalidRoutingInput):
        route(keccak(b"j"), MODEL_A, make_routing_snapshot([make_worker(1)], 0), cost=0)
    with pytest.raises(InvalidRoutingInput):
        make_routing_snapshot([make_worker(1, quality=1_000_001)], 0)
