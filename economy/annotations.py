"""The life of an annotation task on chain: task, annotations, the recognised label, deadlines."""
from __future__ import annotations

from chain.abc import BlockContext, StateAPI, TxContext
from chain.exceptions import WorkRejected
from chain.ledger import get_recognition
from chain.payloads import compute_work_id
from economy.maths import (
    compute_annotation_weight,
    compute_majority_label,
)
from economy.params import EconomyParams
from economy.records import (
    Label,
    TaskRecord,
    TaskStatus,
    compute_without,
    replace_record,
)
from economy.store import (
    ANNOTATION_TASK_ADDRESS,
    OPEN_TASKS_SLOT,
    get_open_tasks,
    get_task,
    set_list,
    write_record,
)
from primitives.hashing import keccak


class AnnotationRules:
    """The annotation half of `WorkRules` (a mixin)."""

    params: EconomyParams

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
