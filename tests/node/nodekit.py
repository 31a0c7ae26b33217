"""Helpers for the node tests: a 4-validator genesis generated here, in-process nodes on loopback, and the
pinned npm packages (ethers, openai) the JS flows in tests/node/js run with."""
from __future__ import annotations

import subprocess
from pathlib import Path

import trio
from eth_utils import keccak

from consensus.bft import TimeoutConfig
from genesis import DEFAULT_PARAMS, make_genesis
from genesis.keys import get_address
from node.service import Node

CHAIN_ID = 4747
VALIDATOR_KEYS = [keccak(b"node-test-validator-%d" % i) for i in range(4)]
PARAMS = DEFAULT_PARAMS.copy(epoch_length=1000)
JS_DIR = Path(__file__).parent / "js"
FAST_TIMEOUTS = TimeoutConfig(propose_ms=1500, prevote_ms=500, precommit_ms=500, delta_ms=200)


def make_test_genesis(count: int = 4, params=PARAMS):
    return make_genesis(CHAIN_ID, [get_address(k) for k in VALIDATOR_KEYS[:count]], params=params,
                        timestamp_ms=1_700_000_000_000)


def make_node(genesis, datadir: Path, key: bytes | None, bootnodes=(), **kwargs) -> Node:
    return Node(genesis, datadir, validator_key=key, bootnodes=tuple(bootnodes), timeouts=FAST_TIMEOUTS,
                block_interval=kwargs.pop("block_interval", 0.1), **kwargs)


async def start_node(nursery: trio.Nursery, node: Node) -> Node:
    await nursery.start(node.run)
    return node


async def start_network(nursery: trio.Nursery, genesis, root: Path, keys, **kwargs) -> list[Node]:
    """Nodes started one by one, each dialling all the earlier ones (a full mesh)."""
    nodes: list[Node] = []
    for index, key in enumerate(keys):
        bootnodes = [str(node.p2p.enode) for node in nodes]
        node = make_node(genesis, root / f"node{index}", key, bootnodes, **kwargs)
        nodes.append(await start_node(nursery, node))
    return nodes


async def wait_for_height(nodes, height: int, poll: float = 0.05) -> None:
    while min(node.chain.height for node in nodes) < height:
        await trio.sleep(poll)


async def wait_for_peers(nodes, count: int) -> None:
    while min(len(node.p2p.get_peers()) for node in nodes) < count:
        await trio.sleep(0.05)


def get_hashes(node: Node, upto: int) -> list[bytes]:
    return [node.chain.get_header(n).hash for n in range(1, upto + 1)]


async def run_stoppable(node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run a node in its own cancel scope; `started` returns the scope, so a test can stop just this node."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            task_status.started(scope)


async def wait_for_signature(node: Node, signer: bytes, after: int) -> int:
    """The first height above `after` whose commit (as `node` stores it) carries `signer`'s precommit."""
    number = after + 1
    while True:
        while node.chain.height < number + 1:
            await trio.sleep(0.05)
        commit = node.chain.get_commit(node.chain.get_header(number).hash)
        if signer in {sig.validator for sig in commit.signatures}:
            return number
        number += 1


def install_js_packages(package: str) -> None:
    """npm install tests/node/js's pinned packages once (later runs find `package` there and skip it)."""
    if (JS_DIR / "node_modules" / package / "package.json").exists():
        return
    subprocess.run(["npm", "install", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"], check=True,
                   capture_output=True, timeout=300)
