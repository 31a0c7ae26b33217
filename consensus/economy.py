"""The recognition economy: jobs, audits, attestations, annotations and rewards, on chain and pure.

This module owns `WorkRules`, the `chain.abc.WorkRulesAPI` that the state
transition hands every decoded work payload to, and the on-chain records it keeps:

- per worker account: slot 1 the `WorkerRecord` (model, declared capacity),
  slot 2 the `StandingRecord` (quality and reliability averages, scheduled load,
  recent rewards, audit history), both RLP;
- in the storage of the inference-request address: the `JobRecord`s keyed by
  job id, and the list of open jobs;
- in the storage of the annotation-task address: the `TaskRecord`s keyed by
  task id, and the list of open tasks;
- in the storage of the register-worker address: the registry of workers;
- in the storage of the inference-result address: the reward claims of the
  block being built (cleared by `finalize_block`);
- in the storage of the attestation address: the index of accounts that have
  reached the validator threshold (committee candidates).

Balances move only through `chain.ledger` (`issue`, `credit_reward`), so the
ledger rules hold whatever is decided here. Nothing here reads a clock or a
random source: time is the block number, randomness is the parent hash.

The life of an inference job:
request -> `route` at inclusion over the state's workers (no eligible worker:
the job waits and is retried in every `finalize_block`, largest offering first)
-> a result from the assigned worker by the deadline (late or missing:
reliability drops, the job is reassigned to someone else) -> in the next block,
the audit decision (`inference.audit`), seeded by the hash of the block that
holds the result, so the worker committed to its output before the seed
existed -> unaudited: accepted on standing and paid at the worker's quality
average; audited: a committee drawn by recognition from the same seed ->
attestations from members -> once more than 2/3 of the committee's weight has
attested and one verdict carries more than half of it, the job's score is the
weighted median. A first verdict below the policy's escalation score seats more
members (`compute_escalation_committee_size`): no single auditor convicts. At or
above the acceptance threshold the worker is paid for tokens x score; below it
the worker gets nothing and its quality drops. Attesters within the tolerance of
the median are paid, outliers are not. A committee that never decides, or no
independent committee at all, leaves the job unverified: nobody is paid.
Attestations after the decision are refused.

Rewards: every block issues `issuance_per_block` into the pool and pays out at
most that issuance plus `pool_drip_ppm` of the pool, over the block's claims.
A claim is work units x `wei_per_unit`; when the claims exceed the budget they
are scaled down pro rata. What is not paid stays in the pool.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping, NamedTuple

import rlp
from rlp.codec import length_prefix
from rlp.sedes import BigEndianInt, Binary, CountableList, big_endian_int
from rlp.sedes.serializable import make_immutable

from chain import ledger
from chain.abc import BlockContext, StateAPI, TxContext, WorkRulesAPI
from chain.exceptions import WorkRejected
from chain.ledger import get_recognition
from chain.payloads import compute_work_id, encode_rlp_uint, keccak
from chain.transition import get_job_offering
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS as POOL, is_system_address
from consensus.committee import compute_committee
from consensus.router import (
    MAX_QUALITY_PPM,
    InvalidRoutingInput,
    WorkerView,
    compute_encoded_snapshot_hash,
    make_routing_snapshot,
    select_worker,
    validate_job,
)
from inference.audit import (
    ACCEPTANCE_THRESHOLD_PPM,
    AuditPolicy,
    WorkerHistory,
    apply_audit_outcome,
    compute_audit_decision,
    compute_escalation_committee_size,
)

PPM = 1_000_000


POOL_ADDRESS = POOL
REGISTER_WORKER_ADDRESS = ADDRESS_BY_KIND["register_worker"]
INFERENCE_REQUEST_ADDRESS = ADDRESS_BY_KIND["inference_request"]
INFERENCE_RESULT_ADDRESS = ADDRESS_BY_KIND["inference_result"]
ATTESTATION_ADDRESS = ADDRESS_BY_KIND["attestation"]
ANNOTATION_TASK_ADDRESS = ADDRESS_BY_KIND["annotation_task"]

# Slot 0 of an account is its recognition (chain.ledger's); slots 1 and 2 are the economy's.
WORKER_SLOT = (1).to_bytes(32, "big")
STANDING_SLOT = (2).to_bytes(32, "big")
# Named slots of the system tables; keccak of a label cannot collide with a keccak-derived job/task id.
WORKER_REGISTRY_SLOT = keccak(b"magicoin:workers")
OPEN_JOBS_SLOT = keccak(b"magicoin:open-jobs")
OPEN_TASKS_SLOT = keccak(b"magicoin:open-tasks")
CLAIMS_SLOT = keccak(b"magicoin:claims")
RECOGNISED_SLOT = keccak(b"magicoin:recognised")

address_sedes = Binary.fixed_length(20)
hash32 = Binary.fixed_length(32)
address_or_empty = Binary(min_length=0, max_length=20)


# --- parameters ---------------------------------------------------------------------------


class EconomyParams(NamedTuple):
    """The economy's rules in numbers; a chain takes every one from its `genesis.Params`.

    The defaults equal `genesis.DEFAULT_PARAMS` (tests/genesis pins that), so
    they serve tests and simulations; a node never runs on them, since a rule a
    code change could alter without changing the genesis hash would fork the chain.
    """

    issuance_per_block: int = 2 * 10**18
    pool_drip_ppm: int = 10_000
    validator_threshold: int = 10**18
    validator_cap: int = 100
    committee_size: int = 3
    attestation_tolerance_ppm: int = 50_000
    quality_floor_ppm: int = 500_000
    result_deadline_blocks: int = 20
    annotation_deadline_blocks: int = 50
    # The economy's own constants (genesis params of the same names).
    acceptance_threshold_ppm: int = ACCEPTANCE_THRESHOLD_PPM  # below this an audited job failed (the verifier's)
    initial_quality_ppm: int = 800_000  # a new worker starts above the floor so it can earn its standing
    initial_reliability_ppm: int = PPM
    average_divisor: int = 8  # running averages move 1/8 of the way to each new observation
    attestation_window_blocks: int = 20  # blocks the committee has, after the result, to reach its quorum
    max_assignment_attempts: int = 3  # assignments (first + reassignments) before a job expires
    job_target_seconds: int = 30  # a job occupies ceil(max_tokens / this) tokens/s of its worker's capacity
    wei_per_unit: int = 10**9  # a unit is one token x one ppm of score: 1e15 wei for a perfect token
    attester_share_ppm: int = 100_000  # an agreeing attester's claim, as a share of the job's full claim
    annotation_units: int = 16 * PPM  # an agreeing annotator's claim: as much as 16 perfect tokens
    annotation_weight_floor: int = 10**15  # see compute_annotation_weight
    recent_rewards_half_life_blocks: int = 100

    @classmethod
    def from_genesis(cls, params: object, **overrides: int) -> "EconomyParams":
        """Take every same-named field of a `genesis.Params`, then the overrides."""
        values = {name: getattr(params, name) for name in cls._fields if hasattr(params, name)}
        values.update(overrides)
        return cls(**values)


# --- records ------------------------------------------------------------------------------


class WorkerRecord(rlp.Serializable):
    """What `register_worker` declares: the model served and the capacity (tokens/s)."""

    fields = [
        ("model_sha256", hash32),
        ("capacity", big_endian_int),
        ("registered_at", big_endian_int),  # block number of the latest registration
    ]


class StandingRecord(rlp.Serializable):
    fields = [
        ("quality_ppm", big_endian_int),
        ("reliability_ppm", big_endian_int),
        ("load", big_endian_int),  # tokens/s of capacity taken by jobs assigned and not yet answered
        ("recent_rewards", big_endian_int),  # wei, halved every half-life since recent_rewards_block
        ("recent_rewards_block", big_endian_int),
        ("jobs_done", big_endian_int),
        ("jobs_failed_audit", big_endian_int),
        ("jobs_since_caught", big_endian_int),
        ("jobs_late", big_endian_int),
    ]


class CommitteeSeat(rlp.Serializable):
    fields = [("address", address_sedes), ("weight", big_endian_int)]


class Score(rlp.Serializable):
    fields = [("address", address_sedes), ("score_ppm", big_endian_int)]


class JobStatus:
    WAITING = 0  # nobody eligible yet; retried every block
    ASSIGNED = 1  # a worker has until deadline_block to answer
    RESULTED = 2  # answered; the audit decision waits for the hash of the block holding the result
    ATTESTING = 3  # audited; the committee is scoring it
    ACCEPTED = 4  # paid
    FAILED_AUDIT = 5  # scored below the acceptance threshold; nothing paid
    UNVERIFIED = 6  # no committee, or it never reached its quorum; nothing paid
    EXPIRED = 7  # never answered in time by anyone; nothing paid

    OPEN = (WAITING, ASSIGNED, RESULTED, ATTESTING)


class JobRecord(rlp.Serializable):
    fields = [
        ("requester", address_sedes),
        ("model_sha256", hash32),
        ("max_tokens", big_endian_int),
        ("cost", big_endian_int),
        ("created_block", big_endian_int),
        ("status", big_endian_int),
        ("worker", address_or_empty),
        ("snapshot_hash", Binary(min_length=0, max_length=32)),
        ("deadline_block", big_endian_int),  # result deadline while ASSIGNED, attestation deadline while ATTESTING
        ("attempts", big_endian_int),
        ("excluded", CountableList(address_sedes)),  # workers that missed a deadline on this job
        ("result_tx", Binary(min_length=0, max_length=32)),
        ("result_block", big_endian_int),
        ("output_hash", Binary(min_length=0, max_length=32)),
        ("output_tokens", big_endian_int),
        ("audited", big_endian_int),
        ("escalated", big_endian_int),  # the first verdict rejected it, so more members were drawn
        ("committee", CountableList(CommitteeSeat)),
        ("attestations", CountableList(Score)),
        ("score_ppm", big_endian_int),
    ]


class TaskStatus:
    OPEN = 0
    RECOGNISED = 1  # a weighted majority agreed; agreeing annotators paid
    NO_MAJORITY = 2
    EXPIRED = 3  # fewer than k annotations by the deadline


class Label(rlp.Serializable):
    fields = [("address", address_sedes), ("label_index", big_endian_int), ("weight", big_endian_int)]


class TaskRecord(rlp.Serializable):
    fields = [
        ("requester", address_sedes),
        ("content_hash", hash32),
        ("labels", big_endian_int),  # how many labels the task offers
        ("k", big_endian_int),
        ("created_block", big_endian_int),
        ("deadline_block", big_endian_int),
        ("status", big_endian_int),
        ("annotations", CountableList(Label)),
        ("label_index", big_endian_int),  # the recognised label, when RECOGNISED
    ]


class Claim(rlp.Serializable):
    """A payout owed at the end of the block: `units` of recognised work by `address`."""

    fields = [("address", address_sedes), ("units", big_endian_int)]


# --- storage access -----------------------------------------------------------------------


# Decoded values by their encoding. Records and lists are frozen values named by their bytes, so a
# value cached under its exact encoding is what decoding those bytes gives, whatever state, snapshot or
# revert the bytes are read under. Writes put what they encode here too, so reading back what this block
# wrote decodes nothing: rlp's Serializable decoding was most of the economy's cost.
DECODED_CACHE_LIMIT = 1 << 16
_decoded_records: dict[tuple[type, bytes], rlp.Serializable] = {}
_decoded_lists: dict[bytes, tuple[bytes, ...]] = {}


def _remember(cache: dict, key, value) -> None:
    if len(cache) >= DECODED_CACHE_LIMIT:
        cache.clear()  # simpler than LRU bookkeeping; what the next block needs is decoded again once
    cache[key] = value


def decode_record(sedes: type[rlp.Serializable], raw: bytes) -> rlp.Serializable:
    record = _decoded_records.get((sedes, raw))
    if record is None:
        record = rlp.decode(raw, sedes=sedes)
        _remember(_decoded_records, (sedes, raw), record)
    return record


# How `encode_record` writes each field: rlp's serialization reduced to the three sedes records use.
_UINT, _BYTES, _RECORDS, _STRINGS = range(4)
_encoding_plans: dict[type, tuple | None] = {}


def _get_encoding_plan(cls: type) -> tuple | None:
    """(attribute, kind, sedes) per field, or None when a field's sedes is not one the plain encoder knows."""
    if cls not in _encoding_plans:
        plan = []
        for attr, (_, sedes) in zip(cls._meta.field_attrs, cls._meta.fields):
            if isinstance(sedes, BigEndianInt) and sedes.length is None:
                plan.append((attr, _UINT, sedes))
            elif isinstance(sedes, Binary):
                plan.append((attr, _BYTES, sedes))
            elif isinstance(sedes, CountableList) and isinstance(sedes.element_sedes, type) and issubclass(
                    sedes.element_sedes, rlp.Serializable):
                plan.append((attr, _RECORDS, sedes))
            elif isinstance(sedes, CountableList) and isinstance(sedes.element_sedes, Binary):
                plan.append((attr, _STRINGS, sedes))
            else:
                plan = None
                break
        _encoding_plans[cls] = None if plan is None else tuple(plan)
    return _encoding_plans[cls]


