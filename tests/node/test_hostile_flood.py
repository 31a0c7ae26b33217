"""A mempool flood from many fresh accounts (issue 14): 5,000 valid zero-fee transactions from 500
zero-balance accounts, sent over JSON-RPC to one validator of a two-validator network on loopback.

What must hold while it lasts: both nodes stay up and keep finalising; the mempool never holds more than
its global cap (evicting the busiest senders' newest transactions to make room), no account holds more
than the per-account limit in it nor gets more than `max_txs_per_account_per_block` into any block; the
process's memory grows by a bounded amount; and an honest transaction sent in the middle of the flood is
included within a few blocks.

The limits are set small here (pool 400, 8 per account, 4 per account per block) so that every one of
them is reached by the 5,000 transactions; the defaults only scale them up.
"""
from __future__ import annotations

import time
from collections import Counter

import httpx
import rlp
import trio
from eth_utils import keccak

from chain.payloads import Offering
from chain.transactions import decode_transaction, sign_work_transaction
from node.mempool import MempoolConfig
from tests.node.nodekit import (
    PARAMS,
    VALIDATOR_KEYS,
    make_test_genesis,
    start_network,
    wait_for_peers,
)

ACCOUNTS = 500
PER_ACCOUNT = 10
BATCH = 100  # JSON-RPC batch size (the server's batch limit)
SENDERS = 8  # concurrent JSON-RPC clients, so the flood arrives faster than blocks drain it
POOL_CAP = 400
PER_ACCOUNT_POOL = 8
PER_ACCOUNT_BLOCK = 4
BLOCK_INTERVAL = 1.0  # seconds: the flood arrives much faster than blocks drain it, so the pool fills
MAX_HONEST_BLOCKS = 12  # generous: the pool ahead of it is at most 400 txs, blocks hold up to 1,000
MAX_RSS_GROWTH_MB = 300  # generous: 400 pending txs of ~150 bytes are well under a megabyte


def get_rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def sign_offerings(seed: bytes, count: int, chain_id: int) -> list[bytes]:
    key = keccak(seed)  # a fresh account: zero balance, nonce 0
    data = rlp.encode(Offering(b"flood", b""))
    return [sign_work_transaction(key, chain_id=chain_id, nonce=nonce, kind="offering", data=data, gas=100_000)
            for nonce in range(count)]


async def send_batch(client: httpx.AsyncClient, raws: list[bytes]) -> list[dict]:
    body = [{"jsonrpc": "2.0", "id": index, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}
            for index, raw in enumerate(raws)]
    response = await client.post("/", json=body)
    assert response.status_code == 200, response.text[:300]
    return response.json()


