"""magicoin economy: jobs, audits, attestations, annotations and rewards, on chain and pure.

The package sits above `chain` and implements its `chain.abc.WorkRulesAPI`;
the node injects it (`make_work_rules(genesis)`) into every `chain.Chain`, so
the chain never imports it. Modules: `params` (the rules in numbers),
`records` (on-chain records and their codec), `store` (where they live),
`maths` (pure arithmetic), `router` and `routing` (whoever needs most),
`committee` (weighted draws), `audit` (the audit policy), `accuracy`
(annotator accuracy, vote weight, the label rule, linked claims), and the rules:
`jobs`, `annotations` and `rewards` (the three halves of the state
transition's work) composed by `rules` (`WorkRules`).


`WorkRules` is what the state transition hands every decoded work payload to;
the on-chain records it keeps:

- per worker account: slot 1 the `WorkerRecord` (model, declared capacity),
  slot 2 the `StandingRecord` (quality and reliability averages, scheduled load,
  recent rewards, audit history), both RLP;
- in the storage of the inference-request address: the `JobRecord`s keyed by
  job id, and the list of open jobs;
- in the storage of the annotation-task address: the `TaskRecord`s keyed by
  task id, and the list of open tasks;
- in the storage of the register-worker address: the registry of workers;
- per annotator account: slot 3 the `AnnotatorRecord` (operator, registration
  block, gold answers seen and correct, tasks drawn and answered); per account,
  slot 4 the block of its first work transaction (accounts created together are
  linked); the registry of annotators in the register-annotator address;
- in the storage of the inference-result address: the reward claims of the
  block being built (cleared by `finalize_block`);
- in the storage of the attestation address: the index of accounts that have
  reached the validator threshold (committee candidates).

Balances move only through `chain.ledger` (`issue`, `credit_reward`), so the
ledger rules hold whatever is decided here. Nothing here reads a clock or a
random source: time is the block number and the header's timestamp (result
deadlines, `economy.jobs.compute_result_deadline_ms`), randomness is the parent hash.

The life of an inference job:
request -> `route` at inclusion over the state's workers (no eligible worker:
the job waits and is retried in every `finalize_block`, largest offering first)
-> a result from the assigned worker by the deadline (late or missing:
reliability drops, the job is reassigned to someone else) -> in the next block,
the audit decision (`economy.audit`), seeded by the hash of the block that
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

The life of an annotation task (`economy.annotations`): annotators are drawn by
the chain, seeded by keccak(parent hash + task id), in proportion to their vote
weight (accuracy measured on the chain's gold tasks, above chance; never
validator recognition), excluding the creator and accounts created with it;
only they may answer; a label carrying more than half of the drawn weight is
recognised and its weighted supporters paid, one claim per linked group.

Rewards: every block issues `issuance_per_block` into the pool; its budget is
that issuance plus `pool_drip_ppm` of the pool. A block whose claims reach
`issuance_per_block / wei_per_unit` units (full) pays its whole budget, shared
pro rata to claim units; a block with fewer pays the same fraction of its budget;
a block with none pays nothing. What is not paid (and the flooring) stays in the
pool, which tends to I(1-F)/(F d) for mean fill F (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from economy.accuracy import (  # noqa: F401
    AccuracyTerms,
    compute_accuracy_ppm,
    compute_linked_groups,
    compute_recognised_label,
    compute_shared_claims,
    compute_vote_weight_ppm,
)
from economy.annotations import (  # noqa: F401
    compute_draw_seed,
    compute_gold_presentation,
    compute_gold_task_id,
    compute_label_permutation,
    is_gold_task,
)
from economy.audit import (  # noqa: F401
    ACCEPTANCE_THRESHOLD_PPM,
    AUDIT_DOMAIN,
    DEFAULT_AUDIT_POLICY,
    AuditDecision,
    AuditPolicy,
    CatchStats,
    NetworkCost,
    WorkerHistory,
    apply_audit_outcome,
    compute_audit_coin,
    compute_audit_decision,
    compute_audit_rate_ppm,
    compute_catch_probability,
    compute_escalation_committee_size,
    compute_required_rate_ppm,
    simulate_catch,
    simulate_network,
)
from economy.committee import (  # noqa: F401
    CommitteeError,
    Member,
    compute_committee,
    compute_draw,
)
from economy.maths import (  # noqa: F401
    compute_block_budget,
    compute_block_payout,
    compute_decayed,
    compute_job_cost,
    compute_output_hash,
    compute_payouts,
    compute_running_average,
    compute_weighted_median,
    is_committee_decided,
    is_committee_quorum,
    is_within_tolerance,
)
from economy.params import (  # noqa: F401
    PPM,
    EconomyParams,
)
from economy.records import (  # noqa: F401
    AnnotatorRecord,
    DECODED_CACHE_LIMIT,
    HASH_PREFIX,
    Claim,
    CommitteeSeat,
    JobRecord,
    JobStatus,
    Label,
    Score,
    StandingRecord,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
    address_or_empty,
    address_sedes,
    compute_without,
    decode_list,
    decode_record,
    encode_list,
    encode_record,
    hash32,
    make_record,
    replace_record,
    try_encode_record,
)
from economy.router import (  # noqa: F401
    LIST_OFFSET,
    MAX_QUALITY_PPM,
    SCHEDULABLE_DENOMINATOR,
    SCHEDULABLE_NUMERATOR,
    InvalidRoutingInput,
    RouterError,
    RoutingSnapshot,
    WorkerView,
    compute_encoded_snapshot_hash,
    compute_priority_key,
    compute_routing_snapshot_hash,
    compute_tiebreak_hash,
    compute_utilisation,
    get_eligible_workers,
    hash32_sedes,
    is_assignment_valid,
    is_eligible,
    is_preferred,
    is_within_schedulable_capacity,
    make_routing_snapshot,
    route,
    select_worker,
    validate_job,
    validate_routing_snapshot,
)
from economy.routing import (  # noqa: F401
    RoutingTerms,
    RoutingView,
    RoutingViewCache,
    get_routing_snapshot,
    get_worker_view,
    get_free_room,
    validate_routing_floor,
)
from economy.jobs import (  # noqa: F401
    NetworkBusy,
    compute_busy_message,
    compute_result_deadline_ms,
    get_job_status_name,
    is_past_result_deadline,
    validate_waiting_room,
)
from economy.models import (  # noqa: F401
    ModelRules,
    ModelUnverifiable,
    UnknownModel,
    compute_model_name,
    get_declared_models,
    get_registered_model,
    get_registered_models,
    is_model_holder,
)
from economy.rules import (  # noqa: F401
    WorkRules,
)
from economy.store import (  # noqa: F401
    ANNOTATION_TASK_ADDRESS,
    ANNOTATOR_REGISTRY_SLOT,
    ANNOTATOR_SLOT,
    FIRST_TX_SLOT,
    REGISTER_ANNOTATOR_ADDRESS,
    get_annotator,
    get_first_tx_block,
    get_registered_annotators,
    ATTESTATION_ADDRESS,
    CLAIMS_SLOT,
    INFERENCE_REQUEST_ADDRESS,
    INFERENCE_RESULT_ADDRESS,
    OPEN_JOBS_SLOT,
    OPEN_TASKS_SLOT,
    POOL_ADDRESS,
    RECOGNISED_SLOT,
    REGISTER_WORKER_ADDRESS,
    STANDING_SLOT,
    WORKER_REGISTRY_SLOT,
    WORKER_SLOT,
    add_claim,
    clear_claims,
    compute_claim_slot,
    get_claim_count,
    get_claims,
    get_job,
    get_list,
    get_open_jobs,
    get_open_tasks,
    get_waiting_job_count,
    get_registered_workers,
    get_standing,
    get_task,
    get_worker_record,
    read_record,
    set_list,
    set_worker_record,
    write_record,
)
from genesis import Genesis


def make_work_rules(genesis: Genesis) -> WorkRules:
    """The recognition economy configured from a chain's genesis parameters (what a node runs)."""
    return WorkRules(EconomyParams.from_genesis(genesis.params), AuditPolicy.from_genesis(genesis.params),
                     gold_tasks=genesis.gold_tasks, models=genesis.models)
