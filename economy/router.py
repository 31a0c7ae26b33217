"""The whoever-needs-most router: which worker gets an inference job.

This module owns the routing rule of DESIGN.md ("Router: whoever needs most")
as a pure, deterministic function over a `RoutingSnapshot` (chain state plus
the node's pending assignments). Every node's RPC front door and the economy's
block-level assignment call the same `route`, so every node computes the same
answer: only integer and exact-fraction arithmetic, and an order that does not
depend on how the snapshot's worker list happens to be ordered.

The rule, in the order it is applied:
1. Eligible workers serve the requested model, have a quality average at or
   above the floor, and can take the job while staying inside 70% of their
   declared capacity: ``10 * (load + cost) <= 7 * capacity``. The other 30% is
   *sacred space*: nothing is ever scheduled into it (and nothing here measures
   it; we only ever look at what we scheduled ourselves).
2. Among the eligible, the least utilised (``load / capacity``, compared as
   exact fractions) wins.
3. Ties go to the fewest recent rewards, then to the smallest
   ``keccak(job_id + worker address)``, which is unpredictable per job yet the
   same on every node.
Nobody eligible means ``None``: the job waits; it is never squeezed into
sacred space.

Units: ``capacity``, ``load`` and a job's ``cost`` share one unit. The economy
uses tokens per second (a job costs the throughput it needs to finish before
its deadline); the benchmark uses the same convention.
"""
from __future__ import annotations

from fractions import Fraction
from typing import Iterable

import rlp
from rlp.codec import length_prefix
from rlp.sedes import Binary, CountableList, big_endian_int

from primitives.hashing import keccak

# The schedulable share of declared capacity, as an exact fraction (7/10).
SCHEDULABLE_NUMERATOR = 7
SCHEDULABLE_DENOMINATOR = 10
MAX_QUALITY_PPM = 1_000_000
LIST_OFFSET = 0xC0  # RLP's prefix base for a list

address_sedes = Binary.fixed_length(20)
hash32_sedes = Binary.fixed_length(32)


class RouterError(ValueError):
    """Base of the router's errors: a snapshot or job that breaks the router's input rules."""


class InvalidRoutingInput(RouterError):
    """A snapshot or job whose fields are out of range; carries what was got and what was expected."""

    def __init__(self, field: str, got: object, expected: str) -> None:
        super().__init__(f"invalid routing input {field}: got {got!r}, expected {expected}")
        self.field = field
        self.got = got
        self.expected = expected


class WorkerView(rlp.Serializable):
    """What the router knows about one worker (frozen; RLP so a snapshot can be hashed)."""

    fields = [
        ("address", address_sedes),
        ("model_sha256", hash32_sedes),
        ("capacity", big_endian_int),  # declared, in the same unit as load and cost
        ("load", big_endian_int),  # what is already scheduled on it (chain + pending)
        ("quality_ppm", big_endian_int),  # running quality average, 0..1_000_000
        ("recent_rewards", big_endian_int),  # recently earned rewards (wei), the first tie-break
    ]


class RoutingSnapshot(rlp.Serializable):
    """The world as the router saw it when it assigned a job; recorded by hash with the assignment."""

    fields = [
        ("workers", CountableList(WorkerView)),
        ("quality_floor_ppm", big_endian_int),
    ]


def make_routing_snapshot(workers: Iterable[WorkerView], quality_floor_ppm: int) -> RoutingSnapshot:
    """A snapshot in canonical form (workers ordered by address), so equal views hash equally."""
    ordered = tuple(sorted(workers, key=lambda w: w.address))
    snapshot = RoutingSnapshot(workers=ordered, quality_floor_ppm=quality_floor_ppm)
    validate_routing_snapshot(snapshot)
    return snapshot


def validate_routing_snapshot(snapshot: RoutingSnapshot) -> None:
    """Raise InvalidRoutingInput unless every field is in range and addresses are unique.

    Unique addresses matter for determinism: two different views of one worker
    would make the answer depend on the order of the list.
    """
    if not 0 <= snapshot.quality_floor_ppm <= MAX_QUALITY_PPM:
        raise InvalidRoutingInput("quality_floor_ppm", snapshot.quality_floor_ppm, f"0..{MAX_QUALITY_PPM}")
    seen: set[bytes] = set()
    for worker in snapshot.workers:
        if worker.address in seen:
            raise InvalidRoutingInput("workers", worker.address.hex(), "each address at most once")
        seen.add(worker.address)
        if worker.quality_ppm > MAX_QUALITY_PPM:
            raise InvalidRoutingInput("quality_ppm", worker.quality_ppm, f"0..{MAX_QUALITY_PPM}")


def compute_routing_snapshot_hash(snapshot: RoutingSnapshot) -> bytes:
    """keccak of the canonical snapshot's RLP; independent of the order workers were listed in."""
    canonical = RoutingSnapshot(
        workers=tuple(sorted(snapshot.workers, key=lambda w: w.address)),
        quality_floor_ppm=snapshot.quality_floor_ppm,
    )
    return keccak(rlp.encode(canonical))


