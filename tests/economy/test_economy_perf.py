"""The economy's fast paths against the simple reference computations they replace.

`select_worker` (lazy comparison) against `min` over `compute_priority_key`;
`compute_encoded_snapshot_hash` against `compute_routing_snapshot_hash`;
`RoutingViewCache` against `get_routing_snapshot` on a real State on LevelDB,
across writes, snapshots and reverts; `replace_record` against rlp's `copy`.
"""
from __future__ import annotations

import rlp
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings, strategies as st

from chain.abc import BlockContext
from chain.db import LevelDB
from chain.state import State
from economy import (
    STANDING_SLOT, EconomyParams, JobRecord, JobStatus, RoutingViewCache, StandingRecord, WorkRules,
    get_routing_snapshot, get_standing, replace_record, write_record,
)
from chain.payloads import RegisterWorker
from genesis import ModelCard
from chain.abc import TxContext
from economy.router import (
    WorkerView, compute_encoded_snapshot_hash, compute_priority_key, compute_routing_snapshot_hash,
    get_eligible_workers, make_routing_snapshot, route, select_worker,
)

MODELS = [keccak(b"model-a"), keccak(b"model-b")]

views = st.builds(
    WorkerView,
    address=st.integers(0, 40).map(lambda i: keccak(bytes([i]))[:20]),
    model_sha256=st.sampled_from(MODELS),
    capacity=st.integers(0, 60),
    load=st.integers(0, 60),
    quality_ppm=st.integers(0, 1_000_000),
    recent_rewards=st.integers(0, 3),  # few values, so ties reach the hash draw
)


def unique_by_address(workers: list[WorkerView]) -> list[WorkerView]:
    return list({w.address: w for w in workers}.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(views, max_size=12).map(unique_by_address), st.binary(min_size=32, max_size=32),
       st.sampled_from(MODELS), st.integers(0, 1_000_000), st.integers(1, 20))
def test_select_worker_is_the_minimum_priority_key(workers, job_id, model, floor, cost):
    snapshot = make_routing_snapshot(workers, floor)
    eligible = get_eligible_workers(model, snapshot, cost)
    expected = min(eligible, key=lambda w: compute_priority_key(job_id, w)).address if eligible else None
    assert select_worker(job_id, model, workers, floor, cost) == expected
    assert select_worker(job_id, model, list(reversed(workers)), floor, cost) == expected
    assert route(job_id, model, snapshot, cost) == expected


@settings(max_examples=100, deadline=None)
@given(st.lists(views, max_size=12).map(unique_by_address), st.integers(0, 1_000_000))
def test_encoded_snapshot_hash_is_the_snapshot_hash(workers, floor):
    snapshot = make_routing_snapshot(workers, floor)
    assert compute_encoded_snapshot_hash([rlp.encode(w) for w in snapshot.workers], floor) == (
        compute_routing_snapshot_hash(snapshot))


def test_encoded_snapshot_hash_covers_long_lists():
    # Past 55 bytes RLP switches to long-form length prefixes, for the worker list and the whole snapshot.
    workers = [WorkerView(keccak(bytes([i]))[:20], MODELS[0], 10**9, 7, 999_999, 10**20) for i in range(200)]
    snapshot = make_routing_snapshot(workers, 1)
    assert compute_encoded_snapshot_hash([rlp.encode(w) for w in snapshot.workers], 1) == (
        compute_routing_snapshot_hash(snapshot))


operations = st.lists(st.tuples(
    st.sampled_from(["register", "standing", "snapshot", "revert", "block"]),
    st.integers(0, 7), st.integers(0, 50), st.integers(0, 1_000_000)), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations)
def test_routing_view_cache_matches_the_snapshot(tmp_path_factory, ops):
    """Whatever was written or reverted, the cached views are the views `get_routing_snapshot` builds."""
    params = EconomyParams(recent_rewards_half_life_blocks=3)
    db = LevelDB(tmp_path_factory.mktemp("views"))
    try:
        state = State(db)
        rules = WorkRules(params, models=[ModelCard(m, b"m", m, m, 2048) for m in MODELS])
        cache = RoutingViewCache(params)
        number, nonce, marks = 1, 0, []
        workers = [keccak(bytes([0xB0, i]))[:20] for i in range(8)]
        for op, index, amount, quality in ops:
            address = workers[index]
            block = BlockContext(number=number, timestamp_ms=number, proposer=workers[0], parent_hash=b"\0" * 32)
            if op == "register":
                nonce += 1
                rules.apply_register_worker(state, block, TxContext(address, nonce, b"\1" * 32, 0),
                                            RegisterWorker(MODELS[amount % 2], amount))
            elif op == "standing" and get_standing(state, address) is not None:
                write_record(state, address, STANDING_SLOT, replace_record(
                    get_standing(state, address), load=amount, quality_ppm=quality,
                    recent_rewards=amount * 10**15, recent_rewards_block=max(0, number - amount % 5)))
            elif op == "snapshot":
                marks.append(state.snapshot())
            elif op == "revert" and marks:
                state.revert(marks.pop())
            elif op == "block":
                number += 1 + amount % 4
            reference = get_routing_snapshot(state, params, number)
            assert [v.view for v in cache.get_views(state, number)] == list(reference.workers)
            assert [v.encoded for v in cache.get_views(state, number)] == [rlp.encode(w) for w in reference.workers]
            assert [tuple(v.terms) for v in cache.get_views(state, number)] == [tuple(w) for w in reference.workers]
    finally:
        db.close()


