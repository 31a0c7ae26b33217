"""The life of an annotation task on chain: annotators registered, drawn, measured on gold, and paid.

The rule (docs/ARCHITECTURE.md, "Annotation: drawn annotators, gold, accuracy weight"):
- an account registers as an annotator (`register_annotator`); the registry and
  each annotator's record (gold answers, tasks drawn and answered) live in state;
- a posted task's annotators are drawn by the chain, seeded by keccak(parent hash
  + task id), with probability proportional to their vote weight for the task's
  label count, among registered annotators other than the creator and accounts
  created together with it (same block of annotator registration or first
  transaction). Only drawn annotators may answer;
- every `gold_interval_blocks` the chain itself posts a gold task from the
  genesis gold set (labels permuted by the seed), drawn among the annotators
  with the fewest gold tasks so far; it resolves against the known answer and
  updates the annotators' accuracy, and pays nothing;
- a vote weighs the annotator's measured accuracy above chance
  (`economy.accuracy`); a label is recognised when it carries more than half the
  drawn annotators' total weight; agreeing annotators with weight are paid, one
  claim per group of linked annotators.

Events of `MagicoinAnnotations` (`chain.events`): AnnotationTaskPosted (posted
tasks; gold tasks are posted silently, as the RPC shows them), Annotated,
LabelRecognised and AnnotationTaskClosed (with the final status, gold included).
"""
from __future__ import annotations

from typing import Sequence

from chain.abc import BlockContext, StateAPI, TxContext
from chain.events import ANNOTATED, ANNOTATION_TASK_CLOSED, ANNOTATION_TASK_POSTED, LABEL_RECOGNISED, emit_event
from chain.exceptions import WorkRejected
from chain.payloads import compute_work_id
from economy.accuracy import compute_recognised_label, compute_shared_claims, compute_vote_weight_ppm
from economy.committee import compute_committee, compute_draw
from economy.params import EconomyParams
from economy.records import (
    AnnotatorRecord,
    CommitteeSeat,
    Label,
    TaskRecord,
    TaskStatus,
    compute_without,
    make_record,
    replace_record,
)
from economy.store import (
    ANNOTATION_TASK_ADDRESS,
    ANNOTATOR_REGISTRY_SLOT,
    OPEN_TASKS_SLOT,
    REGISTER_ANNOTATOR_ADDRESS,
    get_annotator,
    get_first_tx_block,
    get_open_tasks,
    get_registered_annotators,
    get_task,
    set_annotator,
    set_first_tx_block,
    set_list,
    write_record,
)
from primitives.hashing import keccak

GOLD_DOMAIN = b"magicoin:gold-task"


# --- pure helpers (also what the RPC and the duties use to present a gold task) -----------------------

def compute_draw_seed(parent_hash: bytes, task_id: bytes) -> bytes:
    """The seed of a task's annotator draw: the parent hash is unknown when the task is signed."""
    return keccak(parent_hash + task_id)


def compute_gold_task_id(parent_hash: bytes, number: int) -> bytes:
    """The id of the gold task made in block `number` (its own domain: never a keccak(sender, nonce))."""
    return keccak(GOLD_DOMAIN + parent_hash + number.to_bytes(8, "big"))


def compute_label_permutation(task_id: bytes, labels: int) -> tuple[int, ...]:
    """The order a gold task shows its labels in: shown index i is the gold item's label perm[i].

    A Fisher-Yates shuffle seeded by the task id, so an index copied from an
    earlier showing of the same item is right only by chance.
    """
    order = list(range(labels))
    for i in range(labels - 1, 0, -1):
        j = compute_draw(task_id, i, i + 1)
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def compute_gold_presentation(gold_task, task_id: bytes) -> tuple[bytes, list[bytes], int]:
    """(content, labels in shown order, the shown index of the answer) of a genesis `GoldTask` in task `task_id`."""
    order = compute_label_permutation(task_id, len(gold_task.labels))
    return bytes(gold_task.content), [bytes(gold_task.labels[i]) for i in order], order.index(gold_task.answer)


def is_gold_task(task: TaskRecord) -> bool:
    return task.gold > 0