def compute_encoded_snapshot_hash(encoded_workers: Iterable[bytes], quality_floor_ppm: int) -> bytes:
    """`compute_routing_snapshot_hash` of a snapshot given its workers' RLP, already ordered by address.

    The bytes hashed are exactly rlp(RoutingSnapshot): a caller that keeps each
    view's encoding (the economy caches them by the records they come from)
    hashes a snapshot without building or re-encoding it.
    """
    workers = b"".join(encoded_workers)
    body = length_prefix(len(workers), LIST_OFFSET) + workers + rlp.encode(quality_floor_ppm)
    return keccak(length_prefix(len(body), LIST_OFFSET) + body)


def compute_tiebreak_hash(job_id: bytes, address: bytes) -> bytes:
    return keccak(job_id + address)


def compute_utilisation(worker: WorkerView) -> Fraction:
    """load / capacity as an exact fraction (capacity is > 0 for any eligible worker)."""
    return Fraction(worker.load, worker.capacity)


def is_within_schedulable_capacity(load: int, capacity: int) -> bool:
    """True when `load` stays inside the schedulable 70% of `capacity` (exact integer test)."""
    return capacity > 0 and SCHEDULABLE_DENOMINATOR * load <= SCHEDULABLE_NUMERATOR * capacity


def is_eligible(worker: WorkerView, model_sha256: bytes, quality_floor_ppm: int, cost: int) -> bool:
    """Serves the model, is good enough, and can take `cost` without touching sacred space."""
    return (
        worker.model_sha256 == model_sha256
        and worker.quality_ppm >= quality_floor_ppm
        and is_within_schedulable_capacity(worker.load + cost, worker.capacity)
    )


def get_eligible_workers(model_sha256: bytes, snapshot: RoutingSnapshot, cost: int = 1) -> tuple[WorkerView, ...]:
    return tuple(w for w in snapshot.workers if is_eligible(w, model_sha256, snapshot.quality_floor_ppm, cost))


def compute_priority_key(job_id: bytes, worker: WorkerView) -> tuple[Fraction, int, bytes]:
    """Smaller is served first: least utilised, then fewest recent rewards, then the job's hash draw."""
    return (compute_utilisation(worker), worker.recent_rewards, compute_tiebreak_hash(job_id, worker.address))


def validate_job(job_id: bytes, model_sha256: bytes, cost: int) -> None:
    if len(job_id) != 32:
        raise InvalidRoutingInput("job_id", job_id.hex(), "32 bytes")
    if len(model_sha256) != 32:
        raise InvalidRoutingInput("model_sha256", model_sha256.hex(), "32 bytes")
    if cost < 1:
        raise InvalidRoutingInput("cost", cost, "an integer >= 1")


def is_preferred(job_id: bytes, worker: WorkerView, other: WorkerView) -> bool:
    """`compute_priority_key(job_id, worker) < compute_priority_key(job_id, other)`, computed lazily.

    Utilisations are compared by cross-multiplying (both capacities are > 0 for
    eligible workers), and the keccak tie-break is computed only on a tie, so
    picking among n workers costs n integer comparisons instead of n Fractions
    and n hashes. `test_router_fast` checks it against the key.
    """
    left = worker.load * other.capacity
    right = other.load * worker.capacity
    if left != right:
        return left < right
    if worker.recent_rewards != other.recent_rewards:
        return worker.recent_rewards < other.recent_rewards
    return compute_tiebreak_hash(job_id, worker.address) < compute_tiebreak_hash(job_id, other.address)


def select_worker(job_id: bytes, model_sha256: bytes, workers: Iterable[WorkerView], quality_floor_ppm: int,
                  cost: int) -> bytes | None:
    """The rule itself over already validated inputs: the eligible worker with the smallest priority key.

    Keys are distinct (they end in a hash of distinct addresses), so the
    minimum is unique and the order of `workers` does not matter.
    """
    chosen = None
    for worker in workers:
        if is_eligible(worker, model_sha256, quality_floor_ppm, cost) and (
                chosen is None or is_preferred(job_id, worker, chosen)):
            chosen = worker
    return None if chosen is None else chosen.address


def route(job_id: bytes, model_sha256: bytes, snapshot: RoutingSnapshot, cost: int = 1) -> bytes | None:
    """The worker address that should serve this job, or None when the job must wait.

    `cost` is what the job adds to the chosen worker's load (default 1 unit).
    """
    validate_job(job_id, model_sha256, cost)
    validate_routing_snapshot(snapshot)
    return select_worker(job_id, model_sha256, snapshot.workers, snapshot.quality_floor_ppm, cost)


def is_assignment_valid(
    job_id: bytes, model_sha256: bytes, snapshot: RoutingSnapshot, assigned: bytes | None, cost: int = 1
) -> bool:
    """True when `assigned` is exactly what the rule picks from the recorded snapshot.

    The rule has a single answer, so any other worker (or an assignment where
    the rule says "wait") broke it, and the job earns nothing.
    """
    try:
        return route(job_id, model_sha256, snapshot, cost) == assigned
    except RouterError:
        return False