def _encode_string(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return length_prefix(len(value), 0x80) + value


_SMALL_UINTS = (b"\x80",) + tuple(bytes((value,)) for value in range(1, 0x80))  # rlp of 0..127


def _encode_plain(record: rlp.Serializable) -> bytes | None:
    """rlp.encode(record) for values rlp would serialize without complaint, else None.

    rlp's generic serialization dispatches on types field by field and was the
    economy's largest remaining cost. Anything out of the ordinary (a bool or
    negative integer, a wrong length, a list too long, an unknown sedes) returns
    None so that rlp itself encodes it or raises its error. `test_economy_perf`
    checks the bytes against rlp's.
    """
    if record._cached_rlp:
        # rlp's own per-object cache: nested seats, scores and labels are carried unchanged from record to record.
        return record._cached_rlp
    plan = _get_encoding_plan(type(record))
    if plan is None:
        return None
    parts = []
    fields = record.__dict__
    for attr, kind, sedes in plan:
        value = fields[attr]
        if kind == _UINT:
            if type(value) is not int or value < 0:
                return None
            if value < 0x80:
                parts.append(_SMALL_UINTS[value])
            else:
                length = (value.bit_length() + 7) >> 3
                parts.append(length_prefix(length, 0x80) + value.to_bytes(length, "big"))
        elif kind == _BYTES:
            if type(value) is not bytes or not sedes.is_valid_length(len(value)):
                return None
            parts.append(_encode_string(value))
        else:
            if sedes.max_length is not None and len(value) > sedes.max_length:
                return None
            items = []
            for item in value:
                if kind == _RECORDS:
                    encoded = _encode_plain(item) if type(item) is sedes.element_sedes else None
                elif type(item) is bytes and sedes.element_sedes.is_valid_length(len(item)):
                    encoded = _encode_string(item)
                else:
                    encoded = None
                if encoded is None:
                    return None
                items.append(encoded)
            payload = b"".join(items)
            parts.append(length_prefix(len(payload), 0xC0) + payload)
    payload = b"".join(parts)
    record._cached_rlp = length_prefix(len(payload), 0xC0) + payload
    return record._cached_rlp


def encode_record(record: rlp.Serializable) -> bytes:
    raw = _encode_plain(record)
    if raw is None:
        raw = rlp.encode(record)
    _remember(_decoded_records, (type(record), raw), record)
    return raw


def decode_list(raw: bytes) -> tuple[bytes, ...]:
    """A stored RLP list of byte strings."""
    items = _decoded_lists.get(raw)
    if items is None:
        items = tuple(rlp.decode(raw))
        _remember(_decoded_lists, raw, items)
    return items


HASH_PREFIX = bytes((0x80 + 32,))  # RLP's prefix of a 32-byte string


def compute_without(items: tuple[bytes, ...], item: bytes) -> tuple[bytes, ...]:
    """`items` without any occurrence of `item` (ids are unique in the open lists, so one cut usually does)."""
    if items.count(item) == 1:
        index = items.index(item)
        return items[:index] + items[index + 1:]
    return tuple(i for i in items if i != item)


def encode_list(items: Iterable[bytes]) -> bytes:
    """rlp.encode(list(items)) for a list of byte strings, without rlp's per-item type dispatch."""
    items = tuple(items)
    if items and set(map(type, items)) == {bytes} and set(map(len, items)) == {32}:
        # The open job and task lists: all ids, each encoded as 0xa0 + 32 bytes, joined at C speed.
        payload = HASH_PREFIX + HASH_PREFIX.join(items)
    else:
        payload = b"".join(
            item if len(item) == 1 and item[0] < 0x80 else length_prefix(len(item), 0x80) + item for item in items)
    raw = length_prefix(len(payload), 0xC0) + payload
    _remember(_decoded_lists, raw, items)
    return raw


def make_record(cls: type[rlp.Serializable], values) -> rlp.Serializable:
    """`cls(*values)` without rlp's constructor, for values that are immutable already.

    rlp's `__init__` only counts the arguments and turns lists into tuples before
    setting one attribute per field; building its instance dictionary directly
    gives the same object at a fraction of the cost (`test_economy_perf` compares
    them). Lists are still made tuples, as rlp would.
    """
    attrs = cls._meta.field_attrs
    values = tuple(values)
    if len(values) != len(attrs):
        raise TypeError(f"{cls.__name__} takes {len(attrs)} fields, got {len(values)}")
    record = cls.__new__(cls)
    record.__dict__.update(zip(attrs, [make_immutable(v) if type(v) is list else v for v in values]))
    return record


_field_attrs_by_name: dict[type, dict[str, str]] = {}


def replace_record(record: rlp.Serializable, **changes: object) -> rlp.Serializable:
    """`record.copy(**changes)` without its deep copies: record fields are immutable already.

    rlp's `copy` deep-copies every unchanged field and merges keyword arguments
    field by field, which made it one of the economy's largest costs.
    """
    cls = type(record)
    by_name = _field_attrs_by_name.get(cls)
    if by_name is None:
        by_name = _field_attrs_by_name[cls] = dict(zip(cls._meta.field_names, cls._meta.field_attrs))
    fields = record.__dict__
    # Only the field attributes: rlp's per-object caches (_cached_rlp, _hash_cache) describe the old values.
    values = {attr: fields[attr] for attr in by_name.values()}
    for name, value in changes.items():
        attr = by_name.get(name)
        assert attr is not None, f"unknown field {name} for {cls.__name__}"
        values[attr] = make_immutable(value) if type(value) is list else value
    updated = cls.__new__(cls)
    updated.__dict__.update(values)
    return updated


def read_record(state: StateAPI, address: bytes, slot: bytes, sedes: type[rlp.Serializable]):
    raw = state.get_storage(address, slot)
    return decode_record(sedes, raw) if raw else None


def write_record(state: StateAPI, address: bytes, slot: bytes, record: rlp.Serializable | None) -> None:
    state.set_storage(address, slot, b"" if record is None else encode_record(record))


def get_worker_record(state: StateAPI, address: bytes) -> WorkerRecord | None:
    return read_record(state, address, WORKER_SLOT, WorkerRecord)


def set_worker_record(state: StateAPI, address: bytes, record: WorkerRecord) -> None:
    write_record(state, address, WORKER_SLOT, record)


def get_standing(state: StateAPI, address: bytes) -> StandingRecord | None:
    return read_record(state, address, STANDING_SLOT, StandingRecord)


def get_job(state: StateAPI, job_id: bytes) -> JobRecord | None:
    return read_record(state, INFERENCE_REQUEST_ADDRESS, job_id, JobRecord)


def get_task(state: StateAPI, task_id: bytes) -> TaskRecord | None:
    return read_record(state, ANNOTATION_TASK_ADDRESS, task_id, TaskRecord)


def get_list(state: StateAPI, address: bytes, slot: bytes) -> tuple[bytes, ...]:
    """A stored RLP list of byte strings (addresses or ids); () when absent."""
    raw = state.get_storage(address, slot)
    return decode_list(raw) if raw else ()


def set_list(state: StateAPI, address: bytes, slot: bytes, items: Iterable[bytes]) -> None:
    """Store a list of byte strings; an empty list deletes the slot."""
    items = list(items)
    state.set_storage(address, slot, encode_list(items) if items else b"")


def get_registered_workers(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT)


def get_open_jobs(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT)


def get_open_tasks(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT)


def get_claim_count(state: StateAPI) -> int:
    return int.from_bytes(state.get_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT), "big")


