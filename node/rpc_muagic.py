"""The `muagic_` JSON-RPC methods: headers and commits for light clients, and the economy's records.

Quantities are hex, as `eth_` methods return them. Records (jobs, tasks,
workers, standings) are read from state through `economy`'s getters,
so this module never knows a storage slot. The work a record names (a job's
messages, a task's content and labels) lives in the transaction that created
it; it is found in the block the record says it was created in.

A job or task that does not exist is `null` (as an unknown transaction is for
`eth_getTransactionByHash`); a block that does not exist is error -32001.
"""
from __future__ import annotations

import rlp

from chain.blocks import Block, split_encoded_block
from chain.chain import encode_validator_set
from chain.ledger import get_issued, get_pool_balance, get_recognition
from chain.payloads import compute_work_id, decode_payload
from chain.transactions import decode_transaction
from consensus.votes import Commit
import economy
from node.abc import NodeAPI
from node.account_work import MAX_SCAN_BLOCKS, find_account_work, get_work_status
from node.rpc_core import (
    BlockTag,
    InvalidParams,
    MethodTable,
    NotFound,
    Param,
    encode_data,
    encode_quantity,
    get_state,
    get_tagged_header,
    parse_address,
    parse_block_tag,
    parse_hash,
    parse_quantity,
)

VERIFIED_JOB_STATUSES = ("accepted", "failed_audit")  # a committee or the worker's standing decided a score
FINAL_JOB_STATUSES = ("accepted", "failed_audit", "unverified", "expired")

MUAGIC_METHODS = MethodTable()
method = MUAGIC_METHODS.method


def get_status_names(status_class) -> dict[int, str]:
    """{code: "name"} from the economy's status constants (JobStatus.ACCEPTED -> "accepted")."""
    return {value: name.lower() for name, value in vars(status_class).items()
            if name.isupper() and isinstance(value, int)}


def get_job_status_name(status: int) -> str:
    return get_status_names(economy.JobStatus).get(status, f"unknown_{status}")


def get_task_status_name(status: int) -> str:
    return get_status_names(economy.TaskStatus).get(status, f"unknown_{status}")


def get_economy_params(node: NodeAPI):
    params = getattr(node.chain.rules, "params", None)
    return params if isinstance(params, economy.EconomyParams) else economy.EconomyParams.from_genesis(node.genesis.params)


# --- light-client material --------------------------------------------------------------------------

MAX_HEADERS_PER_CALL = 256  # muagic_getHeaders' bound: about 0.5 MB of JSON, one light-client window


def get_header_number(node: NodeAPI, tag: BlockTag) -> int | None:
    """The canonical height a numeric tag names (NotFound past the head); None for names and hashes."""
    if tag.number is None:
        return None
    if tag.number > node.chain.height:
        raise NotFound("block not found", {"got": tag.number, "expected": f"<= {node.chain.height}"})
    return tag.number


def encode_header_json(number: int, block_hash: bytes, header_rlp: bytes) -> dict:
    return {"number": encode_quantity(number), "hash": encode_data(block_hash), "rlp": encode_data(header_rlp)}


@method("muagic_getHeader", Param("block", parse_block_tag, "latest"))
def muagic_get_header(node: NodeAPI, tag: BlockTag) -> dict:
    number = get_header_number(node, tag)
    if number is not None:
        # Cut from the stored block: a header request decodes nothing.
        chain = node.chain
        return encode_header_json(number, chain.store.get_canonical_hash(number), chain.get_encoded_header(number))
    header = get_tagged_header(node, tag)
    return encode_header_json(header.number, header.hash, rlp.encode(header))


