"""The economy's rules in numbers (`EconomyParams`), taken from a chain's genesis params."""
from __future__ import annotations

from typing import NamedTuple

from economy.audit import (
    ACCEPTANCE_THRESHOLD_PPM,
)

PPM = 1_000_000


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
    # A unit (one token x one ppm of score) is worth this x budget / issuance in a block that is not full;
    # a block is full (pays its whole budget) at issuance / this units: 100 perfect tokens (compute_block_payout).
    wei_per_unit: int = 2 * 10**10
    attester_share_ppm: int = 100_000  # an agreeing attester's claim, as a share of the job's full claim
    annotation_units: int = 16 * PPM  # an agreeing annotator's claim: as much as 16 perfect tokens
    annotation_weight_floor: int = 10**15  # unused since votes weigh gold accuracy; a genesis field still
    recent_rewards_half_life_blocks: int = 100
    # Annotators (economy.annotations, economy.accuracy): drawn per task, weighted by accuracy measured on gold.
    annotator_prior_correct: int = 1  # Beta prior of every annotator's accuracy: pseudo-correct gold answers
    annotator_prior_wrong: int = 1  # ... and pseudo-wrong ones
    annotator_min_gold: int = 3  # gold answers on record before an annotator's vote weighs anything
    gold_interval_blocks: int = 10  # the chain makes a gold task every this many blocks
    # Deadlines that follow the work (economy.jobs.compute_result_deadline_ms) and the waiting-queue bound.
    result_deadline_margin_percent: int = 300  # allowance over the worker's declared speed
    result_deadline_grace_ms: int = 10_000  # added to every result deadline (prompt, network, block time)
    max_waiting_jobs: int = 64  # jobs that may wait for capacity; a request beyond that is refused
    min_model_verifiers: int = 1  # recognised holders of a model, besides the requester, before it takes jobs

    @classmethod
    def from_genesis(cls, params: object, **overrides: int) -> "EconomyParams":
        """Take every same-named field of a `genesis.Params`, then the overrides."""
        values = {name: getattr(params, name) for name in cls._fields if hasattr(params, name)}
        values.update(overrides)
        return cls(**values)
