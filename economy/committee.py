"""Audit committees: who checks a job, drawn by recognition weight from a seed.

Owns the deterministic weighted sampling without replacement used by the
economy. Pure integer arithmetic over keccak draws, so every node draws the same
committee from the same (candidates, seed, size); the order candidates are
listed in does not matter.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple

from primitives.hashing import keccak


class CommitteeError(ValueError):
    def __init__(self, field: str, got: object, expected: str) -> None:
        super().__init__(f"invalid committee input {field}: got {got!r}, expected {expected}")
        self.field = field
        self.got = got
        self.expected = expected


class Member(NamedTuple):
    address: bytes
    weight: int


def compute_draw(seed: bytes, index: int, bound: int) -> int:
    """The index-th uniform draw in [0, bound) from the seed (256-bit hash; the modulo bias is negligible)."""
    return int.from_bytes(keccak(seed + index.to_bytes(4, "big")), "big") % bound


def compute_committee(candidates: Iterable[tuple[bytes, int]], seed: bytes, size: int) -> tuple[Member, ...]:
    """Draw up to `size` distinct members, each draw proportional to the remaining weight.

    Candidates with zero weight can never be drawn. Fewer positive-weight
    candidates than `size` gives all of them. The result is ordered by draw.
    """
    if size < 0:
        raise CommitteeError("size", size, ">= 0")
    pool = sorted((bytes(a), int(w)) for a, w in candidates if w > 0)
    if len({a for a, _ in pool}) != len(pool):
        raise CommitteeError("candidates", len(pool), "unique addresses")
    chosen: list[Member] = []
    total = sum(w for _, w in pool)
    for index in range(min(size, len(pool))):
        point = compute_draw(seed, index, total)
        position = 0
        while point >= pool[position][1]:
            point -= pool[position][1]
            position += 1
        address, weight = pool.pop(position)
        total -= weight
        chosen.append(Member(address, weight))
    return tuple(chosen)
