"""`WorkRules`: the `chain.abc.WorkRulesAPI` that the node injects into the chain.

A coordinator over the records (`economy.records`, `economy.store`), the pure
maths (`economy.maths`), the router, the committee draw and the audit policy.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from chain.abc import BlockContext, StateAPI, TxContext, WorkRulesAPI
from chain.events import WORKER_REGISTERED, emit_event
from chain.exceptions import WorkRejected
from economy.annotations import AnnotationRules
from economy.audit import (
    AuditPolicy,
)
from economy.jobs import JobRules
from economy.models import ModelRules
from economy.params import EconomyParams
from economy.records import (
    StandingRecord,
    WorkerRecord,
)
from economy.rewards import RewardRules
from economy.routing import (
    RoutingViewCache,
)
from genesis import DEFAULT_MODEL_CARD, ModelCard
from economy.store import (
    REGISTER_WORKER_ADDRESS,
    STANDING_SLOT,
    WORKER_REGISTRY_SLOT,
    get_registered_workers,
    get_standing,
    set_list,
    set_worker_record,
    write_record,
)


class WorkRules(JobRules, AnnotationRules, ModelRules, RewardRules, WorkRulesAPI):
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
        gold_tasks: Sequence = (),
        models: Sequence[ModelCard] = (DEFAULT_MODEL_CARD,),
    ) -> None:
        self.params = params
        self.genesis_models = {card.sha256: card for card in models}  # the genesis models (`economy.models`)
        self.gold_tasks = tuple(gold_tasks)  # the genesis gold set (genesis.GoldTask), for economy.annotations
        self.audit_policy = audit_policy if audit_policy is not None else AuditPolicy()
        self.get_committee_candidates = get_committee_candidates or self.get_recognised_accounts
        self.routing_views = RoutingViewCache(params)

    # -- WorkRulesAPI ------------------------------------------------------------------------

    def apply_work(self, state: StateAPI, block: BlockContext, tx: TxContext, kind: str, payload: object) -> None:
        handler = self.HANDLERS.get(kind)
        if handler is None:
            raise WorkRejected("the economy does not handle this kind of work", got=kind,
                               expected=tuple(self.HANDLERS))
        self.apply_first_transaction(state, block, tx)
        handler(self, state, block, tx, payload)

    def finalize_block(self, state: StateAPI, block: BlockContext) -> int:
        self.process_job_deadlines(state, block)
        self.process_task_deadlines(state, block)
        self.process_gold_tasks(state, block)
        return self.process_rewards(state, block)

    # -- workers -----------------------------------------------------------------------------

    def apply_register_worker(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Register (or re-declare) a worker of a known model; its standing survives a re-declaration."""
        self.validate_known_model(state, payload.model_sha256)
        set_worker_record(state, tx.sender, WorkerRecord(
            model_sha256=payload.model_sha256, capacity=payload.capacity, registered_at=block.number,
            engine=payload.engine))
        if get_standing(state, tx.sender) is None:
            write_record(state, tx.sender, STANDING_SLOT, StandingRecord(
                quality_ppm=self.params.initial_quality_ppm, reliability_ppm=self.params.initial_reliability_ppm,
                load=0, recent_rewards=0, recent_rewards_block=block.number,
                jobs_done=0, jobs_failed_audit=0, jobs_since_caught=0, jobs_late=0))
        emit_event(block, WORKER_REGISTERED, tx.sender, payload.model_sha256, payload.capacity)
        registry = get_registered_workers(state)
        if tx.sender not in registry:
            set_list(state, REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT, registry + (tx.sender,))

    HANDLERS = {
        "register_worker": apply_register_worker,
        "inference_request": JobRules.apply_inference_request,
        "inference_result": JobRules.apply_inference_result,
        "attestation": JobRules.apply_attestation,
        "annotation_task": AnnotationRules.apply_annotation_task,
        "annotation": AnnotationRules.apply_annotation,
        "register_annotator": AnnotationRules.apply_register_annotator,
        "register_model": ModelRules.apply_register_model,
        "declare_models": ModelRules.apply_declare_models,
    }
