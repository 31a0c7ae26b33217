"""The light client checks receipts with their logs: work events and the block receipt of end-of-block events.

A chain with a job audited and rewarded and an annotation task (its rewards are
end-of-block events, in the block receipt) is served by the node's real HTTP
server; the light client verifies every block body against the receipts root,
and a proxy that drops the block receipt, changes a log or forges a bloom is
caught as a `BlockBodyMismatch`.
"""
from __future__ import annotations

import pytest

from node.http import serve_http
from node.light import HTTPTransport, LightClient
from node.light.exceptions import BlockBodyMismatch
from tests.light.kit import at, start_proxy, with_result
from tests.node.conftest_rpc import RPCTestNode, build_work_history


@pytest.fixture
async def served(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    work = build_work_history(node)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    yield node, work, url
    node.close()


def get_rewarding_height(node, work) -> int:
    block, _, _ = node.chain.get_transaction(work.tx_hashes["attestation"])
    assert node.chain.store.get_block_receipt(block.hash) is not None
    return block.number


async def test_block_bodies_with_logs_and_block_receipts_verify(served):
    node, _, url = served
    client = await LightClient.from_genesis(node.genesis, HTTPTransport(url, timeout=5))
    await client.sync(skipping=False)
    with_logs = 0
    for height in range(1, node.chain.height + 1):
        block = await client.get_block(height)
        expected = node.chain.get_block_by_number(height)
        assert [tx.raw for tx in block.transactions] == list(expected.transactions)
        with_logs += node.chain.store.get_logs_bloom(expected.hash) is not None
    assert with_logs >= 4


@pytest.mark.parametrize("lie", ["drop the block receipt", "change a log", "forge a bloom"])
async def test_a_lie_about_logs_is_caught(served, nursery, lie):
    node, work, url = served
    height = get_rewarding_height(node, work)

    def rewrite(response):
        receipts = [dict(r) for r in response["result"]]
        if lie == "drop the block receipt":
            assert receipts[-1]["blockEvents"]
            receipts = receipts[:-1]
        elif lie == "change a log":
            logs = [dict(log) for log in receipts[-1]["logs"]]
            logs[0]["data"] = "0x" + "00" * 31 + "01"  # a reward of 1 wei
            receipts[-1]["logs"] = logs
        else:
            receipts[0]["logsBloom"] = "0x" + "ff" * 256
        return with_result(response, receipts)

    _, proxy_url = await start_proxy(nursery, url, at("eth_getBlockReceipts", height, rewrite))
    client = await LightClient.from_genesis(node.genesis, HTTPTransport(proxy_url, timeout=5))
    await client.sync(skipping=False)
    with pytest.raises(BlockBodyMismatch):
        await client.get_block(height)
    await client.get_block(height - 1)  # the other blocks are untouched and still verify