def compute_claim_slot(index: int) -> bytes:
    return keccak(CLAIMS_SLOT + index.to_bytes(8, "big"))


def get_claims(state: StateAPI) -> tuple[Claim, ...]:
    """This block's claims, in the order they were made (one slot each, so adding one is O(1))."""
    return tuple(read_record(state, INFERENCE_RESULT_ADDRESS, compute_claim_slot(i), Claim)
                 for i in range(get_claim_count(state)))


def add_claim(state: StateAPI, address: bytes, units: int) -> None:
    count = get_claim_count(state)
    write_record(state, INFERENCE_RESULT_ADDRESS, compute_claim_slot(count), make_record(Claim, (address, units)))
    state.set_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT, (count + 1).to_bytes(8, "big"))


def clear_claims(state: StateAPI) -> None:
    for index in range(get_claim_count(state)):
        state.set_storage(INFERENCE_RESULT_ADDRESS, compute_claim_slot(index), b"")
    state.set_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT, b"")


# --- pure rules ---------------------------------------------------------------------------


def compute_output_hash(tokens: Iterable[int]) -> bytes:
    """keccak(rlp(tokens)), with rlp's generic encoder skipped for plain non-negative ints."""
    tokens = list(tokens)
    if all(type(token) is int and token >= 0 for token in tokens):
        payload = b"".join(map(encode_rlp_uint, tokens))
        return keccak(length_prefix(len(payload), 0xC0) + payload)
    return keccak(rlp.encode(tokens))