def test_replace_record_is_copy():
    job = JobRecord(
        requester=b"\1" * 20, model_sha256=MODELS[0], max_tokens=64, cost=3, created_block=5,
        status=JobStatus.ASSIGNED, worker=b"\2" * 20, snapshot_hash=b"\3" * 32, deadline_block=25, attempts=1,
        excluded=(b"\4" * 20,), result_tx=b"", result_block=0, output_hash=b"", output_tokens=0, audited=0,
        escalated=0, committee=(), attestations=(), score_ppm=0, deadline_ms=0)
    for changes in ({}, {"status": JobStatus.RESULTED, "output_tokens": 9}, {"excluded": (b"\5" * 20,)}):
        replaced = replace_record(job, **changes)
        assert replaced == job.copy(**changes)
        assert rlp.encode(replaced) == rlp.encode(job.copy(**changes))
    standing = StandingRecord(1, 2, 3, 4, 5, 6, 7, 8, 9)
    assert replace_record(standing, load=0) == standing.copy(load=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=2), st.binary(min_size=20, max_size=70)), max_size=40))
def test_encode_list_is_rlp(items):
    from economy import decode_list, encode_list

    raw = encode_list(items)
    assert raw == rlp.encode(items)
    assert decode_list(raw) == tuple(rlp.decode(raw)) == tuple(items)


def test_written_records_read_back_as_decoded(tmp_path):
    from economy import INFERENCE_REQUEST_ADDRESS, get_job

    db = LevelDB(tmp_path / "records")
    try:
        state = State(db)
        job = JobRecord(
            requester=b"\1" * 20, model_sha256=MODELS[0], max_tokens=64, cost=3, created_block=5,
            status=JobStatus.WAITING, worker=b"", snapshot_hash=b"", deadline_block=0, attempts=0, excluded=(),
            result_tx=b"", result_block=0, output_hash=b"", output_tokens=0, audited=0, escalated=0, committee=(),
            attestations=(), score_ppm=0, deadline_ms=0)
        write_record(state, INFERENCE_REQUEST_ADDRESS, b"\7" * 32, job)
        raw = state.get_storage(INFERENCE_REQUEST_ADDRESS, b"\7" * 32)
        assert get_job(state, b"\7" * 32) == rlp.decode(raw, sedes=JobRecord) == job
    finally:
        db.close()


def record_values(cls):
    """Field values for `cls` that are mostly valid, sometimes not (wrong lengths, bools, negatives)."""
    from rlp.sedes import BigEndianInt, Binary, CountableList

    def for_sedes(sedes):
        if isinstance(sedes, BigEndianInt):
            return st.one_of(st.integers(0, 2**80), st.integers(0, 200), st.sampled_from([True, -1]))
        if isinstance(sedes, Binary):
            valid = st.binary(min_size=sedes.min_length, max_size=min(sedes.max_length, 40))
            return st.one_of(valid, valid, st.binary(max_size=2), st.binary(min_size=33, max_size=60))
        if isinstance(sedes, CountableList):
            element = sedes.element_sedes
            inner = record_values(element) if isinstance(element, type) else for_sedes(element)
            return st.lists(inner, max_size=3).map(tuple)
        raise AssertionError(sedes)

    return st.tuples(*[for_sedes(sedes) for _, sedes in cls._meta.fields]).map(lambda values: cls(*values))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["JobRecord", "TaskRecord", "StandingRecord", "WorkerRecord", "Claim"]).flatmap(
    lambda name: record_values(getattr(__import__("economy", fromlist=[name]), name))))
def test_plain_record_encoding_is_rlp(record):
    from economy import try_encode_record

    encoded = try_encode_record(record)
    try:
        expected = rlp.encode(record)
    except rlp.exceptions.SerializationError:
        assert encoded is None  # left to rlp, which raises
        return
    assert encoded is None or encoded == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=30), st.data())
def test_id_lists_encode_and_shrink_as_rlp(ids, data):
    from economy import compute_without, encode_list

    assert encode_list(ids) == rlp.encode(ids)
    item = data.draw(st.sampled_from(ids)) if ids else b"\0" * 32
    assert compute_without(tuple(ids), item) == tuple(i for i in ids if i != item)
    assert compute_without(tuple(ids) + (item,), item) == tuple(i for i in ids if i != item)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2**70), max_size=80), st.binary(max_size=25), st.integers(0, 2**64))
def test_output_hash_and_work_id_are_keccak_of_rlp(tokens, sender, nonce):
    from chain.payloads import compute_work_id
    from economy import compute_output_hash

    assert compute_output_hash(tokens) == keccak(rlp.encode(tokens))
    assert compute_work_id(sender, nonce) == keccak(rlp.encode([sender, nonce]))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["JobRecord", "TaskRecord", "StandingRecord", "WorkerRecord", "Claim"]).flatmap(
    lambda name: record_values(getattr(__import__("economy", fromlist=[name]), name))), st.data())
def test_make_record_and_replace_record_are_rlps_constructor(record, data):
    from economy import try_encode_record, make_record

    cls = type(record)
    values = [list(v) if isinstance(v, tuple) and data.draw(st.booleans()) else v for v in record]
    made = make_record(cls, values)
    assert made == cls(*values) == record
    assert tuple(made) == tuple(record)
    assert all(type(a) is type(b) for a, b in zip(made, record))  # lists became tuples, as rlp makes them
    # A replaced record never carries the encoding cached on the record it was made from.
    try_encode_record(record)
    name = data.draw(st.sampled_from(cls._meta.field_names))
    other = data.draw(record_values(cls))
    changed = replace_record(record, **{name: getattr(other, name)})
    assert changed == record.copy(**{name: getattr(other, name)})
    try:
        expected = rlp.encode(changed)
    except rlp.exceptions.SerializationError:
        return
    assert (try_encode_record(changed) or expected) == expected
