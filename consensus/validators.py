"""The validator set: who votes, with what weight, and when the set may change.

Owns the frozen `ValidatorSet` value, the pure rule that derives the set from
recognition in state (threshold, cap, deterministic tie-break), its hash as
carried by headers (`validators_hash`, `next_validators_hash`), the weighted
quorum predicates used by the BFT rules, and the epoch rule.
"""
from __future__ import annotations

from typing import Iterable, Iterator, NamedTuple

import rlp
from eth_utils import keccak

from consensus.exceptions import ConsensusError


class InvalidValidatorSet(ConsensusError):
    def __init__(self, reason: str, got: object, expected: object) -> None:
        super().__init__(f"{reason}: got {got!r}, expected {expected!r}")
        self.reason = reason
        self.got = got
        self.expected = expected


class Validator(NamedTuple):
    address: bytes
    weight: int


class ValidatorSet:
    """Members sorted by address, each with a positive weight (its recognition)."""

    __slots__ = ("_members", "_weights", "_total", "_index")

    def __init__(self, members: Iterable[tuple[bytes, int]]) -> None:
        ordered = tuple(Validator(bytes(a), int(w)) for a, w in sorted(members))
        validate_members(ordered)
        self._members = ordered
        self._weights = {v.address: v.weight for v in ordered}
        self._index = {v.address: i for i, v in enumerate(ordered)}
        self._total = sum(v.weight for v in ordered)

    @property
    def members(self) -> tuple[Validator, ...]:
        return self._members

    @property
    def addresses(self) -> tuple[bytes, ...]:
        return tuple(v.address for v in self._members)

    @property
    def total_weight(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self._members)

    def __contains__(self, address: object) -> bool:
        return address in self._weights

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and self._members == other._members

    def __hash__(self) -> int:
        return hash(self._members)

    def __repr__(self) -> str:
        body = ", ".join(f"{v.address.hex()[:8]}:{v.weight}" for v in self._members)
        return f"ValidatorSet({body})"

    def get_weight(self, address: bytes) -> int:
        """The member's weight, 0 for a non-member."""
        return self._weights.get(address, 0)

    def get_index(self, address: bytes) -> int:
        return self._index[address]


def validate_members(members: tuple[Validator, ...]) -> None:
    if not members:
        raise InvalidValidatorSet("size", 0, ">= 1 member")
    previous = None
    for v in members:
        if len(v.address) != 20:
            raise InvalidValidatorSet("address length", len(v.address), 20)
        if v.weight <= 0:
            raise InvalidValidatorSet("weight", v.weight, "> 0")
        if v.address == previous:
            raise InvalidValidatorSet("duplicate member", v.address.hex(), "unique addresses")
        previous = v.address


def compute_validators_hash(validator_set: ValidatorSet) -> bytes:
    """keccak(rlp([[address, weight], ...])) over the members sorted by address."""
    return keccak(rlp.encode([[v.address, v.weight] for v in validator_set.members]))


def compute_validator_set(
    candidates: Iterable[tuple[bytes, int]], threshold: int, cap: int
) -> ValidatorSet:
    """Accounts with recognition >= threshold, the top `cap` of them by recognition.

    Ties at the cap are broken by the lower address, so every node derives the
    same set from the same state.
    """
    if cap <= 0:
        raise InvalidValidatorSet("cap", cap, "> 0")
    eligible = [(bytes(a), int(r)) for a, r in candidates if r >= threshold and r > 0]
    ranked = sorted(eligible, key=lambda item: (-item[1], item[0]))
    return ValidatorSet(ranked[:cap])


# --- weighted quorums ---------------------------------------------------------

def is_quorum(weight: int, total: int) -> bool:
    """More than 2/3 of the total weight (the paper's 2f+1)."""
    return 3 * weight > 2 * total


def is_one_third_plus(weight: int, total: int) -> bool:
    """More than 1/3 of the total weight (the paper's f+1): at least one honest member."""
    return 3 * weight > total


# --- epochs ---------------------------------------------------------------

def is_epoch_boundary(height: int, epoch_length: int) -> bool:
    """The set used from `height` on may differ from the one before it.

    Height 1 starts the first epoch; a new epoch starts every `epoch_length` blocks.
    """
    if epoch_length <= 0:
        raise InvalidValidatorSet("epoch_length", epoch_length, "> 0")
    return height >= 1 and (height - 1) % epoch_length == 0


def get_epoch_start(height: int, epoch_length: int) -> int:
    """The first height of the epoch that contains `height`."""
    if epoch_length <= 0:
        raise InvalidValidatorSet("epoch_length", epoch_length, "> 0")
    if height < 1:
        raise InvalidValidatorSet("height", height, ">= 1")
    return height - (height - 1) % epoch_length