def compute_job_cost(max_tokens: int, params: EconomyParams) -> int:
    """The throughput (tokens/s) a job needs to be answered within the target time."""
    return -(-max_tokens // params.job_target_seconds)


def compute_running_average(current: int, observation: int, divisor: int) -> int:
    """Move 1/divisor of the way to the observation (integer; floor towards the old value is fine)."""
    return current + (observation - current) // divisor


def compute_decayed(amount: int, since_block: int, now_block: int, half_life: int) -> int:
    """Halve once per half-life boundary crossed since `since_block` (boundaries are fixed, so frequent
    updates cannot keep postponing the decay)."""
    return amount >> max(0, now_block // half_life - since_block // half_life)


def compute_weighted_median(scores: Iterable[tuple[int, int]]) -> int:
    """The lower weighted median of (score, weight) pairs: the smallest score with half the weight at or below it."""
    ordered = sorted(scores)
    total = sum(w for _, w in ordered)
    assert total > 0, "a median needs positive weight"
    cumulative = 0
    for score, weight in ordered:
        cumulative += weight
        if 2 * cumulative >= total:
            return score
    raise AssertionError("unreachable: the cumulative weight reaches the total")


def is_committee_quorum(attested_weight: int, committee_weight: int) -> bool:
    return 3 * attested_weight > 2 * committee_weight


def is_committee_decided(attestations: Iterable, weights: Mapping[bytes, int], threshold_ppm: int) -> bool:
    """More than 2/3 of the committee's weight has attested, and one verdict carries more than half of it.

    The second condition keeps a split committee from deciding on a tie (one
    liar against one honest member of three): it waits for the rest, and the
    score (the weighted median) then lies on the side of that majority.
    """
    total = sum(weights.values())
    attested = passing = 0
    for attestation in attestations:
        attested += weights[attestation.address]
        if attestation.score_ppm >= threshold_ppm:
            passing += weights[attestation.address]
    failing = attested - passing
    return is_committee_quorum(attested, total) and (2 * passing > total or 2 * failing > total)


def is_within_tolerance(score: int, median: int, tolerance_ppm: int) -> bool:
    return abs(score - median) <= tolerance_ppm


def compute_annotation_weight(recognition: int, params: EconomyParams) -> int:
    """An annotator's vote weight: its recognition, but never below a floor.

    The floor lets accounts with no recognition yet (new people, new nodes)
    still count, so they can earn their first recognition by annotating; it is
    small (0.001 MUAGIC by default) so a recognised account outweighs many new ones.
    """
    return max(recognition, params.annotation_weight_floor)


def compute_majority_label(labels: Iterable[tuple[int, int]]) -> int | None:
    """The label carrying more than half of the total weight of (label_index, weight) votes, else None."""
    weights: dict[int, int] = {}
    for label_index, weight in labels:
        weights[label_index] = weights.get(label_index, 0) + weight
    total = sum(weights.values())
    for label_index in sorted(weights):
        if 2 * weights[label_index] > total:
            return label_index
    return None


def compute_block_budget(pool_before_issuance: int, params: EconomyParams) -> int:
    """Issuance plus the pool's drip: the most a block may pay out."""
    return params.issuance_per_block + pool_before_issuance * params.pool_drip_ppm // PPM


def compute_payouts(claims: Iterable[Claim], budget: int, wei_per_unit: int) -> list[tuple[bytes, int]]:
    """Each claim at its full price if the budget allows, else every claim scaled pro rata (floored)."""
    claims = tuple(claims)
    total_units = sum(c.units for c in claims)
    if total_units * wei_per_unit <= budget:
        return [(c.address, c.units * wei_per_unit) for c in claims]
    return [(c.address, c.units * budget // total_units) for c in claims]


def get_worker_view(state: StateAPI, address: bytes, params: EconomyParams, block_number: int,
                    pending_load: int = 0) -> WorkerView:
    worker = get_worker_record(state, address)
    standing = get_standing(state, address)
    assert worker is not None and standing is not None, "registered workers have both records"
    return make_record(WorkerView, (
        address, worker.model_sha256, worker.capacity, standing.load + pending_load,
        min(standing.quality_ppm, MAX_QUALITY_PPM),
        compute_decayed(standing.recent_rewards, standing.recent_rewards_block, block_number,
                        params.recent_rewards_half_life_blocks)))


class RoutingTerms(NamedTuple):
    """A `WorkerView`'s fields as a plain tuple: the router reads them per request, and rlp's field access is slow."""

    address: bytes
    model_sha256: bytes
    capacity: int
    load: int
    quality_ppm: int
    recent_rewards: int


class RoutingView(NamedTuple):
    """One worker's `WorkerView`, its RLP as the routing snapshot holds it, and its fields for `select_worker`."""

    view: WorkerView
    encoded: bytes
    terms: RoutingTerms


class RoutingViewCache:
    """Every registered worker's routing view, rebuilt only for the workers whose records changed.

    A request routes over all registered workers, and building and encoding a
    `WorkerView` for each of them per request was most of a block's cost. A view
    is a pure function of the worker's two records (their bytes), its address
    and the block's half-life period (the decay of recent rewards moves only
    at period boundaries), so views are cached under exactly that key: the
    cache can never serve a view the records would not give, whatever state,
    snapshot or revert it is read under. `test_economy_perf` checks it against
    `get_routing_snapshot`.
    """

    LIMIT = 1 << 16  # entries; cleared wholesale when full (a new block's views are rebuilt on demand)

    def __init__(self, params: EconomyParams) -> None:
        self.params = params
        self._views: dict[tuple[bytes, bytes, bytes, int], RoutingView] = {}
        self._registries: dict[bytes, tuple[bytes, ...]] = {}

    def get_views(self, state: StateAPI, block_number: int) -> list[RoutingView]:
        """The routing views of every registered worker, ordered by address (the snapshot's canonical order)."""
        period = block_number // self.params.recent_rewards_half_life_blocks
        views = []
        get_storage, get_cached = state.get_storage, self._views.get  # bound once: this loop runs per request
        for address in self.get_ordered_registry(state):
            key = (address, get_storage(address, WORKER_SLOT), get_storage(address, STANDING_SLOT), period)
            view = get_cached(key)
            if view is None:
                view = self.compute_view(state, address, block_number)
                if len(self._views) >= self.LIMIT:
                    self._views.clear()
                self._views[key] = view
            views.append(view)
        return views

    def get_ordered_registry(self, state: StateAPI) -> tuple[bytes, ...]:
        raw = state.get_storage(REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT)
        ordered = self._registries.get(raw)
        if ordered is None:
            ordered = tuple(sorted(rlp.decode(raw))) if raw else ()
            if len(set(ordered)) != len(ordered):
                raise InvalidRoutingInput("workers", len(ordered), "each address at most once")
            if len(self._registries) >= 64:
                self._registries.clear()
            self._registries[raw] = ordered
        return ordered

    def compute_view(self, state: StateAPI, address: bytes, block_number: int) -> RoutingView:
        view = get_worker_view(state, address, self.params, block_number)
        return RoutingView(view, _encode_plain(view) or rlp.encode(view), RoutingTerms(*view))


def validate_routing_floor(quality_floor_ppm: int) -> None:
    """The check `make_routing_snapshot` makes of the floor, for the routing done without a snapshot."""
    if not 0 <= quality_floor_ppm <= MAX_QUALITY_PPM:
        raise InvalidRoutingInput("quality_floor_ppm", quality_floor_ppm, f"0..{MAX_QUALITY_PPM}")


def get_routing_snapshot(state: StateAPI, params: EconomyParams, block_number: int, *,
                         excluded: Iterable[bytes] = (), pending_loads: Mapping[bytes, int] | None = None):
    """The router's view: every registered worker but the excluded, with its scheduled load.

    On chain the load is what state records; a node's RPC front door adds the
    loads of the assignments it has made that are not in a block yet (`pending_loads`).
    """
    excluded = set(excluded)
    pending_loads = pending_loads or {}
    views = [get_worker_view(state, a, params, block_number, pending_loads.get(a, 0))
             for a in get_registered_workers(state) if a not in excluded]
    return make_routing_snapshot(views, params.quality_floor_ppm)


# --- the rules ----------------------------------------------------------------------------


class WorkRules(WorkRulesAPI):
    """`chain.abc.WorkRulesAPI` for magicoin: the recognition economy.

    `get_committee_candidates(state) -> [(address, weight)]` can be replaced
    (for example by the validator set in force); by default it is every account
    whose recognition is at or above the validator threshold, the top
    `validator_cap` of them, as the validator-set rule would choose.
    """

    def __init__(
        self,
        params: EconomyParams = EconomyParams(),
        audit_policy: AuditPolicy | None = None,
        get_committee_candidates: Callable[[StateAPI], Iterable[tuple[bytes, int]]] | None = None,
    ) -> None:
        self.params = params
        self.audit_policy = audit_policy if audit_policy is not None else AuditPolicy()
        self.get_committee_candidates = get_committee_candidates or self.get_recognised_accounts
        self.routing_views = RoutingViewCache(params)

    # -- WorkRulesAPI ------------------------------------------------------------------------

    def apply_work(self, state: StateAPI, block: BlockContext, tx: TxContext, kind: str, payload: object) -> None:
        handler = self.HANDLERS.get(kind)
        if handler is None:
            raise WorkRejected("the economy does not handle this kind of work", got=kind,
                               expected=tuple(self.HANDLERS))
        handler(self, state, block, tx, payload)

    def finalize_block(self, state: StateAPI, block: BlockContext) -> int:
        self.process_job_deadlines(state, block)
        self.process_task_deadlines(state, block)
        return self.process_rewards(state, block)

    # -- workers -----------------------------------------------------------------------------

    def apply_register_worker(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Register (or re-declare) a worker; its standing survives a re-declaration."""
        set_worker_record(state, tx.sender, WorkerRecord(
            model_sha256=payload.model_sha256, capacity=payload.capacity, registered_at=block.number))
        if get_standing(state, tx.sender) is None:
            write_record(state, tx.sender, STANDING_SLOT, StandingRecord(
                quality_ppm=self.params.initial_quality_ppm, reliability_ppm=self.params.initial_reliability_ppm,
                load=0, recent_rewards=0, recent_rewards_block=block.number,
                jobs_done=0, jobs_failed_audit=0, jobs_since_caught=0, jobs_late=0))
        registry = get_registered_workers(state)
        if tx.sender not in registry:
            set_list(state, REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT, registry + (tx.sender,))

    def get_routing_snapshot(self, state: StateAPI, block: BlockContext, excluded: Iterable[bytes] = ()):
        return get_routing_snapshot(state, self.params, block.number, excluded=excluded)

    def update_standing(self, state: StateAPI, address: bytes, **changes: int) -> StandingRecord:
        standing = get_standing(state, address)
        assert standing is not None, "only registered workers have a standing"
        updated = replace_record(standing, **changes)
        write_record(state, address, STANDING_SLOT, updated)
        return updated

    # -- inference jobs ----------------------------------------------------------------------

    def apply_inference_request(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        job_id = compute_work_id(tx.sender, tx.nonce)
        if get_job(state, job_id) is not None:
            raise WorkRejected("job id already used", got=job_id, expected="a fresh (sender, nonce)")
        job = JobRecord(
            requester=tx.sender, model_sha256=payload.model_sha256, max_tokens=payload.max_tokens,
            cost=compute_job_cost(payload.max_tokens, self.params), created_block=block.number,
            status=JobStatus.WAITING, worker=b"", snapshot_hash=b"", deadline_block=0, attempts=0, excluded=(),
            result_tx=b"", result_block=0, output_hash=b"", output_tokens=0, audited=0, escalated=0, committee=(),
            attestations=(), score_ppm=0)
        self.put_job(state, job_id, self.try_assign(state, block, job_id, job))
        set_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT, get_open_jobs(state) + (job_id,))

    def try_assign(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> JobRecord:
        """Route the job over the current state; nobody eligible leaves it WAITING.

        This is `route(job_id, model, get_routing_snapshot(...), cost)` and
        `compute_routing_snapshot_hash` of that snapshot, computed from cached
        per-worker views (`RoutingViewCache`) instead of a snapshot built per request.
        """
        # A requester is never its own worker: the pool pays for work someone else asked for.
        excluded = set(job.excluded)
        excluded.add(job.requester)
        candidates = [v for v in self.routing_views.get_views(state, block.number) if v.terms.address not in excluded]
        floor = self.params.quality_floor_ppm
        validate_routing_floor(floor)
        validate_job(job_id, job.model_sha256, job.cost)
        worker = select_worker(job_id, job.model_sha256, [c.terms for c in candidates], floor, job.cost)
        if worker is None:
            if job.status == JobStatus.WAITING and not job.worker and not job.snapshot_hash:
                return job  # already exactly what waiting records
            return replace_record(job, status=JobStatus.WAITING, worker=b"", snapshot_hash=b"")
        standing = get_standing(state, worker)
        self.update_standing(state, worker, load=standing.load + job.cost)
        snapshot_hash = compute_encoded_snapshot_hash([c.encoded for c in candidates], floor)
        return replace_record(job, status=JobStatus.ASSIGNED, worker=worker, snapshot_hash=snapshot_hash,
                              deadline_block=block.number + self.params.result_deadline_blocks,
                              attempts=job.attempts + 1)

    def put_job(self, state: StateAPI, job_id: bytes, job: JobRecord) -> None:
        write_record(state, INFERENCE_REQUEST_ADDRESS, job_id, job)

    def close_job(self, state: StateAPI, job_id: bytes, job: JobRecord, status: int) -> None:
        self.put_job(state, job_id, replace_record(job, status=status))
        remaining = compute_without(get_open_jobs(state), job_id)
        set_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT, remaining)

    def release_load(self, state: StateAPI, job: JobRecord, **changes: int) -> None:
        """Take the job's cost off its worker's load, with any other `changes` to the standing in the same write."""
        standing = get_standing(state, job.worker)
        self.update_standing(state, job.worker, load=max(0, standing.load - job.cost), **changes)

    def apply_inference_result(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Record the answer; the audit is decided in the next block, once the hash of this one exists.

        A worker cannot know whether it will be audited, or by whom, before it
        has committed to its output: the seed is the hash of the block that holds it.
        """
        job = self.validate_result(state, block, tx, payload)
        standing = get_standing(state, job.worker)
        self.release_load(state, job, reliability_ppm=compute_running_average(
            standing.reliability_ppm, PPM, self.params.average_divisor))
        self.put_job(state, payload.job_id, replace_record(job,
            status=JobStatus.RESULTED, result_tx=tx.tx_hash, result_block=block.number,
            output_hash=compute_output_hash(payload.output_tokens), output_tokens=len(payload.output_tokens)))

    def process_audit_decision(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> None:
        """Audit or accept a result, seeded by the hash of the block that holds it (this block's parent)."""
        decision = compute_audit_decision(job_id, block.parent_hash, self.get_worker_history(state, job.worker),
                                          self.audit_policy)
        if not decision.audited:
            self.accept_on_standing(state, job_id, job)
            return
        size = decision.committee_size or self.params.committee_size
        committee = self.draw_committee(state, job, keccak(block.parent_hash + job_id), size)
        if not committee:
            # The policy wants it checked and nobody independent can: it stays unverified and unpaid.
            self.close_job(state, job_id, replace_record(job, audited=1), JobStatus.UNVERIFIED)
            return
        self.put_job(state, job_id, replace_record(job,
            status=JobStatus.ATTESTING, audited=1, committee=committee,
            deadline_block=block.number + self.params.attestation_window_blocks))

    def draw_committee(self, state: StateAPI, job: JobRecord, seed: bytes, size: int) -> tuple[CommitteeSeat, ...]:
        """Members by recognition, never the worker, the requester, or anyone already seated."""
        seated = {seat.address for seat in job.committee} | {job.worker, job.requester}
        candidates = [(a, w) for a, w in self.get_committee_candidates(state) if a not in seated]
        return tuple(CommitteeSeat(m.address, m.weight)
                     for m in compute_committee(candidates, seed, size))

    def validate_result(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> JobRecord:
        job = get_job(state, payload.job_id)
        if job is None:
            raise WorkRejected("result for an unknown job", got=payload.job_id, expected="a requested job id")
        if job.status != JobStatus.ASSIGNED:
            raise WorkRejected("the job is not waiting for a result", got=job.status, expected=JobStatus.ASSIGNED)
        if tx.sender != job.worker:
            raise WorkRejected("only the assigned worker may answer", got=tx.sender, expected=job.worker)
        if block.number > job.deadline_block:
            raise WorkRejected("result after the deadline", got=block.number, expected=f"<= {job.deadline_block}")
        if len(payload.output_tokens) > job.max_tokens:
            raise WorkRejected("more tokens than the job asked for", got=len(payload.output_tokens),
                               expected=f"<= {job.max_tokens}")
        return job

    def get_worker_history(self, state: StateAPI, address: bytes) -> WorkerHistory:
        standing = get_standing(state, address)
        return WorkerHistory(jobs_done=standing.jobs_done, jobs_failed_audit=standing.jobs_failed_audit,
                             jobs_since_caught=standing.jobs_since_caught)

    def record_audit_outcome(self, state: StateAPI, worker: bytes, audited: bool, failed: bool, **changes: int) -> None:
        history = apply_audit_outcome(self.get_worker_history(state, worker), audited, failed)
        self.update_standing(state, worker, jobs_done=history.jobs_done, jobs_failed_audit=history.jobs_failed_audit,
                             jobs_since_caught=history.jobs_since_caught, **changes)

    def accept_on_standing(self, state: StateAPI, job_id: bytes, job: JobRecord) -> None:
        standing = get_standing(state, job.worker)
        self.record_audit_outcome(state, job.worker, audited=False, failed=False)
        self.add_claim(state, job.worker, job.output_tokens * standing.quality_ppm)
        self.close_job(state, job_id, replace_record(job, score_ppm=standing.quality_ppm), JobStatus.ACCEPTED)

    def get_recognised_accounts(self, state: StateAPI) -> list[tuple[bytes, int]]:
        """Accounts at or above the validator threshold, the top validator_cap by recognition."""
        recognised = []
        for address in self.get_recognised_index(state):
            recognition = get_recognition(state, address)  # re-read: a slash may have zeroed it
            if recognition > 0 and recognition >= self.params.validator_threshold:
                recognised.append((address, recognition))
        recognised.sort(key=lambda item: (-item[1], item[0]))
        return recognised[: self.params.validator_cap]

    def get_recognised_index(self, state: StateAPI) -> tuple[bytes, ...]:
        """Every account that ever reached the threshold, so a draw need not walk the whole trie.

        Recognition only rises through `credit_reward`, which only this economy
        calls (`note_recognised` keeps the index), and at genesis; the first use
        walks the accounts once to pick up the genesis allocations.
        """
        raw = state.get_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT)
        if raw:  # present, even when empty (rlp of an empty list is 0xc0), once built
            return decode_list(raw)
        items = tuple(sorted(
            address for address, _ in state.iter_accounts()
            if not is_system_address(address)
            and get_recognition(state, address) >= max(1, self.params.validator_threshold)))
        state.set_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT, encode_list(items))
        return items

    def note_recognised(self, state: StateAPI, address: bytes) -> None:
        if get_recognition(state, address) < max(1, self.params.validator_threshold):
            return
        index = self.get_recognised_index(state)
        if address not in index:
            state.set_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT, encode_list(index + (address,)))

    # -- attestations ------------------------------------------------------------------------

    def apply_attestation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        job = self.validate_attestation(state, block, tx, payload)
        score = Score(tx.sender, payload.score_ppm)
        job = replace_record(job, attestations=job.attestations + (score,))
        weights = {seat.address: seat.weight for seat in job.committee}
        if is_committee_decided(job.attestations, weights, self.params.acceptance_threshold_ppm):
            self.score_job(state, block, payload.job_id, job, weights)
        else:
            self.put_job(state, payload.job_id, job)

    def validate_attestation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> JobRecord:
        job = get_job(state, payload.job_id)
        if job is None:
            raise WorkRejected("attestation for an unknown job", got=payload.job_id, expected="a requested job id")
        if job.status != JobStatus.ATTESTING:
            raise WorkRejected("the job is not being attested", got=job.status, expected=JobStatus.ATTESTING)
        if tx.sender not in {seat.address for seat in job.committee}:
            raise WorkRejected("only committee members attest", got=tx.sender,
                               expected=[seat.address for seat in job.committee])
        if tx.sender in {s.address for s in job.attestations}:
            raise WorkRejected("this member already attested", got=tx.sender, expected="one attestation per member")
        if block.number > job.deadline_block:
            raise WorkRejected("attestation after the window", got=block.number, expected=f"<= {job.deadline_block}")
        return job

    def score_job(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord,
                  weights: dict[bytes, int]) -> None:
        """The quorum is in: weighted median; a first verdict against the worker is escalated, else paid out."""
        median = compute_weighted_median((s.score_ppm, weights[s.address]) for s in job.attestations)
        extra = compute_escalation_committee_size(median, len(job.committee), self.audit_policy)
        if extra and not job.escalated:
            self.escalate(state, block, job_id, job, extra)
            return
        job = replace_record(job, score_ppm=median)
        standing = get_standing(state, job.worker)
        quality = compute_running_average(standing.quality_ppm, median, self.params.average_divisor)
        accepted = median >= self.params.acceptance_threshold_ppm
        self.record_audit_outcome(state, job.worker, audited=True, failed=not accepted, quality_ppm=quality)
        if accepted:
            self.add_claim(state, job.worker, job.output_tokens * median)
        attester_units = job.output_tokens * self.params.attester_share_ppm
        for s in job.attestations:
            if is_within_tolerance(s.score_ppm, median, self.params.attestation_tolerance_ppm):
                self.add_claim(state, s.address, attester_units)
        self.close_job(state, job_id, job, JobStatus.ACCEPTED if accepted else JobStatus.FAILED_AUDIT)

    def escalate(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord, extra: int) -> None:
        """No single member convicts a worker: seat `extra` more, keep the attestations, reopen the window."""
        added = self.draw_committee(state, job, keccak(block.parent_hash + job_id + b"escalation"), extra)
        if not added:
            self.close_job(state, job_id, job, JobStatus.UNVERIFIED)
            return
        self.put_job(state, job_id, replace_record(job,
            escalated=1, committee=job.committee + added,
            deadline_block=block.number + self.params.attestation_window_blocks))

    # -- deadlines ---------------------------------------------------------------------------

    def process_job_deadlines(self, state: StateAPI, block: BlockContext) -> None:
        """Late workers lose reliability and their job moves on; silent committees expire; waiting jobs retry.

        Waiting jobs retry after the deadlines have freed capacity, the ones with
        the largest offering first, then in the order they were requested.
        """
        waiting = []
        for job_id in get_open_jobs(state):
            job = get_job(state, job_id)
            status = job.status
            if status == JobStatus.WAITING:
                waiting.append(job_id)
            elif status == JobStatus.ASSIGNED and block.number >= job.deadline_block:
                if self.process_missed_result(state, block, job_id, job) == JobStatus.WAITING:
                    waiting.append(job_id)
            elif status == JobStatus.RESULTED and block.number > job.result_block:
                self.process_audit_decision(state, block, job_id, job)
            elif status == JobStatus.ATTESTING and block.number >= job.deadline_block:
                self.close_job(state, job_id, job, JobStatus.UNVERIFIED)
        # Handling one job never touches another job's record, so `waiting` is, in the open list's order,
        # every job that is WAITING now: the jobs waiting before this loop and those it could not reassign.
        for job_id in sorted(waiting, key=lambda j: -get_job_offering(state, j)):  # sorted() is stable
            self.process_waiting_job(state, block, job_id, get_job(state, job_id))

    def process_missed_result(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> int:
        """Release the late worker's load, lower its reliability, and reassign (or expire) the job: its new status."""
        standing = get_standing(state, job.worker)
        self.release_load(state, job, jobs_late=standing.jobs_late + 1, reliability_ppm=(
            compute_running_average(standing.reliability_ppm, 0, self.params.average_divisor)))
        job = replace_record(job, excluded=job.excluded + (job.worker,))
        if job.attempts >= self.params.max_assignment_attempts:
            self.close_job(state, job_id, job, JobStatus.EXPIRED)
            return JobStatus.EXPIRED
        job = self.try_assign(state, block, job_id, job)
        self.put_job(state, job_id, job)
        return job.status

    def process_waiting_job(self, state: StateAPI, block: BlockContext, job_id: bytes, job: JobRecord) -> None:
        patience = self.params.result_deadline_blocks * self.params.max_assignment_attempts
        if block.number >= job.created_block + patience:
            self.close_job(state, job_id, job, JobStatus.EXPIRED)
            return
        assigned = self.try_assign(state, block, job_id, job)
        if assigned is not job:
            # Still nobody eligible gives back the same record: writing its bytes again would change nothing.
            self.put_job(state, job_id, assigned)

    # -- annotation --------------------------------------------------------------------------

    def apply_annotation_task(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        task_id = compute_work_id(tx.sender, tx.nonce)
        if get_task(state, task_id) is not None:
            raise WorkRejected("task id already used", got=task_id, expected="a fresh (sender, nonce)")
        write_record(state, ANNOTATION_TASK_ADDRESS, task_id, TaskRecord(
            requester=tx.sender, content_hash=keccak(payload.content), labels=len(payload.labels), k=payload.k,
            created_block=block.number, deadline_block=block.number + self.params.annotation_deadline_blocks,
            status=TaskStatus.OPEN, annotations=(), label_index=0))
        set_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT, get_open_tasks(state) + (task_id,))

    def apply_annotation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        task = self.validate_annotation(state, block, tx, payload)
        weight = compute_annotation_weight(get_recognition(state, tx.sender), self.params)
        task = replace_record(task, annotations=task.annotations + (
            Label(tx.sender, payload.label_index, weight),))
        if len(task.annotations) < task.k:
            write_record(state, ANNOTATION_TASK_ADDRESS, payload.task_id, task)
            return
        self.resolve_task(state, payload.task_id, task)

    def validate_annotation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> TaskRecord:
        task = get_task(state, payload.task_id)
        if task is None:
            raise WorkRejected("annotation for an unknown task", got=payload.task_id, expected="a posted task id")
        if task.status != TaskStatus.OPEN:
            raise WorkRejected("the task is closed", got=task.status, expected=TaskStatus.OPEN)
        if block.number > task.deadline_block:
            raise WorkRejected("annotation after the deadline", got=block.number, expected=f"<= {task.deadline_block}")
        if payload.label_index >= task.labels:
            raise WorkRejected("label index outside the task's labels", got=payload.label_index,
                               expected=f"0..{task.labels - 1}")
        if tx.sender == task.requester:
            raise WorkRejected("a requester cannot annotate its own task", got=tx.sender, expected="another account")
        if tx.sender in {a.address for a in task.annotations}:
            raise WorkRejected("this account already annotated the task", got=tx.sender, expected="one label each")
        return task

    def resolve_task(self, state: StateAPI, task_id: bytes, task: TaskRecord) -> None:
        winner = compute_majority_label((a.label_index, a.weight) for a in task.annotations)
        if winner is None:
            self.close_task(state, task_id, task, TaskStatus.NO_MAJORITY)
            return
        for annotation in task.annotations:
            if annotation.label_index == winner:
                self.add_claim(state, annotation.address, self.params.annotation_units)
        self.close_task(state, task_id, replace_record(task, label_index=winner), TaskStatus.RECOGNISED)

    def close_task(self, state: StateAPI, task_id: bytes, task: TaskRecord, status: int) -> None:
        write_record(state, ANNOTATION_TASK_ADDRESS, task_id, replace_record(task, status=status))
        remaining = compute_without(get_open_tasks(state), task_id)
        set_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT, remaining)

    def process_task_deadlines(self, state: StateAPI, block: BlockContext) -> None:
        for task_id in get_open_tasks(state):
            task = get_task(state, task_id)
            if block.number >= task.deadline_block:
                self.close_task(state, task_id, task, TaskStatus.EXPIRED)

    # -- rewards -----------------------------------------------------------------------------

    def add_claim(self, state: StateAPI, address: bytes, units: int) -> None:
        if units > 0:
            add_claim(state, address, units)

    def process_rewards(self, state: StateAPI, block: BlockContext) -> int:
        """Issue, pay the block's claims out of issuance plus drip, and return the recognition credited."""
        budget = compute_block_budget(state.get_balance(POOL_ADDRESS), self.params)
        ledger.issue(state, self.params.issuance_per_block)
        recognised = 0
        for address, amount in compute_payouts(get_claims(state), budget, self.params.wei_per_unit):
            if amount == 0:
                continue
            ledger.credit_reward(state, address, amount)
            self.note_recognised(state, address)
            recognised += amount
            if get_standing(state, address) is not None:
                self.note_recent_reward(state, address, amount, block)
        clear_claims(state)
        return recognised

    def note_recent_reward(self, state: StateAPI, address: bytes, amount: int, block: BlockContext) -> None:
        standing = get_standing(state, address)
        decayed = compute_decayed(standing.recent_rewards, standing.recent_rewards_block, block.number,
                                  self.params.recent_rewards_half_life_blocks)
        self.update_standing(state, address, recent_rewards=decayed + amount, recent_rewards_block=block.number)

    HANDLERS = {
        "register_worker": apply_register_worker,
        "inference_request": apply_inference_request,
        "inference_result": apply_inference_result,
        "attestation": apply_attestation,
        "annotation_task": apply_annotation_task,
        "annotation": apply_annotation,
    }
