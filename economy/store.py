"""Where the economy keeps its records in the state: addresses, slots and accessors.

Slot 0 of an account is its recognition (chain.ledger's); slots 1 and 2 are the
economy's. The system tables live in the storage of the work kinds' addresses.
"""
from __future__ import annotations

from typing import Iterable

import rlp

from chain.abc import StateAPI
from chain.transactions import ADDRESS_BY_KIND
from chain.transactions import POOL_ADDRESS as POOL
from economy.records import (
    AnnotatorRecord,
    Claim,
    JobRecord,
    StandingRecord,
    TaskRecord,
    WorkerRecord,
    decode_list,
    decode_record,
    encode_list,
    encode_record,
    make_record,
)
from primitives.hashing import keccak

POOL_ADDRESS = POOL
REGISTER_WORKER_ADDRESS = ADDRESS_BY_KIND["register_worker"]
INFERENCE_REQUEST_ADDRESS = ADDRESS_BY_KIND["inference_request"]
INFERENCE_RESULT_ADDRESS = ADDRESS_BY_KIND["inference_result"]
ATTESTATION_ADDRESS = ADDRESS_BY_KIND["attestation"]
ANNOTATION_TASK_ADDRESS = ADDRESS_BY_KIND["annotation_task"]
REGISTER_ANNOTATOR_ADDRESS = ADDRESS_BY_KIND["register_annotator"]
REGISTER_MODEL_ADDRESS = ADDRESS_BY_KIND["register_model"]

# Slot 0 of an account is its recognition (chain.ledger's); slots 1 and 2 are the economy's.
WORKER_SLOT = (1).to_bytes(32, "big")
STANDING_SLOT = (2).to_bytes(32, "big")
ANNOTATOR_SLOT = (3).to_bytes(32, "big")  # the AnnotatorRecord of an account that registered as an annotator
FIRST_TX_SLOT = (4).to_bytes(32, "big")  # the block of the account's first (nonce 0) work transaction
HELD_MODELS_SLOT = (5).to_bytes(32, "big")  # the models an account declared it holds (`declare_models`)
# Named slots of the system tables; keccak of a label cannot collide with a keccak-derived job/task id.
WORKER_REGISTRY_SLOT = keccak(b"magicoin:workers")
OPEN_JOBS_SLOT = keccak(b"magicoin:open-jobs")
OPEN_TASKS_SLOT = keccak(b"magicoin:open-tasks")
CLAIMS_SLOT = keccak(b"magicoin:claims")
RECOGNISED_SLOT = keccak(b"magicoin:recognised")
WAITING_JOBS_SLOT = keccak(b"magicoin:waiting-jobs")  # how many job records are WAITING (kept by economy.jobs)
ANNOTATOR_REGISTRY_SLOT = keccak(b"magicoin:annotators")
MODEL_REGISTRY_SLOT = keccak(b"magicoin:models")  # sha256s registered by `register_model` (genesis models are not listed)

def read_record(state: StateAPI, address: bytes, slot: bytes, sedes: type[rlp.Serializable]):
    raw = state.get_storage(address, slot)
    return decode_record(sedes, raw) if raw else None


def write_record(state: StateAPI, address: bytes, slot: bytes, record: rlp.Serializable | None) -> None:
    state.set_storage(address, slot, b"" if record is None else encode_record(record))


def get_worker_record(state: StateAPI, address: bytes) -> WorkerRecord | None:
    return read_record(state, address, WORKER_SLOT, WorkerRecord)


def set_worker_record(state: StateAPI, address: bytes, record: WorkerRecord) -> None:
    write_record(state, address, WORKER_SLOT, record)


def get_standing(state: StateAPI, address: bytes) -> StandingRecord | None:
    return read_record(state, address, STANDING_SLOT, StandingRecord)


def get_job(state: StateAPI, job_id: bytes) -> JobRecord | None:
    return read_record(state, INFERENCE_REQUEST_ADDRESS, job_id, JobRecord)


def get_task(state: StateAPI, task_id: bytes) -> TaskRecord | None:
    return read_record(state, ANNOTATION_TASK_ADDRESS, task_id, TaskRecord)


def get_list(state: StateAPI, address: bytes, slot: bytes) -> tuple[bytes, ...]:
    """A stored RLP list of byte strings (addresses or ids); () when absent."""
    raw = state.get_storage(address, slot)
    return decode_list(raw) if raw else ()


def set_list(state: StateAPI, address: bytes, slot: bytes, items: Iterable[bytes]) -> None:
    """Store a list of byte strings; an empty list deletes the slot."""
    items = list(items)
    state.set_storage(address, slot, encode_list(items) if items else b"")


def get_registered_workers(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT)


def get_registered_annotators(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, REGISTER_ANNOTATOR_ADDRESS, ANNOTATOR_REGISTRY_SLOT)


def get_annotator(state: StateAPI, address: bytes) -> AnnotatorRecord | None:
    return read_record(state, address, ANNOTATOR_SLOT, AnnotatorRecord)


def set_annotator(state: StateAPI, address: bytes, record: AnnotatorRecord) -> None:
    write_record(state, address, ANNOTATOR_SLOT, record)


def get_first_tx_block(state: StateAPI, address: bytes) -> int | None:
    """The block of the account's first work transaction, if the economy saw it (None: unknown)."""
    raw = state.get_storage(address, FIRST_TX_SLOT)
    return int.from_bytes(raw, "big") if raw else None


def set_first_tx_block(state: StateAPI, address: bytes, number: int) -> None:
    state.set_storage(address, FIRST_TX_SLOT, number.to_bytes(8, "big"))


def get_open_jobs(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, INFERENCE_REQUEST_ADDRESS, OPEN_JOBS_SLOT)


def get_waiting_job_count(state: StateAPI) -> int:
    return int.from_bytes(state.get_storage(INFERENCE_REQUEST_ADDRESS, WAITING_JOBS_SLOT), "big")


def set_waiting_job_count(state: StateAPI, count: int) -> None:
    state.set_storage(INFERENCE_REQUEST_ADDRESS, WAITING_JOBS_SLOT, count.to_bytes(8, "big") if count else b"")


def get_open_tasks(state: StateAPI) -> tuple[bytes, ...]:
    return get_list(state, ANNOTATION_TASK_ADDRESS, OPEN_TASKS_SLOT)


def get_claim_count(state: StateAPI) -> int:
    return int.from_bytes(state.get_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT), "big")


def compute_claim_slot(index: int) -> bytes:
    return keccak(CLAIMS_SLOT + index.to_bytes(8, "big"))


def get_claims(state: StateAPI) -> tuple[Claim, ...]:
    """This block's claims, in the order they were made (one slot each, so adding one is O(1))."""
    return tuple(read_record(state, INFERENCE_RESULT_ADDRESS, compute_claim_slot(i), Claim)
                 for i in range(get_claim_count(state)))


def add_claim(state: StateAPI, address: bytes, units: int) -> None:
    count = get_claim_count(state)
    write_record(state, INFERENCE_RESULT_ADDRESS, compute_claim_slot(count), make_record(Claim, (address, units)))
    state.set_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT, (count + 1).to_bytes(8, "big"))


def clear_claims(state: StateAPI) -> None:
    for index in range(get_claim_count(state)):
        state.set_storage(INFERENCE_RESULT_ADDRESS, compute_claim_slot(index), b"")
    state.set_storage(INFERENCE_RESULT_ADDRESS, CLAIMS_SLOT, b"")
