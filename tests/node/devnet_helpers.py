"""Helpers for the devnet and fault tests: free port ranges, bounded waits over JSON-RPC, and the agreement check.

Everything goes through the nodes' JSON-RPC, as an outside observer would see them.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from node.devnet import Devnet, DevnetConfig, find_free_port_range, make_free_config, rpc_or_none

# Faster than the node's defaults so a dead proposer costs ~1.5 s, not 3 s.
TEST_TIMEOUTS_MS = (1500, 500, 500, 200)
MAX_BATCH = 100  # node.rpc.MAX_BATCH_SIZE


def make_test_config(datadir: Path, nodes: int = 4, *, worker: bool = False, **kwargs) -> DevnetConfig:
    return make_free_config(datadir, nodes, worker=worker, timeouts_ms=kwargs.pop("timeouts_ms", TEST_TIMEOUTS_MS),
                            **kwargs)


@contextmanager
def running_devnet(config: DevnetConfig, timeout: float = 90.0):
    devnet = Devnet(config)
    devnet.start()
    try:
        devnet.wait_until_serving(timeout=timeout)
        yield devnet
    finally:
        devnet.stop(grace=10.0)


def get_height(url: str) -> int | None:
    result = rpc_or_none(url, "eth_blockNumber")
    return None if result is None else int(result, 16)


def get_heights(devnet: Devnet, indices) -> dict[int, int | None]:
    return {index: get_height(devnet.nodes[index].rpc_url) for index in indices}


def wait_for_height(devnet: Devnet, indices, height: int, timeout: float, what: str) -> dict[int, int]:
    """Until every node in `indices` is at `height` or above; fails with the heights seen and a log tail."""
    deadline = time.monotonic() + timeout
    heights: dict[int, int | None] = {}
    while time.monotonic() < deadline:
        heights = get_heights(devnet, indices)
        if all(h is not None and h >= height for h in heights.values()):
            return heights
        time.sleep(0.25)
    lagging = min(indices, key=lambda i: heights.get(i) or -1)
    raise AssertionError(f"{what}: wanted height >= {height} on nodes {list(indices)} within {timeout:.0f} s, "
                         f"got {heights}; node{lagging} log tail:\n{devnet.nodes[lagging].read_log_tail(15)}")


def get_block_hash(url: str, number: int) -> str | None:
    block = rpc_or_none(url, "eth_getBlockByNumber", [hex(number), False])
    return None if block is None else block["hash"]


def get_block_hashes(devnet: Devnet, indices, upto: int) -> dict[int, dict[int, str]]:
    """node index -> {height: hash} for heights 1..upto that node has, one batch request per node."""
    hashes: dict[int, dict[int, str]] = {index: {} for index in indices}
    for index in indices:
        for start in range(1, upto + 1, MAX_BATCH):
            batch = [{"jsonrpc": "2.0", "id": n, "method": "eth_getBlockByNumber", "params": [hex(n), False]}
                     for n in range(start, min(upto, start + MAX_BATCH - 1) + 1)]
            response = httpx.post(devnet.nodes[index].rpc_url, json=batch, timeout=30).json()
            hashes[index].update({item["id"]: item["result"]["hash"] for item in response
                                  if isinstance(item, dict) and item.get("result")})
    return hashes


def find_conflicts(hashes: dict[int, dict[int, str]]) -> dict[int, set[str]]:
    """Heights at which two nodes hold different blocks (a conflicting finalisation)."""
    by_height: dict[int, set[str]] = {}
    for per_node in hashes.values():
        for number, block_hash in per_node.items():
            by_height.setdefault(number, set()).add(block_hash)
    return {number: seen for number, seen in by_height.items() if len(seen) > 1}


def assert_agreement(devnet: Devnet, indices, upto: int) -> dict[int, dict[int, str]]:
    """Every node in `indices` has every block 1..upto, and all hold the same hash at each height."""
    hashes = get_block_hashes(devnet, indices, upto)
    for index, per_node in hashes.items():
        missing = [n for n in range(1, upto + 1) if n not in per_node]
        assert not missing, f"node{index} lacks blocks {missing[:10]} (of 1..{upto})"
    conflicts = find_conflicts(hashes)
    assert not conflicts, f"conflicting blocks at heights {sorted(conflicts)[:10]}: {conflicts}"
    return hashes
