"""Work events as receipt logs, on a real chain (LevelDB, the economy, build_block and import_block).

A job goes request -> assignment -> result -> audit -> attestations -> acceptance
-> reward, an annotation task is posted, answered and its label recognised, an
offering and a slash are made, and a refused annotation is included failed.
Every step must appear as the published ABI's event (decoded here with eth_abi
from docs/abi/magicoin.json, as a client would), refused work must log
nothing, end-of-block events must sit in the block receipt, and the receipts
root must commit to all of it: a second chain re-executing the blocks agrees,
and a block whose header claims other logs is refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_abi import decode as abi_decode
from eth_utils import keccak

from chain.blocks import (
    EMPTY_BLOOM,
    Block,
    Log,
    compute_receipts_root,
    is_bloom_containing,
    make_receipt,
)
from chain.chain import Chain
from chain.db import LevelDB
from chain.events import CONTRACT_ADDRESSES, EVENTS, compute_event_abis
from chain.exceptions import HeaderMismatch
from chain.transition import execute_block
from economy import EconomyParams, JobStatus, TaskStatus, WorkRules
from genesis.keys import get_address
from tests.node.conftest_rpc import (
    ANNOTATOR_KEYS,
    MODEL,
    REQUESTER_KEY,
    VALIDATORS,
    WORKER_KEY,
    RPCTestNode,
    build_work_history,
)

ABI_PATH = Path(__file__).parents[2] / "docs" / "abi" / "magicoin.json"


def load_event_abis() -> dict[int, tuple[str, bytes, list[dict]]]:
    """topic0 -> (event name, contract address, inputs), from the published ABI file."""
    events = {}
    for contract in json.loads(ABI_PATH.read_text()).values():
        address = bytes.fromhex(contract["address"][2:])
        for entry in contract["abi"]:
            if entry["type"] == "event":
                signature = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                events[int.from_bytes(keccak(signature.encode()), "big")] = (entry["name"], address, entry["inputs"])
    return events


EVENT_ABIS = load_event_abis()


def decode_log(log: Log) -> tuple[str, dict]:
    """(name, args) of a log, decoded as ethers/web3 decode it: indexed args from topics, the rest from data."""
    name, address, inputs = EVENT_ABIS[log.topics[0]]
    assert log.address == address, f"{name} comes from its contract's address"
    indexed = [i for i in inputs if i["indexed"]]
    assert len(log.topics) == 1 + len(indexed)
    args = {}
    for item, topic in zip(indexed, log.topics[1:]):
        args[item["name"]] = abi_decode([item["type"]], topic.to_bytes(32, "big"))[0]
    rest = [i for i in inputs if not i["indexed"]]
    for item, value in zip(rest, abi_decode([i["type"] for i in rest], log.data)):
        args[item["name"]] = value
    return name, args


def addr(key: bytes) -> str:
    return "0x" + get_address(key).hex()


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    node = RPCTestNode(tmp_path_factory.mktemp("events") / "db")
    work = build_work_history(node)
    yield node, work
    node.close()


def get_events(node, block_hash: bytes) -> tuple[list[list[tuple[str, dict]]], list[tuple[str, dict]]]:
    """Per transaction its decoded events, and the block receipt's (empty when it has none)."""
    per_tx = [[decode_log(log) for log in r.logs] for r in node.chain.get_receipts(block_hash)]
    block_receipt = node.chain.store.get_block_receipt(block_hash)
    return per_tx, [decode_log(log) for log in block_receipt.logs] if block_receipt else []


def find_block(node, tx_hash: bytes) -> tuple[Block, int]:
    block, index, _ = node.chain.get_transaction(tx_hash)
    return block, index


def test_the_published_abi_holds_every_event():
    abis = compute_event_abis()
    assert {topic for topic in EVENT_ABIS} == {event.topic for event in EVENTS}
    for name, (address, _) in abis.items():
        assert bytes.fromhex(address[2:]) == CONTRACT_ADDRESSES[name]