async def test_a_flood_from_500_fresh_accounts_keeps_limits_finality_and_honest_latency(tmp_path):
    params = PARAMS.copy(max_txs_per_account_per_block=PER_ACCOUNT_BLOCK)
    genesis = make_test_genesis(2, params=params)
    chain_id = genesis.chain_id
    flood = [sign_offerings(b"flood-%d" % index, PER_ACCOUNT, chain_id) for index in range(ACCOUNTS)]
    # Account after account, each sending its ten at once: the per-account limit refuses the last two, and
    # once the pool is full each fresh account's first transaction evicts the busiest sender's newest.
    ordered = [raw for account in flood for raw in account]
    honest = sign_offerings(b"honest during the flood", 1, chain_id)[0]
    honest_hash = "0x" + keccak(honest).hex()
    config = MempoolConfig(max_size=POOL_CAP, max_per_account=PER_ACCOUNT_POOL)

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:2], http=("127.0.0.1", 0),
                                        mempool_config=config, block_interval=BLOCK_INTERVAL)
            await wait_for_peers(nodes, 1)
            target = nodes[0]
            start_height = min(node.chain.height for node in nodes)
            rss_before = get_rss_mb()
            observed = {"largest_pool": 0, "largest_account": 0}
            refusals: Counter[str] = Counter()
            accepted = 0
            honest_at: dict[str, float] = {}
            half_sent = trio.Event()

            def observe_pools() -> None:
                for node in nodes:
                    observed["largest_pool"] = max(observed["largest_pool"], len(node.mempool))
                    pending = node.mempool._by_sender  # the pool's own record, read-only here
                    observed["largest_account"] = max(observed["largest_account"],
                                                      max(map(len, pending.values()), default=0))

            async def watch_pools(task_status=trio.TASK_STATUS_IGNORED) -> None:
                task_status.started()
                while True:
                    observe_pools()
                    await trio.sleep(0.005)

            async def send_share(client: httpx.AsyncClient, share: list[bytes]) -> None:
                nonlocal accepted
                for offset in range(0, len(share), BATCH):
                    for answer in await send_batch(client, share[offset:offset + BATCH]):
                        if "result" in answer:
                            accepted += 1
                        else:
                            assert answer["error"]["code"] == -32000, answer  # refused with a reason, not a crash
                            refusals[answer["error"]["message"].split(" (")[0]] += 1
                    if accepted + sum(refusals.values()) >= len(ordered) // 2:
                        half_sent.set()

            async def send_honest(client: httpx.AsyncClient) -> None:
                await half_sent.wait()
                honest_at["height"], honest_at["sent"] = target.chain.height, time.monotonic()
                answer = (await send_batch(client, [honest]))[0]
                assert answer.get("result") == honest_hash, answer  # admitted into a full pool
                while (receipt := (await client.post("/", json={
                        "jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt",
                        "params": [honest_hash]})).json()["result"]) is None:
                    await trio.sleep(0.02)
                honest_at["blocks"] = int(receipt["blockNumber"], 16) - honest_at["height"]
                honest_at["seconds"] = time.monotonic() - honest_at["sent"]

            async with httpx.AsyncClient(base_url=target.http_url, timeout=30,
                                         limits=httpx.Limits(max_connections=SENDERS + 2)) as client:
                watcher = trio.CancelScope()

                async def run_watcher() -> None:
                    with watcher:
                        await watch_pools()

                nursery.start_soon(run_watcher)
                started = time.monotonic()
                async with trio.open_nursery() as senders:
                    senders.start_soon(send_honest, client)
                    share = -(-ACCOUNTS // SENDERS) * PER_ACCOUNT
                    for index in range(SENDERS):
                        senders.start_soon(send_share, client, ordered[index * share:(index + 1) * share])
                flood_seconds = time.monotonic() - started
                watcher.cancel()
                observe_pools()
                honest_blocks, honest_seconds = honest_at["blocks"], honest_at["seconds"]

                # A fresh read is served promptly once the flood has been absorbed.
                answered = time.monotonic()
                response = await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber",
                                                        "params": []})
                assert "result" in response.json()
                read_seconds = time.monotonic() - answered
            rss_growth = get_rss_mb() - rss_before

            # Both validators keep finalising after the flood.
            after = min(node.chain.height for node in nodes)
            while min(node.chain.height for node in nodes) < after + 3:
                await trio.sleep(0.05)
            end_height = min(node.chain.height for node in nodes)
            stats = target.mempool.statistics()

            # Every block's transactions: at most PER_ACCOUNT_BLOCK per sender, and the same chain on both nodes.
            included = 0
            for number in range(start_height + 1, end_height + 1):
                block = nodes[0].chain.get_block_by_number(number)
                assert block.hash == nodes[1].chain.get_block_by_number(number).hash
                senders = Counter(decode_transaction(raw, chain_id, params.max_payload_size).sender
                                  for raw in block.transactions)
                assert max(senders.values(), default=0) <= PER_ACCOUNT_BLOCK, (number, senders.most_common(1))
                included += len(block.transactions)
            nursery.cancel_scope.cancel()

    print(f"\nflood: {accepted} accepted, refused {dict(refusals)}, sent in {flood_seconds:.1f} s; "
          f"largest pool {observed['largest_pool']}; evicted {stats['evicted']}; blocks {start_height}..{end_height}, "
          f"{included} txs included; honest tx in {honest_blocks} blocks / {honest_seconds:.1f} s; "
          f"eth_blockNumber after {read_seconds * 1000:.0f} ms; RSS +{rss_growth:.0f} MB")
    assert observed["largest_pool"] <= POOL_CAP, "the global cap held"
    assert observed["largest_account"] <= PER_ACCOUNT_POOL, "the per-account limit held"
    assert stats["evicted"] > 0, "a full pool made room by evicting, not by refusing newcomers"
    assert refusals.get("too many pending transactions from this account", 0) > 0, "the per-account limit bit"
    assert accepted + sum(refusals.values()) == ACCOUNTS * PER_ACCOUNT
    assert included > 0
    assert 0 < honest_blocks <= MAX_HONEST_BLOCKS, honest_blocks
    assert read_seconds < 2.0
    assert rss_growth < MAX_RSS_GROWTH_MB, rss_growth
