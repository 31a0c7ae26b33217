"""The economy's on-chain records (RLP, frozen) and their fast codec.

Records and id lists are encoded byte-identically to `rlp.encode` and decoded
through caches keyed by their exact bytes (see `decode_record`).
"""
from __future__ import annotations

from typing import Iterable

import rlp
from rlp.codec import length_prefix
from rlp.sedes import BigEndianInt, Binary, CountableList, big_endian_int
from rlp.sedes.serializable import make_immutable

address_sedes = Binary.fixed_length(20)
hash32 = Binary.fixed_length(32)
address_or_empty = Binary(min_length=0, max_length=20)



class WorkerRecord(rlp.Serializable):
    """What `register_worker` declares: the model served and the capacity (tokens/s)."""

    fields = [
        ("model_sha256", hash32),
        ("capacity", big_endian_int),
        ("registered_at", big_endian_int),  # block number of the latest registration
        ("engine", Binary(min_length=0, max_length=160)),  # how it runs, as declared (informational)
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
    ASSIGNED = 1  # a worker has until deadline_ms (and at least deadline_block) to answer
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
        # Result deadline in block-timestamp ms while ASSIGNED (economy.jobs.compute_result_deadline_ms):
        # the job is late once a block is past both this and deadline_block.
        ("deadline_ms", big_endian_int),
    ]


class TaskStatus:
    OPEN = 0
    RECOGNISED = 1  # a label carried more than half the drawn weight (agreeing annotators paid); gold: resolved
    NO_MAJORITY = 2  # every drawn annotator answered and no label carried more than half
    EXPIRED = 3  # the deadline passed with no label over half (or, for gold, no answer at all)


class Label(rlp.Serializable):
    fields = [("address", address_sedes), ("label_index", big_endian_int), ("weight", big_endian_int)]


class TaskRecord(rlp.Serializable):
    fields = [
        ("requester", address_sedes),
        ("content_hash", hash32),
        ("labels", big_endian_int),  # how many labels the task offers
        ("k", big_endian_int),  # annotators drawn: the k asked for, or fewer if fewer were eligible
        ("created_block", big_endian_int),
        ("deadline_block", big_endian_int),
        ("status", big_endian_int),
        ("annotations", CountableList(Label)),
        ("label_index", big_endian_int),  # the recognised label, when RECOGNISED
        # Drawn by the chain (economy.annotations), each with its vote weight (ppm) at the draw: only they may answer.
        ("annotators", CountableList(CommitteeSeat)),
        ("gold", big_endian_int),  # 0 for a task someone posted; 1 + the genesis gold index for a chain-made gold task
    ]


class AnnotatorRecord(rlp.Serializable):
    """What `register_annotator` declares and what the chain has measured of the annotator."""

    fields = [
        ("operator", Binary(min_length=1, max_length=80)),  # b"person" or b"model:<sha256 hex>" (informational)
        ("registered_at", big_endian_int),  # block of the first registration (kept: re-registering cannot unlink)
        ("gold_seen", big_endian_int),  # gold answers on record
        ("gold_correct", big_endian_int),
        ("gold_assigned", big_endian_int),  # gold tasks drawn for it (the gold draw prefers the fewest)
        ("tasks_assigned", big_endian_int),  # every task drawn for it, gold or not
        ("tasks_answered", big_endian_int),
        ("units_claimed", big_endian_int),  # annotation units claimed (before any pro-rata scaling of a block)
    ]


class Claim(rlp.Serializable):
    """A payout owed at the end of the block: `units` of recognised work by `address`."""

    fields = [("address", address_sedes), ("units", big_endian_int)]


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


def try_encode_record(record: rlp.Serializable) -> bytes | None:
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
                    encoded = try_encode_record(item) if type(item) is sedes.element_sedes else None
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
    raw = try_encode_record(record)
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