def test_a_job_logs_each_step_and_the_rewards(history):
    node, work = history
    worker, requester = get_address(WORKER_KEY), get_address(REQUESTER_KEY)
    job_id = work.job_id

    block, index = find_block(node, work.tx_hashes["register_worker"])
    registered = get_events(node, block.hash)[0][index]
    assert registered == [("WorkerRegistered", {"worker": addr(WORKER_KEY), "model": MODEL, "capacity": 100})]

    block, index = find_block(node, work.tx_hashes["inference_request"])
    per_tx, _ = get_events(node, block.hash)
    requested, assigned = per_tx[index]
    assert requested[0] == "JobRequested" and requested[1]["jobId"] == job_id
    assert requested[1]["requester"] == "0x" + requester.hex() and requested[1]["maxTokens"] == 16
    assert assigned[0] == "JobAssigned" and assigned[1]["jobId"] == job_id
    assert assigned[1]["worker"] == "0x" + worker.hex() and assigned[1]["attempt"] == 1
    assert assigned[1]["deadlineBlock"] == block.number + node.genesis.params.result_deadline_blocks

    block, index = find_block(node, work.tx_hashes["inference_result"])
    [(name, result)] = get_events(node, block.hash)[0][index]
    assert name == "JobResult" and result["jobId"] == job_id and result["outputTokens"] == 4

    block, index = find_block(node, work.tx_hashes["attestation"])
    per_tx, block_events = get_events(node, block.hash)
    attested = [e for events in per_tx for e in events if e[0] == "JobAttested"]
    assert sorted(e[1]["attester"] for e in attested) == sorted("0x" + a.hex() for a in work.committee)
    assert all(e[1]["scorePpm"] == 1_000_000 and e[1]["jobId"] == job_id for e in attested)
    closed = [e for events in per_tx for e in events if e[0] == "JobClosed"]
    assert closed == [("JobClosed", {"jobId": job_id, "status": JobStatus.ACCEPTED, "scorePpm": 1_000_000})]
    # The reward is paid at the end of the block: the block receipt, one Rewarded per paid account.
    rewarded = {args["account"]: args["amount"] for name, args in block_events if name == "Rewarded"}
    assert "0x" + worker.hex() in rewarded and all(amount > 0 for amount in rewarded.values())
    state = node.chain.state_at(block.header.state_root)
    parent_state = node.chain.state_at(node.chain.get_header(block.number - 1).state_root)
    for account, amount in rewarded.items():
        address = bytes.fromhex(account[2:])
        # What the log says was paid is what the balance gained (tips are zero in the history).
        assert state.get_balance(address) - parent_state.get_balance(address) == amount


def test_an_annotation_task_logs_posting_answers_and_the_recognised_label(history):
    node, work = history
    block, index = find_block(node, work.tx_hashes["annotation_task"])
    [(name, posted)] = get_events(node, block.hash)[0][index]
    assert name == "AnnotationTaskPosted" and posted["taskId"] == work.task_id
    assert posted["labels"] == 2 and posted["annotators"] == 3 and posted["requester"] == addr(REQUESTER_KEY)

    block, _ = find_block(node, work.tx_hashes["annotation"])
    per_tx, block_events = get_events(node, block.hash)
    annotated = [args for events in per_tx for name, args in events if name == "Annotated"]
    assert sorted(a["annotator"] for a in annotated) == sorted(addr(k) for k in ANNOTATOR_KEYS)
    assert all(a["labelIndex"] == 0 and a["weightPpm"] > 0 for a in annotated)
    flat = [e for events in per_tx for e in events]
    assert ("LabelRecognised", {"taskId": work.task_id, "labelIndex": 0}) in flat
    assert ("AnnotationTaskClosed", {"taskId": work.task_id, "status": TaskStatus.RECOGNISED}) in flat
    rewarded = {args["account"] for name, args in block_events if name == "Rewarded"}
    assert {addr(k) for k in ANNOTATOR_KEYS} <= rewarded