class AnnotationRules:
    """The annotation part of `WorkRules` (a mixin). `gold_tasks` is the genesis gold set."""

    params: EconomyParams
    gold_tasks: Sequence = ()

    # -- the registry ------------------------------------------------------------------------

    def apply_register_annotator(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Register, or re-declare the operator; the record (and its registration block) survives."""
        record = get_annotator(state, tx.sender)
        if record is None:
            record = make_record(AnnotatorRecord, (bytes(payload.operator), block.number, 0, 0, 0, 0, 0, 0))
            set_list(state, REGISTER_ANNOTATOR_ADDRESS, ANNOTATOR_REGISTRY_SLOT,
                     get_registered_annotators(state) + (tx.sender,))
        else:
            record = replace_record(record, operator=bytes(payload.operator))
        set_annotator(state, tx.sender, record)

    def apply_first_transaction(self, state: StateAPI, block: BlockContext, tx: TxContext) -> None:
        """Remember the block of an account's first work transaction: accounts created together are linked."""
        if tx.nonce == 0 and get_first_tx_block(state, tx.sender) is None:
            set_first_tx_block(state, tx.sender, block.number)

    def get_cohort(self, state: StateAPI, address: bytes, record: AnnotatorRecord | None) -> frozenset[int]:
        """The blocks the account was created in: its annotator registration and its first transaction."""
        blocks = set()
        if record is not None:
            blocks.add(record.registered_at)
        first = get_first_tx_block(state, address)
        if first is not None:
            blocks.add(first)
        return frozenset(blocks)

    def get_vote_weight(self, record: AnnotatorRecord, labels: int) -> int:
        return compute_vote_weight_ppm(record.gold_correct, record.gold_seen, labels, self.params)

    # -- posted tasks --------------------------------------------------------------------------

    def apply_annotation_task(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        task_id = compute_work_id(tx.sender, tx.nonce)
        if get_task(state, task_id) is not None:
            raise WorkRejected("task id already used", got=task_id, expected="a fresh (sender, nonce)")
        labels = len(payload.labels)
        seats = self.draw_annotators(state, compute_draw_seed(block.parent_hash, task_id), tx.sender, labels,
                                     payload.k)
        if not seats:
            # A task nobody measured can label would only ever expire: refused now, with the reason.
            raise WorkRejected("no eligible annotator for this task", got=0,
                               expected="a registered annotator with a gold record above chance, "
                                        "not the creator and not created in the same block as it")
        deadline_block = block.number + self.params.annotation_deadline_blocks
        self.open_task(state, task_id, make_record(TaskRecord, (
            tx.sender, keccak(payload.content), labels, len(seats), block.number,
            deadline_block, TaskStatus.OPEN, (), 0, seats, 0)))
        emit_event(block, ANNOTATION_TASK_POSTED, task_id, tx.sender, labels, len(seats), deadline_block)

    def draw_annotators(self, state: StateAPI, seed: bytes, creator: bytes, labels: int,
                        k: int) -> tuple[CommitteeSeat, ...]:
        """Up to k annotators, each draw proportional to vote weight; weightless and linked ones never.

        Fewer eligible annotators than k: all of them (the task's k is what was drawn).
        """
        creator_cohort = self.get_cohort(state, creator, get_annotator(state, creator))
        candidates = []
        for address in get_registered_annotators(state):
            record = get_annotator(state, address)
            if address == creator or self.get_cohort(state, address, record) & creator_cohort:
                continue
            candidates.append((address, self.get_vote_weight(record, labels)))
        return tuple(make_record(CommitteeSeat, member) for member in compute_committee(candidates, seed, k))

    def open_task(self, state: StateAPI, task_id: bytes, task: TaskRecord) -> None:
        write_record(state, ANNOTATION_TASK_ADDRESS, task_id, task)
        set_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT, get_open_tasks(state) + (task_id,))
        for seat in task.annotators:
            record = get_annotator(state, seat.address)
            set_annotator(state, seat.address, replace_record(
                record, tasks_assigned=record.tasks_assigned + 1,
                gold_assigned=record.gold_assigned + is_gold_task(task)))

    # -- gold tasks ----------------------------------------------------------------------------

    def process_gold_tasks(self, state: StateAPI, block: BlockContext) -> None:
        """Every `gold_interval_blocks`, post a gold task from the genesis set to the least-measured annotators."""
        if not self.gold_tasks or block.number % self.params.gold_interval_blocks != 0:
            return
        registry = get_registered_annotators(state)
        if not registry:
            return
        task_id = compute_gold_task_id(block.parent_hash, block.number)
        index = compute_draw(task_id, 0, len(self.gold_tasks))
        gold = self.gold_tasks[index]
        labels = len(gold.labels)
        seats = self.draw_gold_annotators(state, task_id, registry, labels)
        self.open_task(state, task_id, make_record(TaskRecord, (
            ANNOTATION_TASK_ADDRESS, keccak(bytes(gold.content)), labels, len(seats), block.number,
            block.number + self.params.annotation_deadline_blocks, TaskStatus.OPEN, (), 0, seats, index + 1)))

    def draw_gold_annotators(self, state: StateAPI, task_id: bytes, registry: tuple[bytes, ...],
                             labels: int) -> tuple[CommitteeSeat, ...]:
        """The `committee_size` annotators with the fewest gold tasks drawn so far (ties by a seeded hash).

        Fewest drawn, not fewest answered, so an annotator that never answers cannot hold the gold seats.
        """
        records = {address: get_annotator(state, address) for address in registry}
        ranked = sorted(registry, key=lambda a: (records[a].gold_assigned, keccak(task_id + a)))
        return tuple(make_record(CommitteeSeat, (a, self.get_vote_weight(records[a], labels)))
                     for a in ranked[:self.params.committee_size])

    def resolve_gold_task(self, state: StateAPI, block: BlockContext, task_id: bytes, task: TaskRecord) -> None:
        """Score each answer against the known one; gold is measurement, so nobody is paid."""
        _, _, answer = compute_gold_presentation(self.gold_tasks[task.gold - 1], task_id)
        for annotation in task.annotations:
            record = get_annotator(state, annotation.address)
            set_annotator(state, annotation.address, replace_record(
                record, gold_seen=record.gold_seen + 1,
                gold_correct=record.gold_correct + (annotation.label_index == answer)))
        if task.annotations:
            self.close_task(state, block, task_id, replace_record(task, label_index=answer), TaskStatus.RECOGNISED)
        else:
            self.close_task(state, block, task_id, task, TaskStatus.EXPIRED)

    # -- answers --------------------------------------------------------------------------------

    def apply_annotation(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        task, seat = self.validate_annotation(state, block, tx, payload)
        task = replace_record(task, annotations=task.annotations + (
            make_record(Label, (tx.sender, payload.label_index, seat.weight)),))
        record = get_annotator(state, tx.sender)
        set_annotator(state, tx.sender, replace_record(record, tasks_answered=record.tasks_answered + 1))
        emit_event(block, ANNOTATED, payload.task_id, tx.sender, payload.label_index, seat.weight)
        if len(task.annotations) < len(task.annotators):
            write_record(state, ANNOTATION_TASK_ADDRESS, payload.task_id, task)
            return
        self.resolve_task(state, block, payload.task_id, task, complete=True)

    def validate_annotation(self, state: StateAPI, block: BlockContext, tx: TxContext,
                            payload) -> tuple[TaskRecord, CommitteeSeat]:
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
        seat = next((s for s in task.annotators if s.address == tx.sender), None)
        if seat is None:
            raise WorkRejected("not drawn for this task", got=tx.sender,
                               expected=f"one of the {len(task.annotators)} annotators the chain drew for it")
        if tx.sender in {a.address for a in task.annotations}:
            raise WorkRejected("this account already annotated the task", got=tx.sender, expected="one label each")
        return task, seat

    # -- outcomes -------------------------------------------------------------------------------

    def resolve_task(self, state: StateAPI, block: BlockContext, task_id: bytes, task: TaskRecord,
                     complete: bool) -> None:
        """Close a task whose drawn annotators all answered (`complete`) or whose deadline came."""
        if is_gold_task(task):
            self.resolve_gold_task(state, block, task_id, task)
            return
        total = sum(seat.weight for seat in task.annotators)
        winner = compute_recognised_label(((a.label_index, a.weight) for a in task.annotations), total)
        if winner is None:
            self.close_task(state, block, task_id, task, TaskStatus.NO_MAJORITY if complete else TaskStatus.EXPIRED)
            return
        self.pay_agreeing_annotators(state, task, winner)
        self.close_task(state, block, task_id, replace_record(task, label_index=winner), TaskStatus.RECOGNISED)

    def pay_agreeing_annotators(self, state: StateAPI, task: TaskRecord, winner: int) -> None:
        """One claim per group of linked agreeing annotators; a weightless vote earns nothing."""
        agreeing = []
        for annotation in task.annotations:
            if annotation.label_index == winner and annotation.weight > 0:
                record = get_annotator(state, annotation.address)
                agreeing.append((annotation.address, self.get_cohort(state, annotation.address, record)))
        for address, units in compute_shared_claims(agreeing, self.params.annotation_units):
            self.add_claim(state, address, units)
            record = get_annotator(state, address)
            set_annotator(state, address, replace_record(record, units_claimed=record.units_claimed + units))

    def close_task(self, state: StateAPI, block: BlockContext, task_id: bytes, task: TaskRecord, status: int) -> None:
        if status == TaskStatus.RECOGNISED:
            emit_event(block, LABEL_RECOGNISED, task_id, task.label_index)
        emit_event(block, ANNOTATION_TASK_CLOSED, task_id, status)
        write_record(state, ANNOTATION_TASK_ADDRESS, task_id, replace_record(task, status=status))
        remaining = compute_without(get_open_tasks(state), task_id)
        set_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT, remaining)

    def process_task_deadlines(self, state: StateAPI, block: BlockContext) -> None:
        for task_id in get_open_tasks(state):
            task = get_task(state, task_id)
            if block.number >= task.deadline_block:
                self.resolve_task(state, block, task_id, task, complete=False)
