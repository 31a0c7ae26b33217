"""Unmodified ethers v6 (the npm package, run by `node`) against a real node on loopback.

The issue this answers: ethers' default `wallet.sendTransaction({to, data})`
must build a type-2 transaction and complete for every work kind a
zero-balance account may submit, value transfers must be refused in words a
user can read, and `eth_call` must answer system-address reads through the
published ABI (docs/abi/magicoin.json). ethers is installed into
tests/node/js/node_modules on first use; the test skips only without node/npm.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import rlp
import trio
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from chain.ledger import get_recognition
from chain.payloads import AnnotationTask, RegisterAnnotator, RegisterWorker
from chain.transactions import ADDRESS_BY_KIND
from genesis import DEFAULT_MODEL_CARD
from genesis.keys import get_address
from tests.node.nodekit import (
    JS_DIR,
    PARAMS,
    VALIDATOR_KEYS,
    install_js_packages,
    make_node,
    make_test_genesis,
    start_node,
)

FLOW_SCRIPT = JS_DIR / "ethers_flow.mjs"
FRESH_KEY = keccak(b"ethers-test-fresh-account")
ANNOTATOR_KEY = keccak(b"ethers-test-fresh-annotator")
# No gold set: registered annotators have weight at once, so a fresh account's annotation task finds one.
GENESIS = make_test_genesis(1, PARAMS.copy(annotator_min_gold=0, annotator_prior_correct=2))
ABI_PATH = Path(__file__).parents[2] / "docs" / "abi" / "magicoin.json"

pytestmark = pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None,
                                reason="needs node and npm")


def run_flow(plan: dict, tmp_path: Path) -> dict:
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    done = subprocess.run(["node", str(FLOW_SCRIPT), str(plan_path)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def to_kind(kind: str) -> str:
    return to_checksum_address(ADDRESS_BY_KIND[kind])


def make_zero_balance_sends() -> list[dict]:
    """Each work kind a fresh account may submit with nothing in its balance, signed by fresh accounts.

    An annotation task needs an eligible annotator other than its creator, so a second
    fresh account registers as one first (the test genesis gives registered annotators
    weight at once); the task's creator is the plan's own fresh account.
    """
    annotator = {"name": "register_annotator", "to": to_kind("register_annotator"), "key": "0x" + ANNOTATOR_KEY.hex(),
                 "data": "0x" + rlp.encode(RegisterAnnotator(b"person")).hex()}
    payloads = {
        "register_annotator": RegisterAnnotator(b"model:" + DEFAULT_MODEL_CARD.sha256.hex().encode()),
        "annotation_task": AnnotationTask(b"is the sky blue?", [b"yes", b"no"], 1),
        "register_worker": RegisterWorker(DEFAULT_MODEL_CARD.sha256, 10, b"backend=ethers-test"),
    }
    return [annotator] + [{"name": kind, "to": to_kind(kind), "data": "0x" + rlp.encode(payload).hex()}
                          for kind, payload in payloads.items()]


def make_reads(validator: str) -> list[dict]:
    """Views through the published ABI, and a call that must fail with its reason."""
    abi = json.loads(ABI_PATH.read_text())
    pool, jobs = abi["MagicoinPool"], abi["MagicoinJobs"]
    return [
        {"name": "balance", "to": pool["address"], "abi": pool["abi"], "fn": "balanceOf", "args": [validator]},
        {"name": "recognition", "to": pool["address"], "abi": pool["abi"], "fn": "recognitionOf", "args": [validator]},
        {"name": "pool", "to": pool["address"], "abi": pool["abi"], "fn": "poolBalance", "args": []},
        {"name": "job", "to": jobs["address"], "abi": jobs["abi"], "fn": "getJob", "args": ["0x" + "ab" * 32]},
        # The pool's ABI pointed at a plain account: no code there, so the call reverts with a reason.
        {"name": "account", "to": validator, "abi": pool["abi"], "fn": "poolBalance", "args": []},
    ]


async def start_served_node(tmp_path, nursery):
    # ethers caches identical requests for 250 ms (AbstractProvider's cacheTimeout), the pending
    # nonce included: with blocks every 0.1 s a wallet's next send would reuse the nonce it fetched
    # for the one just mined. Blocks slower than that cache keep the client unmodified.
    node = make_node(GENESIS, tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0), block_interval=0.3)
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < 1:
            await trio.sleep(0.05)
    return node


async def test_ethers_default_send_completes_for_zero_balance_work(tmp_path, nursery):
    await trio.to_thread.run_sync(install_js_packages, "ethers")
    node = await start_served_node(tmp_path, nursery)
    fresh = Account.from_key(FRESH_KEY)
    validator = to_checksum_address(get_address(VALIDATOR_KEYS[0]))
    transfer = {"name": "transfer", "to": to_checksum_address(keccak(b"someone")[:20]), "data": "0x", "value": 1}
    abi = json.loads(ABI_PATH.read_text())
    workers = abi["MagicoinWorkers"]
    plan = {"rpc": node.http_url, "key": "0x" + FRESH_KEY.hex(), "sends": make_zero_balance_sends() + [transfer],
            "reads": make_reads(validator),
            # The work's receipt logs, parsed with the published event ABI, and read back with eth_getLogs.
            "eventsAbi": [e for c in abi.values() for e in c["abi"] if e["type"] == "event"],
            "queries": [{"name": "registered", "to": workers["address"], "abi": workers["abi"],
                         "event": "WorkerRegistered", "fromBlock": 0}]}
    results = await trio.to_thread.run_sync(run_flow, plan, tmp_path)

    # ethers saw a 1559 chain: a max fee from the (waived) base fee, and a zero tip.
    assert results["feeData"]["maxFeePerGas"] != "null" and results["feeData"]["maxPriorityFeePerGas"] == "0"
    *work, refused = results["sends"]
    for sent in work:
        assert sent.get("status") == 1 and sent["type"] == 2, sent
    for address in (fresh.address, Account.from_key(ANNOTATOR_KEY).address):  # nothing was charged
        assert node.chain.state.get_balance(bytes.fromhex(address[2:])) == 0
    assert "MUAGIC never moves between accounts" in refused["error"]["message"], refused
    sent = {item["name"]: item for item in work}
    [registered] = sent["register_worker"]["events"]
    assert registered["name"] == "WorkerRegistered" and registered["args"]["worker"] == fresh.address
    assert registered["args"]["capacity"] == "10" and registered["address"] == abi["MagicoinWorkers"]["address"]
    assert [e["name"] for e in sent["annotation_task"]["events"]] == ["AnnotationTaskPosted"]
    [query] = results["queries"]
    assert [(e["args"]["worker"], e["transactionHash"]) for e in query["events"]] == [
        (fresh.address, sent["register_worker"]["hash"])], query

    reads = {read["name"]: read for read in results["reads"]}
    state = node.chain.state
    assert int(reads["balance"]["value"]) == state.get_balance(get_address(VALIDATOR_KEYS[0]))
    assert int(reads["recognition"]["value"]) == get_recognition(state, get_address(VALIDATOR_KEYS[0])) > 0
    assert int(reads["pool"]["value"]) >= 0
    assert reads["job"]["value"][0] is False  # exists: an unknown job reads as zeros
    assert "no code at this address" in (reads["account"]["error"]["reason"] or ""), reads["account"]
    nursery.cancel_scope.cancel()