def test_refused_work_logs_nothing_and_offering_and_slash_are_logged(history):
    node, work = history
    _, index, receipt, reason = node.chain.get_receipt(work.failed_tx)
    assert receipt.status == 0 and reason and receipt.logs == () and receipt.logs_bloom == EMPTY_BLOOM
    # A log-free receipt keeps the precomputed encoding (the replay benchmark's fast path).
    assert receipt.encode() == make_receipt(False, receipt.cumulative_gas_used).encode()

    block, index = find_block(node, work.tx_hashes["offering"])
    per_tx, _ = get_events(node, block.hash)
    [(name, offering)] = per_tx[index]
    assert name == "Offering" and offering["account"] == "0x" + VALIDATORS[1].hex()
    assert offering["jobId"] == work.job_id and offering["amount"] == 5 * 10**18
    _, evidence_index = find_block(node, work.tx_hashes["evidence"])
    [(name, slashed)] = per_tx[evidence_index]
    assert name == "Slashed" and slashed["offender"] == "0x" + VALIDATORS[3].hex()
    assert slashed["reporter"] == "0x" + VALIDATORS[2].hex() and slashed["amount"] > 0
    assert node.chain.state_at(block.header.state_root).get_balance(VALIDATORS[3]) == 0
    # The block's bloom (kept beside its receipts) covers the pool address and the event topics.
    bloom = node.chain.store.get_logs_bloom(block.hash)
    assert is_bloom_containing(bloom, CONTRACT_ADDRESSES["MagicoinPool"])
    assert is_bloom_containing(bloom, EVENTS[0].topic.to_bytes(32, "big"))


def test_the_receipts_root_commits_to_the_logs_and_the_block_receipt(history, tmp_path):
    node, work = history
    follower_db = LevelDB(tmp_path / "follower")
    try:
        follower = Chain.from_genesis(follower_db, node.genesis, lambda genesis: WorkRules(
            EconomyParams.from_genesis(genesis.params), models=genesis.models))
        with_block_receipt = 0
        for number in range(1, node.chain.height + 1):
            block = node.chain.get_block_by_number(number)
            receipts = node.chain.get_receipts(block.hash)
            block_receipt = node.chain.store.get_block_receipt(block.hash)
            committed = receipts + ([block_receipt] if block_receipt else [])
            assert compute_receipts_root(committed) == block.header.receipts_root
            if block_receipt is not None:
                with_block_receipt += 1
                assert block_receipt.status == 1 and block_receipt.logs
                # Without the block receipt (or with one log less) the root is another: it is committed.
                assert compute_receipts_root(receipts) != block.header.receipts_root
                forged = make_receipt(True, block_receipt.cumulative_gas_used, block_receipt.logs[:-1])
                assert compute_receipts_root(receipts + [forged]) != block.header.receipts_root
            outcome = execute_block(follower.scratch_state(), follower.head, block, follower.genesis, follower.rules)
            assert outcome.receipts == tuple(receipts) and outcome.block_receipt == block_receipt
            follower.import_block(block)
        assert with_block_receipt >= 1  # the rewards of the attested job and of the annotations
        # A header whose receipts root leaves the end-of-block events out is refused by execution.
        rewarding, _ = find_block(node, work.tx_hashes["attestation"])
        assert node.chain.store.get_block_receipt(rewarding.hash) is not None
        parent = node.chain.get_header(rewarding.number - 1)
        forged_header = rewarding.header.copy(receipts_root=compute_receipts_root(node.chain.get_receipts(rewarding.hash)))
        with pytest.raises(HeaderMismatch) as refused:
            execute_block(node.chain.scratch_state(parent.state_root), parent, rewarding.copy(header=forged_header),
                          node.genesis, node.chain.rules)
        assert refused.value.field == "receipts_root"
    finally:
        follower_db.close()