@method("muagic_getHeaders", Param("from", parse_quantity), Param("count", parse_quantity))
def muagic_get_headers(node: NodeAPI, first: int, count: int) -> list:
    """Canonical headers first..first+count-1 (cut at the head), each with the RLP of the commit that
    finalised it (`muagic_getCommit`'s `rlp`; null for genesis and for a head whose commit is not stored).

    One call per window for sequential light-client sync, with nothing decoded: the commit for
    block N is the last_commit slice of block N+1, which also gives the header of N+1.
    """
    if not 1 <= count <= MAX_HEADERS_PER_CALL:
        raise InvalidParams("count out of range", got=count, expected=f"1..{MAX_HEADERS_PER_CALL}")
    chain = node.chain
    height = chain.height
    if first > height:
        raise NotFound("block not found", {"got": first, "expected": f"<= {height}"})
    last = min(height, first + count - 1)
    store = chain.store
    hashes = [store.get_canonical_hash(number) for number in range(first, last + 1)]
    parts = [split_encoded_block(store.get_encoded_block(block_hash)) for block_hash in hashes]
    if last < height:
        parts.append(split_encoded_block(store.get_encoded_block(store.get_canonical_hash(last + 1))))
    headers = []
    for index, number in enumerate(range(first, last + 1)):
        if number == 0:
            commit = None
        elif number < height:
            commit = parts[index + 1][2]
        else:
            commit = store.get_encoded_commit(hashes[index])
        item = encode_header_json(number, hashes[index], parts[index][0])
        item["commit"] = encode_data(commit) if commit is not None else None
        headers.append(item)
    return headers


@method("muagic_getCommit", Param("block", parse_block_tag, "latest"))
def muagic_get_commit(node: NodeAPI, tag: BlockTag) -> dict | None:
    """The commit that finalised the block (None for genesis, which no one votes on, or a head not yet stored)."""
    number = get_header_number(node, tag)
    if number is None:
        number = get_tagged_header(node, tag).number
    encoded = node.chain.get_encoded_commit(number)
    if encoded is None:
        return None
    commit = rlp.decode(encoded, sedes=Commit)
    return {
        "height": encode_quantity(commit.height),
        "round": encode_quantity(commit.round),
        "blockHash": encode_data(commit.block_hash),
        "rlp": encode_data(encoded),
        "signatures": [{"validator": encode_data(s.validator), "signature": encode_data(s.signature)}
                       for s in commit.signatures],
    }


def encode_validator_set_json(node: NodeAPI, validators_hash: bytes) -> dict:
    validator_set = node.chain.get_validator_set(validators_hash)
    return {
        "hash": encode_data(validators_hash),
        "totalWeight": encode_quantity(validator_set.total_weight),
        "validators": [{"address": encode_data(v.address), "weight": encode_quantity(v.weight)}
                       for v in validator_set.members],
        "rlp": encode_data(encode_validator_set(validator_set)),
    }


@method("muagic_getValidatorSet", Param("block", parse_block_tag, "latest"))
def muagic_get_validator_set(node: NodeAPI, tag: BlockTag) -> dict:
    """The set whose commit finalises this block (the header's validators_hash)."""
    return encode_validator_set_json(node, get_tagged_header(node, tag).validators_hash)


@method("muagic_getValidators", Param("block", parse_block_tag, "latest"))
def muagic_get_validators(node: NodeAPI, tag: BlockTag) -> list:
    header = get_tagged_header(node, tag)
    state = get_state(node, tag)
    validator_set = node.chain.get_validator_set(header.validators_hash)
    return [{"address": encode_data(v.address), "weight": encode_quantity(v.weight),
             "recognition": encode_quantity(get_recognition(state, v.address)),
             "balance": encode_quantity(state.get_balance(v.address)),
             "isProposer": v.address == header.proposer}
            for v in validator_set.members]


# --- accounts and the pool ------------------------------------------------------------------------------

