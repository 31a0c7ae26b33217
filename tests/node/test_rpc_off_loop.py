"""JSON-RPC off the consensus loop: admission control (429, -32005), consistent views from worker threads,
and a live validator that keeps finalising while a flood of eth_getProof hits it.

Figures asserted against a live node are bounds with a wide margin: the machine
these tests run on has 2 cores shared with other runs.
"""
from __future__ import annotations

import json
import sys
import threading
import time

import httpx
import pytest
import rlp
import trio
from eth_utils import keccak
from websockets.sync.client import connect

from chain.payloads import Offering
from chain.store import UnknownTransaction
from chain.transactions import sign_work_transaction
from genesis.keys import get_address
from node.http import serve_http
from node.rpc import NodeView, RPCDispatcher
from node.rpc_admission import (
    METHOD_COSTS,
    Admission,
    LimitExceeded,
    RPCLimits,
    compute_cost,
)
from node.rpc_workers import RPCWorkers
from tests.node.conftest_rpc import CHAIN_ID, VALIDATORS, RPCTestNode
from tests.node.nodekit import VALIDATOR_KEYS, make_node, make_test_genesis

SENDER_KEYS = [keccak(b"off-loop-sender-%d" % index) for index in range(3)]


def call_body(method: str, *params, request_id=1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


# --- admission ----------------------------------------------------------------------------------

def test_admission_counts_tokens_concurrency_and_capacity():
    now = [0.0]
    admission = Admission(RPCLimits(max_concurrency=1, max_queue=2, max_per_client=2, rate_limit=10, burst=5),
                          clock=lambda: now[0])
    admission.admit("a")
    admission.admit("a")
    with pytest.raises(LimitExceeded, match="in flight from a") as error:
        admission.admit("a")  # the client's third request in flight
    assert error.value.code == -32005 and error.value.data["expected"] == "< 2"
    admission.admit("b")
    with pytest.raises(LimitExceeded, match="server busy"):
        admission.admit("c")  # 1 running + 2 queued: the server holds no more
    for client in ("a", "a", "b"):
        admission.release(client)
    admission.admit("a")  # a's 3rd token of 5
    with pytest.raises(LimitExceeded, match="request rate of a") as error:
        admission.charge("a", 3)  # 2 tokens left, 3 asked
    assert error.value.retry_after == pytest.approx(0.1)
    now[0] += 0.1  # one token back
    admission.charge("a", 3)
    admission.release("a")
    assert admission.in_flight == 0 and admission.refused == 3


def test_costs_follow_the_methods_and_batches():
    proof = call_body("eth_getProof", "0x" + "11" * 20, [], "latest")
    assert compute_cost(call_body("eth_blockNumber")) == 1
    assert compute_cost(proof) == METHOD_COSTS["eth_getProof"] > 1
    assert compute_cost([proof, call_body("eth_chainId")]) == METHOD_COSTS["eth_getProof"] + 1
    assert compute_cost([proof] * 101) == 1  # refused whole by the dispatcher, runs nothing
    assert compute_cost("junk") == 1


async def test_rate_limit_answers_429_with_limit_exceeded(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    limits = RPCLimits(rate_limit=1, burst=10)  # refills one token per second: the test sees no refill to speak of
    url = await nursery.start(lambda task_status: serve_http(node, "127.0.0.1", 0, rpc_limits=limits,
                                                             task_status=task_status))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        proof = call_body("eth_getProof", "0x" + VALIDATORS[0].hex(), [], "latest", request_id=7)
        first = await client.post("/", json=proof)
        assert first.status_code == 200 and first.json()["result"]["address"] == "0x" + VALIDATORS[0].hex()
        # 5 tokens left: a batch of two proofs (10 tokens, priced by the front before admission) is refused whole.
        batch = await client.post("/", json=[proof, proof])
        assert batch.status_code == 429
        assert int(batch.headers["retry-after"]) >= 1
        error = batch.json()["error"]
        assert error["code"] == -32005
        assert error["message"] == "limit exceeded: request rate of 127.0.0.1"
        assert error["data"]["got"].startswith("10 tokens asked, 5.")
        assert error["data"]["expected"] == "1 tokens/s, bursts of 10"
        # A single refused request keeps its id, so a client can match the refusal.
        answers = [await client.post("/", json=proof) for _ in range(2)]
        refused = [answer for answer in answers if answer.status_code == 429]
        assert refused and refused[-1].json()["id"] == 7 and refused[-1].json()["error"]["code"] == -32005
    # Another client (address) has its own bucket.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=url, transport=transport, timeout=10) as other:
        answer = await other.post("/", json=call_body("eth_blockNumber"))
        assert answer.status_code == 200 and answer.json()["result"] == "0x1"
    nursery.cancel_scope.cancel()


async def test_websocket_requests_are_charged_to_the_same_allowance(tmp_path, nursery):
    """A client cannot dodge its rate limit by sending its calls over a websocket instead of HTTP posts."""
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    limits = RPCLimits(rate_limit=1, burst=10)
    url = await nursery.start(lambda task_status: serve_http(node, "127.0.0.1", 0, rpc_limits=limits,
                                                             task_status=task_status))
    proof = call_body("eth_getProof", "0x" + VALIDATORS[0].hex(), [], "latest", request_id=9)

    def over_websocket() -> list[dict]:
        with connect(url.replace("http://", "ws://"), open_timeout=10) as socket:
            answers = []
            for _ in range(3):  # 5 tokens each, 10 in the bucket: the third is refused
                socket.send(json.dumps(proof))
                answers.append(json.loads(socket.recv(timeout=10)))
            return answers

    first, second, third = await trio.to_thread.run_sync(over_websocket)
    assert first["result"]["address"] == second["result"]["address"] == "0x" + VALIDATORS[0].hex()
    assert third["id"] == 9 and third["error"]["code"] == -32005, third
    assert third["error"]["message"] == "limit exceeded: request rate of 127.0.0.1"
    # The same bucket serves HTTP: the websocket spent it, so a post is refused too.
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.post("/", json=proof)).status_code == 429
    nursery.cancel_scope.cancel()


async def test_worker_pool_serves_in_batches_and_passes_errors_back():
    threads: set[str] = set()

    def handle(value: int) -> int:
        threads.add(threading.current_thread().name)
        if value < 0:
            raise ValueError(f"negative: {value}")
        time.sleep(0.001)
        return value * 2

    workers = RPCWorkers(2, handle, name="test-rpc")
    results: dict[int, int] = {}

    async def one(value: int) -> None:
        results[value] = await workers.run(value)

    async with trio.open_nursery() as nursery:
        for value in range(100):
            nursery.start_soon(one, value)
    assert results == {value: value * 2 for value in range(100)}
    assert threads <= {"test-rpc-0", "test-rpc-1"} and threading.current_thread().name not in threads
    with pytest.raises(ValueError, match="negative: -1"):
        await workers.run(-1)
    await trio.to_thread.run_sync(workers.stop)
    assert not any(thread.name.startswith("test-rpc") for thread in threading.enumerate())


# --- consistent views from worker threads ---------------------------------------------------------

def sign_offering(key: bytes, nonce: int) -> bytes:
    return sign_work_transaction(key, chain_id=CHAIN_ID, nonce=nonce, kind="offering",
                                 data=rlp.encode(Offering(b"off-loop", b"")), gas=100_000)


def test_thread_views_never_see_a_block_half_imported(tmp_path):
    """Readers on other threads, while blocks are imported on this one, see each head whole.

    Each block moves every sender's nonce, so a reader that saw the state of a
    block being executed (the live head state holds its writes before the head
    moves) would read a nonce ahead of the head it reports. Every reading is
    checked afterwards against what each block really committed.
    """
    node = RPCTestNode(tmp_path / "db")
    dispatcher = RPCDispatcher(node)
    senders = [get_address(key) for key in SENDER_KEYS]
    truth: dict[str, tuple[int, tuple[int, ...]]] = {}  # block hash -> (number, nonces after it)
    readings: list[tuple[str, int, tuple[int, ...]]] = []  # (block hash, number, nonces) as a reader saw them
    failures: list[str] = []
    stop = threading.Event()

    def record_head() -> None:
        head = node.chain.head
        truth["0x" + head.hash.hex()] = (head.number, tuple(node.chain.state.get_nonce(a) for a in senders))

    def read() -> None:
        batch = json.dumps([call_body("eth_getBlockByNumber", "latest", False, request_id=0)]
                           + [call_body("eth_getProof", "0x" + address.hex(), [], "latest", request_id=i + 1)
                              for i, address in enumerate(senders)]).encode()
        while not stop.is_set():
            view = NodeView(node)
            # The view's own reads: the state root, the block at its height and its nonces agree.
            head = view.chain.head
            if view.chain.state.root != head.state_root or view.chain.get_header(head.number).hash != head.hash:
                failures.append(f"view at {head.number} disagrees with itself")
            direct = tuple(view.chain.state.get_nonce(a) for a in senders)
            # What a JSON-RPC batch reads through a view: one head for every answer.
            answers = json.loads(dispatcher.handle(batch, NodeView(node)))
            block = answers[0]["result"]
            proven = tuple(int(answer["result"]["nonce"], 16) for answer in answers[1:])
            readings.append(("0x" + head.hash.hex(), head.number, direct))
            readings.append((block["hash"], int(block["number"], 16), proven))

    record_head()
    threads = [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        for number in range(40):
            txs = [sign_offering(key, number) for key in SENDER_KEYS]  # every sender's nonce moves
            node.produce(txs)
            record_head()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:5]
    assert len(readings) > 40
    heights_seen = {number for _, number, _ in readings}
    assert len(heights_seen) > 5, heights_seen  # the readers really ran across imports
    for block_hash, number, nonces in readings:
        assert block_hash in truth, (number, block_hash)
        assert truth[block_hash] == (number, nonces), (number, truth[block_hash], nonces)
    node.close()


def test_a_view_hides_what_later_blocks_added(tmp_path):
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    view = node.chain.get_head_view()
    built = node.produce([sign_offering(SENDER_KEYS[0], 0)])
    tx_hash = built.transactions[0].hash
    assert node.chain.get_transaction(tx_hash)[0].number == 2  # the live chain has it
    with pytest.raises(UnknownTransaction):
        view.get_transaction(tx_hash)
    with pytest.raises(UnknownTransaction):
        view.get_receipt(tx_hash)
    assert view.height == 1 and view.state.get_nonce(get_address(SENDER_KEYS[0])) == 0
    assert node.chain.get_head_view().state.get_nonce(get_address(SENDER_KEYS[0])) == 1
    node.close()


# --- a live validator under a flood ------------------------------------------------------------------

FLOOD_RATE = 2000
FLOOD_SECONDS = 6.0


async def test_a_flooded_validator_keeps_finalising(tmp_path, nursery):
    """A one-validator node decides blocks on its own loop while 2,000 eth_getProof/s are offered to it.

    Bounds (wide, for a shared 2-core machine): the node decides at least a
    quarter as many blocks during the flood as in the same time idle, and at least
    5; its loop lag stays under 0.5 s at p99; the flood is both served and refused (-32005).
    """
    genesis = make_test_genesis(1)
    # Per-client rates far below what each of the 4 flood addresses offers (500 proofs/s asked; a loaded CI
    # machine got out as few as 180/s each, 900 tokens/s, under a limit of 1,000), so the limiter answers part
    # of the flood with 429 whatever this machine manages to send: 40 proofs/s per address are served.
    limits = RPCLimits(rate_limit=200, burst=200)
    node = make_node(genesis, tmp_path / "node0", VALIDATOR_KEYS[0], http=("127.0.0.1", 0), rpc_limits=limits)
    await nursery.start(node.run)
    while node.chain.height < 2:
        await trio.sleep(0.05)
    start = node.chain.height
    await trio.sleep(FLOOD_SECONDS)
    idle_blocks = node.chain.height - start

    address = "0x" + get_address(VALIDATOR_KEYS[0]).hex()
    start = node.chain.height
    started = time.monotonic()
    flood = await trio.run_process(
        [sys.executable, "-m", "node.rpc_flood", "--url", node.http_url, "--rate", str(FLOOD_RATE),
         "--seconds", str(FLOOD_SECONDS), "--method", "eth_getProof", "--params", json.dumps([address, [], "latest"]),
         "--sources", "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5"], capture_stdout=True, capture_stderr=True)
    flood_seconds = time.monotonic() - started
    flood_blocks = node.chain.height - start
    result = json.loads(flood.stdout.decode().strip().splitlines()[-1])
    lag = node.metrics.loop_lag_window.get_summary()

    assert result["statuses"].get("200", 0) > 0, result
    assert result["statuses"].get("429", 0) > 0, result
    body = json.loads(result["sample_limited_body"])
    assert body["error"]["code"] == -32005 and body["error"]["message"].startswith("limit exceeded")
    assert flood_blocks >= max(5, idle_blocks * FLOOD_SECONDS / flood_seconds / 4), (flood_blocks, idle_blocks)
    assert lag["p99Ms"] < 500, lag
    # The HTTP front process refused the 429s and reports them to the node every 0.1 s: wait for the last report.
    deadline = time.monotonic() + 5
    while node.metrics.rpc_requests.labels("limited")._value.get() < result["statuses"]["429"]:
        assert time.monotonic() < deadline, "the front's refusals did not reach the node's metrics"
        await trio.sleep(0.05)
    served = node.metrics.rpc_requests.labels("served")._value.get()
    assert served >= result["statuses"]["200"]
    status = node.get_status()
    assert status["loopLag"]["samples"] > 100 and status["recentFinalityMs"]
    nursery.cancel_scope.cancel()
