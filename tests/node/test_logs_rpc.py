"""eth_getLogs and the polled filters against a chain carrying every kind of work (real Chain on LevelDB).

Checks the shapes (logIndex across the block, the block receipt's synthetic
transaction hash and index), the filter object (address lists, positional
topics, null wildcards, OR lists, blockHash), and the bounds: bad filter
objects are -32602, a range over 10,000 blocks is -32602, too many results
are -32005, too many filters are -32005, and an idle filter expires.
"""
from __future__ import annotations

import json

import pytest
from eth_utils import keccak

from chain.events import JOB_ATTESTED, OFFERING, REWARDED, compute_block_events_hash
from node import rpc_filters, rpc_logs
from node.rpc import RPCDispatcher
from tests.node.conftest_rpc import VALIDATORS, RPCTestNode, build_work_history


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    node = RPCTestNode(tmp_path_factory.mktemp("logs") / "db")
    work = build_work_history(node)
    yield node, work, RPCDispatcher(node)
    node.close()


def call(dispatcher: RPCDispatcher, method: str, *params) -> dict:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode()
    return json.loads(dispatcher.handle(body))


def topic(event) -> str:
    return "0x" + event.topic.to_bytes(32, "big").hex()


def pad(address: bytes) -> str:
    return "0x" + address.rjust(32, b"\x00").hex()


def test_logs_match_the_receipts_and_the_block_receipt(served):
    node, _, dispatcher = served
    every = call(dispatcher, "eth_getLogs", {"fromBlock": "earliest", "toBlock": "latest"})["result"]
    assert every
    seen_block_events = False
    for number in range(1, node.chain.height + 1):
        block = node.chain.get_block_by_number(number)
        receipts = call(dispatcher, "eth_getBlockReceipts", hex(number))["result"]
        from_receipts = [log for r in receipts for log in r["logs"]]
        assert [log for log in every if log["blockNumber"] == hex(number)] == from_receipts
        assert [int(log["logIndex"], 16) for log in from_receipts] == list(range(len(from_receipts)))
        if node.chain.store.get_block_receipt(block.hash) is not None:
            last = receipts[-1]
            assert last["blockEvents"] is True and last["transactionIndex"] == hex(len(block.transactions))
            assert last["transactionHash"] == "0x" + compute_block_events_hash(number, block.hash).hex()
            assert {log["topics"][0] for log in last["logs"]} >= {topic(REWARDED)}
            # Found by its hash as a transaction's receipt is (ethers' waitForTransaction, explorers' links);
            # but it is no transaction.
            assert call(dispatcher, "eth_getTransactionReceipt", last["transactionHash"])["result"] == last
            assert call(dispatcher, "eth_getTransactionByHash", last["transactionHash"])["result"] is None
            seen_block_events = True
        else:
            assert len(receipts) == len(block.transactions)
    assert seen_block_events
    assert call(dispatcher, "eth_getTransactionReceipt", "0x" + "ab" * 32)["result"] is None


def test_the_filter_object_selects_by_address_and_positional_topics(served):
    node, work, dispatcher = served

    def get(spec: dict) -> list:
        return call(dispatcher, "eth_getLogs", {"fromBlock": "0x0", **spec})["result"]

    offerings = get({"topics": [topic(OFFERING)]})
    assert [log["transactionHash"] for log in offerings] == ["0x" + work.tx_hashes["offering"].hex()]
    assert get({"topics": [topic(OFFERING), pad(VALIDATORS[1])]}) == offerings
    assert get({"topics": [topic(OFFERING), pad(VALIDATORS[2])]}) == []
    assert get({"topics": [[topic(OFFERING), topic(JOB_ATTESTED)]]}) == sorted(
        offerings + get({"topics": [topic(JOB_ATTESTED)]}), key=lambda log: int(log["blockNumber"], 16))
    job = "0x" + work.job_id.hex()
    by_job = get({"topics": [None, job]})
    assert {log["topics"][1] for log in by_job} == {job} and len(by_job) >= 5  # requested, assigned, result, ...
    pool, jobs = "0x" + "00" * 18 + "1000", "0x" + "00" * 18 + "1002"
    assert {log["address"] for log in get({"address": [pool, jobs]})} == {pool, jobs}
    block_hash = offerings[0]["blockHash"]
    assert offerings[0] in call(dispatcher, "eth_getLogs", {"blockHash": block_hash})["result"]
    assert get({"topics": [topic(OFFERING)], "toBlock": hex(int(offerings[0]["blockNumber"], 16) - 1)}) == []
    assert call(dispatcher, "eth_getLogs", {"fromBlock": hex(node.chain.height + 5)})["result"] == []


@pytest.mark.parametrize("spec", [
    {"blockHash": "0x" + "00" * 32, "fromBlock": "0x0"},
    {"topics": [None] * 5},
    {"topics": "0x00"},
    {"topics": [["0x" + "11" * 32] * 65]},
    {"address": ["0x" + "22" * 20] * 257},
    {"address": "0x1234"},
    {"fromBlock": "0x0", "toBlock": hex(20_000)},
    {"fromBlock": "0x" + "ab" * 32},
    {"unknown": 1},
])
def test_bad_filter_objects_are_invalid_params(served, spec):
    _, _, dispatcher = served
    answer = call(dispatcher, "eth_getLogs", spec)
    assert answer["error"]["code"] == -32602, answer


def test_too_many_results_is_refused_with_32005(served, monkeypatch):
    _, _, dispatcher = served
    monkeypatch.setattr(rpc_logs, "MAX_RESULTS", 3)
    answer = call(dispatcher, "eth_getLogs", {"fromBlock": "0x0"})
    assert answer["error"]["code"] == -32005 and answer["error"]["message"] == "query returned more than 3 results"


def test_filters_report_changes_once_and_are_bounded(served, monkeypatch):
    node, _, dispatcher = served
    block_filter = call(dispatcher, "eth_newBlockFilter")["result"]
    log_filter = call(dispatcher, "eth_newFilter", {"fromBlock": "0x0", "topics": [topic(REWARDED)]})["result"]
    assert call(dispatcher, "eth_getFilterChanges", block_filter)["result"] == []
    built = node.produce([])  # a new head
    assert call(dispatcher, "eth_getFilterChanges", block_filter)["result"] == ["0x" + built.block.hash.hex()]
    assert call(dispatcher, "eth_getFilterChanges", block_filter)["result"] == []
    assert call(dispatcher, "eth_getFilterChanges", log_filter)["result"] == []  # nothing rewarded since
    history = call(dispatcher, "eth_getFilterLogs", log_filter)["result"]
    assert history and all(log["topics"][0] == topic(REWARDED) for log in history)
    assert call(dispatcher, "eth_getFilterLogs", block_filter)["error"]["code"] == -32000
    # Idle filters expire (geth: 5 minutes without a poll).
    registry = rpc_filters.get_filter_registry(node)
    now = registry.clock()
    monkeypatch.setattr(registry, "clock", lambda: now + rpc_filters.FILTER_TIMEOUT + 1)
    assert call(dispatcher, "eth_getFilterChanges", log_filter)["error"]["message"] == "filter not found"
    monkeypatch.setattr(rpc_filters, "MAX_FILTERS", 2)
    call(dispatcher, "eth_newBlockFilter")
    call(dispatcher, "eth_newBlockFilter")
    assert call(dispatcher, "eth_newBlockFilter")["error"]["code"] == -32005
    assert call(dispatcher, "eth_newPendingTransactionFilter")["error"]["code"] == -32601
    assert call(dispatcher, "eth_uninstallFilter", "0x" + keccak(b"nothing").hex()[:32])["result"] is False