@method("muagic_getRecognition", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
def muagic_get_recognition(node: NodeAPI, address: bytes, tag: BlockTag) -> str:
    return encode_quantity(get_recognition(get_state(node, tag), address))


@method("muagic_getAccount", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
def muagic_get_account(node: NodeAPI, address: bytes, tag: BlockTag) -> dict:
    state = get_state(node, tag)
    header = get_tagged_header(node, tag)
    worker = None
    if economy.get_worker_record(state, address) is not None:
        worker = encode_worker(node, state, address, header.number)
    return {
        "address": encode_data(address),
        "nonce": encode_quantity(state.get_nonce(address)),
        "balance": encode_quantity(state.get_balance(address)),
        "recognition": encode_quantity(get_recognition(state, address)),
        "worker": worker,
    }


@method("muagic_getPool", Param("block", parse_block_tag, "latest"))
def muagic_get_pool(node: NodeAPI, tag: BlockTag) -> dict:
    state = get_state(node, tag)
    return {"balance": encode_quantity(get_pool_balance(state)), "issued": encode_quantity(get_issued(state))}


# --- workers -----------------------------------------------------------------------------------------------

def encode_worker(node: NodeAPI, state, address: bytes, block_number: int) -> dict:
    record = economy.get_worker_record(state, address)
    standing = economy.get_standing(state, address)
    view = economy.get_worker_view(state, address, get_economy_params(node), block_number)
    return {
        "address": encode_data(address),
        "model": encode_data(record.model_sha256),
        "capacity": encode_quantity(record.capacity),
        "load": encode_quantity(standing.load),
        "quality": encode_quantity(standing.quality_ppm),
        "reliability": encode_quantity(standing.reliability_ppm),
        "recentRewards": encode_quantity(view.recent_rewards),
        "jobsDone": encode_quantity(standing.jobs_done),
        "jobsFailedAudit": encode_quantity(standing.jobs_failed_audit),
        "jobsLate": encode_quantity(standing.jobs_late),
        "registeredAt": encode_quantity(record.registered_at),
        "engine": record.engine.decode("utf-8", errors="replace"),
    }


@method("muagic_getWorkers", Param("block", parse_block_tag, "latest"))
def muagic_get_workers(node: NodeAPI, tag: BlockTag) -> list:
    state = get_state(node, tag)
    number = get_tagged_header(node, tag).number
    return [encode_worker(node, state, address, number) for address in economy.get_registered_workers(state)]


# --- jobs and annotation tasks ----------------------------------------------------------------------------------

def find_creating_transaction(node: NodeAPI, block_number: int, requester: bytes, work_id: bytes, kind: str):
    """(tx, payload) of the `kind` transaction in block `block_number` whose (sender, nonce) names `work_id`."""
    try:
        block: Block = node.chain.get_block_by_number(block_number)
    except Exception:  # noqa: BLE001 - a pruned or missing block only loses the extra detail
        return None, None
    genesis = node.genesis
    for raw in block.transactions:
        tx = decode_transaction(raw, genesis.chain_id, genesis.params.max_payload_size)
        if tx.kind == kind and tx.sender == requester and compute_work_id(tx.sender, tx.nonce) == work_id:
            return tx, decode_payload(kind, tx.data)
    return None, None


def compute_job_reward(job, params) -> int:
    """The worker's claim for an accepted job (wei, before any pro-rata scaling of the block's budget)."""
    if get_job_status_name(job.status) != "accepted":
        return 0
    return job.output_tokens * job.score_ppm * params.wei_per_unit


@method("muagic_getJob", Param("jobId", parse_hash))
def muagic_get_job(node: NodeAPI, job_id: bytes) -> dict | None:
    state = node.chain.state
    job = economy.get_job(state, job_id)
    if job is None:
        return None
    status = get_job_status_name(job.status)
    request_tx, request = find_creating_transaction(node, job.created_block, job.requester, job_id,
                                                    "inference_request")
    return {
        "jobId": encode_data(job_id),
        "requester": encode_data(job.requester),
        "model": encode_data(job.model_sha256),
        "maxTokens": encode_quantity(job.max_tokens),
        "status": status,
        "verified": status in VERIFIED_JOB_STATUSES,
        "final": status in FINAL_JOB_STATUSES,
        "worker": encode_data(job.worker) if job.worker else None,
        "createdBlock": encode_quantity(job.created_block),
        "deadlineBlock": encode_quantity(job.deadline_block),
        "deadlineMs": encode_quantity(job.deadline_ms),  # the result deadline (block timestamps) while assigned
        "attempts": encode_quantity(job.attempts),
        "requestTx": encode_data(request_tx.hash) if request_tx is not None else None,
        "messages": [{"role": m.role.decode(errors="replace"), "content": m.content.decode(errors="replace")}
                     for m in request.messages] if request is not None else None,
        "result": {"tx": encode_data(job.result_tx), "outputHash": encode_data(job.output_hash),
                   "outputTokens": encode_quantity(job.output_tokens)} if job.result_tx else None,
        "audited": bool(job.audited),
        "committee": [{"address": encode_data(s.address), "weight": encode_quantity(s.weight)} for s in job.committee],
        "attestations": [{"address": encode_data(s.address), "score": encode_quantity(s.score_ppm)}
                         for s in job.attestations],
        "score": encode_quantity(job.score_ppm) if status in VERIFIED_JOB_STATUSES else None,
        "reward": encode_quantity(compute_job_reward(job, get_economy_params(node))),
    }


@method("muagic_getOpenJobs")
def muagic_get_open_jobs(node: NodeAPI) -> list:
    return [encode_data(job_id) for job_id in economy.get_open_jobs(node.chain.state)]


def get_task_content(node: NodeAPI, task_id: bytes, task) -> tuple[bytes | None, list[bytes] | None, object]:
    """(content, labels in shown order, creating tx) of a task: a gold task's come from the genesis gold set."""
    if economy.is_gold_task(task):
        gold_tasks = node.genesis.gold_tasks
        if task.gold > len(gold_tasks):
            return None, None, None
        content, labels, _ = economy.compute_gold_presentation(gold_tasks[task.gold - 1], task_id)
        return content, labels, None
    tx, payload = find_creating_transaction(node, task.created_block, task.requester, task_id, "annotation_task")
    if payload is None:
        return None, None, tx
    return bytes(payload.content), [bytes(label) for label in payload.labels], tx


def decode_text(value: bytes | None) -> str | None:
    return value.decode(errors="replace") if value is not None else None


@method("muagic_getAnnotationTask", Param("taskId", parse_hash))
def muagic_get_annotation_task(node: NodeAPI, task_id: bytes) -> dict | None:
    """A task; `gold` is true only once a gold task has closed (while open it is shown like any other)."""
    task = economy.get_task(node.chain.state, task_id)
    if task is None:
        return None
    content, labels, tx = get_task_content(node, task_id, task)
    status = get_task_status_name(task.status)
    gold = economy.is_gold_task(task)
    return {
        "taskId": encode_data(task_id),
        "requester": None if gold else encode_data(task.requester),  # the chain made it: nobody requested it
        "contentHash": encode_data(task.content_hash),
        "content": decode_text(content),
        "labels": [decode_text(label) for label in labels] if labels is not None else None,
        "k": encode_quantity(task.k),
        "createdBlock": encode_quantity(task.created_block),
        "deadlineBlock": encode_quantity(task.deadline_block),
        "annotators": [encode_data(seat.address) for seat in task.annotators],
        "annotations": [{"address": encode_data(a.address), "label": encode_quantity(a.label_index),
                         "weight": encode_quantity(a.weight)} for a in task.annotations],
        "label": encode_quantity(task.label_index) if status == "recognised" else None,
        "status": status,
        "gold": gold and status != "open",
        "requestTx": encode_data(tx.hash) if tx is not None else None,
    }


@method("muagic_getAnnotator", Param("address", parse_address))
def muagic_get_annotator(node: NodeAPI, address: bytes) -> dict | None:
    """An annotator's record and measured accuracy; `weightPpm` is its vote weight on a two-label task."""
    record = economy.get_annotator(node.chain.state, address)
    if record is None:
        return None
    params = get_economy_params(node)
    return {
        "address": encode_data(address),
        "operator": record.operator.decode(errors="replace"),
        "registeredAt": encode_quantity(record.registered_at),
        "goldSeen": encode_quantity(record.gold_seen),
        "goldCorrect": encode_quantity(record.gold_correct),
        "accuracyPpm": encode_quantity(economy.compute_accuracy_ppm(record.gold_correct, record.gold_seen, params)),
        "weightPpm": encode_quantity(economy.compute_vote_weight_ppm(record.gold_correct, record.gold_seen, 2,
                                                                     params)),
        "tasksAssigned": encode_quantity(record.tasks_assigned),
        "tasksAnswered": encode_quantity(record.tasks_answered),
        "unitsClaimed": encode_quantity(record.units_claimed),
    }


@method("muagic_getAssignedTasks", Param("address", parse_address))
def muagic_get_assigned_tasks(node: NodeAPI, address: bytes) -> list:
    """Open tasks drawn for `address` that it has not answered, gold or not, shown alike."""
    state = node.chain.state
    assigned = []
    for task_id in economy.get_open_tasks(state):
        task = economy.get_task(state, task_id)
        if address not in {seat.address for seat in task.annotators}:
            continue
        if address in {a.address for a in task.annotations}:
            continue
        content, labels, _ = get_task_content(node, task_id, task)
        assigned.append({
            "taskId": encode_data(task_id),
            "content": decode_text(content),
            "labels": [decode_text(label) for label in labels] if labels is not None else None,
            "deadlineBlock": encode_quantity(task.deadline_block),
            "k": encode_quantity(task.k),
        })
    return assigned


@method("muagic_getOpenAnnotationTasks")
def muagic_get_open_annotation_tasks(node: NodeAPI) -> list:
    return [encode_data(task_id) for task_id in economy.get_open_tasks(node.chain.state)]


# --- an account's own work -------------------------------------------------------------------------------

@method("muagic_getAccountWork", Param("address", parse_address), Param("fromBlock", parse_quantity, None),
        Param("toBlock", parse_quantity, None))
def muagic_get_account_work(node: NodeAPI, address: bytes, first: int | None, last: int | None) -> list:
    """The transactions `address` sent in blocks fromBlock..toBlock (default: the newest 10,000), oldest
    first, each with the job or task it created or answered and that work's status now."""
    height = node.chain.height
    last = height if last is None else last
    first = max(0, last - MAX_SCAN_BLOCKS + 1) if first is None else first
    if not 0 <= last - first < MAX_SCAN_BLOCKS:
        raise InvalidParams("block range out of bounds", got=[first, last],
                            expected=f"fromBlock <= toBlock, at most {MAX_SCAN_BLOCKS} blocks")
    last = min(last, height)  # a range reaching past the head is read up to the head, as eth_getLogs does
    state = node.chain.state
    return [{"txHash": encode_data(item.tx_hash), "blockNumber": encode_quantity(item.block_number),
             "nonce": encode_quantity(item.nonce), "kind": item.kind,
             "workId": encode_data(item.work_id) if item.work_id is not None else None,
             "status": get_work_status(state, item), "receiptStatus": encode_quantity(item.receipt_status),
             "failureReason": item.failure_reason or None}
            for item in find_account_work(node, address, first, last)]


# --- the node -------------------------------------------------------------------------------------------------

@method("muagic_status")
def muagic_status(node: NodeAPI) -> dict:
    return encode_status(node.get_status())


def encode_status(value):
    """The node's live figures as JSON (bytes as 0x-hex), whatever the services put in them."""
    if isinstance(value, (bytes, bytearray)):
        return encode_data(bytes(value))
    if isinstance(value, dict):
        return {str(k): encode_status(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_status(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


__all__ = ["FINAL_JOB_STATUSES", "VERIFIED_JOB_STATUSES", "get_job_status_name", "get_task_status_name"]
