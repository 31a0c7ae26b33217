"""The economy's pure arithmetic: costs, averages, medians, majorities, budgets and payouts."""
from __future__ import annotations

from typing import Iterable, Mapping

import rlp
from rlp.codec import length_prefix

from economy.params import PPM, EconomyParams
from economy.records import Claim
from primitives.encoding import encode_rlp_uint
from primitives.hashing import keccak


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


def compute_block_budget(pool_before_issuance: int, params: EconomyParams) -> int:
    """Issuance plus the pool's drip: the most a block may pay out."""
    return params.issuance_per_block + pool_before_issuance * params.pool_drip_ppm // PPM


def compute_block_payout(total_units: int, budget: int, params: EconomyParams) -> int:
    """The part of the budget a block's work earns: all of it once the block is full, else its fill.

    A block is full at `issuance_per_block / wei_per_unit` units; below that a
    unit is worth `wei_per_unit x budget / issuance`, so one tiny claim in an
    otherwise empty block cannot take the whole budget. The cap scales with the
    budget (not a fixed price) so that the pool stays bounded whatever the demand:
    with mean fill F the pool tends to I(1-F)/(F d) (docs/ARCHITECTURE.md).
    """
    if total_units <= 0:
        return 0
    issuance = params.issuance_per_block
    if issuance == 0 or total_units * params.wei_per_unit >= issuance:  # no issuance: nothing to price against
        return budget
    return budget * total_units * params.wei_per_unit // issuance


def compute_payouts(claims: Iterable[Claim], budget: int, params: EconomyParams) -> list[tuple[bytes, int]]:
    """The block's payout shared pro rata to claim units (floored: the remainder stays in the pool)."""
    claims = tuple(claims)
    total_units = sum(c.units for c in claims)
    if total_units == 0:
        return []
    payout = compute_block_payout(total_units, budget, params)
    return [(c.address, c.units * payout // total_units) for c in claims]
