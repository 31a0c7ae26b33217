"""JSON-RPC errors over a real socket: every bad request gets its JSON-RPC error object, and the server keeps serving.

Also batches, notifications, the muagic_ methods' shapes, size limits, and a
Hypothesis fuzz of the dispatcher (no request may produce anything but a
well-formed response).
"""
from __future__ import annotations

import functools
import json

import httpx
import pytest
import rlp
from eth_utils import keccak, to_checksum_address
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.payloads import Offering, RegisterWorker
from chain.transactions import sign_work_transaction
from genesis import MUAGIC
from node.http import HTTPLimits, serve_http
from node.rpc import RPCDispatcher
from tests.node.conftest_rpc import (
    CHAIN_ID, MODEL, REQUESTER_KEY, VALIDATOR_KEYS, VALIDATORS, WORKER_KEY, RPCTestNode, build_work_history,
)


@pytest.fixture
async def served(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    history = build_work_history(node)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield node, history, client
    nursery.cancel_scope.cancel()


def request(method: str, *params, request_id=1) -> dict:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}


async def rpc(client: httpx.AsyncClient, method: str, *params):
    response = await client.post("/", json=request(method, *params))
    assert response.status_code == 200
    return response.json()


def assert_error(response: dict, code: int) -> dict:
    assert set(response) == {"jsonrpc", "id", "error"}, response
    error = response["error"]
    assert error["code"] == code, response
    assert "Traceback" not in json.dumps(response)
    return error


async def test_bad_requests_get_json_rpc_errors_and_the_server_keeps_running(served):
    node, history, client = served

    response = await client.post("/", content=b'{"jsonrpc": "2.0", "method": ', headers={"content-type": "application/json"})
    assert_error(response.json(), -32700)
    assert_error((await client.post("/", json={"jsonrpc": "2.0", "id": 1})).json(), -32600)
    assert_error((await client.post("/", json={"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"})).json(), -32600)
    assert_error((await client.post("/", json="eth_chainId")).json(), -32600)
    assert_error(await rpc(client, "eth_mine"), -32601)
    error = assert_error(await rpc(client, "eth_getBalance", "0x1234"), -32602)
    assert error["data"]["expected"] == "0x-prefixed hex of 20 bytes"
    assert_error(await rpc(client, "eth_getBalance"), -32602)  # missing param
    assert_error(await rpc(client, "eth_getBalance", "0x" + "11" * 20, "latest", 5), -32602)  # too many
    assert_error(await rpc(client, "eth_getBlockByNumber", "newest", False), -32602)
    assert_error(await rpc(client, "eth_getBlockByNumber", "0x1", "yes"), -32602)
    assert_error(await rpc(client, "eth_getBalance", "0x" + "11" * 20, "0x99"), -32001)  # no such block
    bad_checksum = to_checksum_address(VALIDATORS[0]).swapcase()
    assert_error(await rpc(client, "eth_getBalance", bad_checksum.replace("0X", "0x")), -32602)

    # Rejected transactions: -32000 with the chain's typed error, nothing admitted.
    assert_error(await rpc(client, "eth_sendRawTransaction", "0x02c0"), -32000)
    error = assert_error(await rpc(client, "eth_sendRawTransaction", "0x" + sign_work_transaction(
        WORKER_KEY, chain_id=CHAIN_ID + 1, nonce=5, kind="register_worker",
        data=rlp.encode(RegisterWorker(MODEL, 1))).hex()), -32000)
    assert error["data"]["type"] == "WrongChainId" and error["data"]["expected"] == CHAIN_ID
    stale = sign_work_transaction(REQUESTER_KEY, chain_id=CHAIN_ID, nonce=0, kind="register_worker",
                                  data=rlp.encode(RegisterWorker(MODEL, 1)))
    assert_error(await rpc(client, "eth_sendRawTransaction", "0x" + stale.hex()), -32000)
    broke = sign_work_transaction(REQUESTER_KEY, chain_id=CHAIN_ID, nonce=2, kind="offering",
                                  data=rlp.encode(Offering(b"", b"")), value=MUAGIC)
    error = assert_error(await rpc(client, "eth_sendRawTransaction", "0x" + broke.hex()), -32000)
    assert error["data"]["type"] == "InsufficientBalance"
    transfer = {"to": to_checksum_address(VALIDATORS[1]), "value": "0x1"}
    # Estimating a transfer fails as geth fails a reverting call, so ethers/viem show the reason.
    error = assert_error(await rpc(client, "eth_estimateGas", transfer), 3)
    assert error["message"].startswith("execution reverted: transactions to accounts are invalid")
    assert len(node.mempool) == 0 and node.submitted == []

    # A good one is still accepted afterwards, and the chain still answers.
    good = sign_work_transaction(REQUESTER_KEY, chain_id=CHAIN_ID, nonce=2, kind="register_worker",
                                 data=rlp.encode(RegisterWorker(MODEL, 1)))
    assert (await rpc(client, "eth_sendRawTransaction", "0x" + good.hex()))["result"] == "0x" + keccak(good).hex()
    pending = (await rpc(client, "eth_getTransactionByHash", "0x" + keccak(good).hex()))["result"]
    assert pending["blockHash"] is None and pending["nonce"] == "0x2"
    assert (await rpc(client, "eth_getTransactionCount", "0x" + bytes(get_address(REQUESTER_KEY)).hex(),
                      "pending"))["result"] == "0x3"
    assert (await rpc(client, "eth_blockNumber"))["result"] == hex(node.chain.height)

    # HTTP-level refusals: wrong verb, unknown path.
    assert (await client.get("/")).status_code == 405
    assert (await client.get("/nowhere")).status_code == 404
    assert (await rpc(client, "eth_chainId"))["result"] == hex(CHAIN_ID)


def error_type(response: dict) -> str:
    return assert_error(response, -32000)["data"]["type"]


def get_address(key: bytes) -> bytes:
    from genesis.keys import get_address as address_of
    return address_of(key)


async def test_oversized_bodies_are_refused_without_being_read(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    url = await nursery.start(functools.partial(serve_http, node, "127.0.0.1", 0, limits=HTTPLimits(max_rpc_body=2000)))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        big = json.dumps(request("eth_getBalance", "0x" + "11" * 20, "x" * 2000)).encode()
        response = await client.post("/", content=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == -32600
        # A huge upload is cut off before it is buffered: the server answers 413 or drops the connection.
        try:
            status = (await client.post("/", content=b"[" + b"1," * (1 << 20) + b"1]")).status_code
        except httpx.RemoteProtocolError:
            status = None
        assert status in (413, None)
        assert (await rpc(client, "eth_chainId"))["result"] == hex(CHAIN_ID)
    nursery.cancel_scope.cancel()
    node.close()


async def test_batches_and_notifications(served):
    node, history, client = served
    batch = [request("eth_chainId", request_id=1), request("eth_nope", request_id="two"),
             {"jsonrpc": "2.0", "method": "eth_blockNumber"},  # a notification: no answer
             request("eth_getBalance", "0x" + VALIDATORS[0].hex(), request_id=4), 17]
    answers = (await client.post("/", json=batch)).json()
    assert [a["id"] for a in answers] == [1, "two", 4, None]
    assert answers[0]["result"] == hex(CHAIN_ID)
    assert answers[1]["error"]["code"] == -32601
    assert int(answers[2]["result"], 16) == node.chain.state.get_balance(VALIDATORS[0])
    assert answers[3]["error"]["code"] == -32600
    assert_error((await client.post("/", json=[])).json(), -32600)
    assert (await client.post("/", json=[{"jsonrpc": "2.0", "method": "eth_chainId"}])).status_code == 204
    assert_error((await client.post("/", json=[request("eth_chainId")] * 101)).json(), -32600)

    # Params by name fill the positions in order.
    by_name = {"jsonrpc": "2.0", "id": 9, "method": "eth_getBalance",
               "params": {"address": "0x" + VALIDATORS[0].hex(), "block": "0x1"}}
    assert int((await client.post("/", json=by_name)).json()["result"], 16) == 100 * MUAGIC
    assert_error((await client.post("/", json={**by_name, "params": {"account": "0x00"}})).json(), -32602)
    assert_error((await client.post("/", json={**by_name, "params": {"block": "latest"}})).json(), -32602)


async def test_muagic_methods(served):
    node, history, client = served
    job = (await rpc(client, "muagic_getJob", "0x" + history.job_id.hex()))["result"]
    assert job["status"] == "accepted" and job["verified"] and job["audited"]
    assert job["worker"] == "0x" + get_address(WORKER_KEY).hex()
    assert job["messages"] == [{"role": "user", "content": "Name a colour."}]
    assert [a["address"] for a in job["attestations"]] == ["0x" + a.hex() for a in history.committee]
    assert int(job["reward"], 16) > 0
    assert (await rpc(client, "muagic_getJob", "0x" + "00" * 32))["result"] is None
    task = (await rpc(client, "muagic_getAnnotationTask", "0x" + history.task_id.hex()))["result"]
    assert task["status"] == "recognised" and task["label"] == "0x0" and task["labels"] == ["yes", "no"]
    assert len(task["annotations"]) == 3

    workers = (await rpc(client, "muagic_getWorkers"))["result"]
    assert [w["address"] for w in workers] == ["0x" + get_address(WORKER_KEY).hex()]
    assert workers[0]["model"] == "0x" + MODEL.hex() and int(workers[0]["recentRewards"], 16) > 0

    account = (await rpc(client, "muagic_getAccount", "0x" + get_address(WORKER_KEY).hex()))["result"]
    assert account["worker"]["capacity"] == "0x64" and int(account["recognition"], 16) > 0
    assert (await rpc(client, "muagic_getRecognition", "0x" + VALIDATORS[3].hex()))["result"] == "0x0"  # slashed
    assert (await rpc(client, "muagic_getRecognition", "0x" + VALIDATORS[3].hex(), "0x1"))["result"] == \
        hex(100 * MUAGIC)
    pool = (await rpc(client, "muagic_getPool"))["result"]
    assert int(pool["issued"], 16) == node.chain.height * node.genesis.params.issuance_per_block

    validator_set = (await rpc(client, "muagic_getValidatorSet", "latest"))["result"]
    assert [v["address"] for v in validator_set["validators"]] == ["0x" + a.hex() for a in sorted(VALIDATORS)]
    assert validator_set["hash"] == "0x" + node.chain.head.validators_hash.hex()
    header = (await rpc(client, "muagic_getHeader", "0x3"))["result"]
    assert keccak(bytes.fromhex(header["rlp"][2:])).hex() == header["hash"][2:]
    commit = (await rpc(client, "muagic_getCommit", "0x3"))["result"]
    assert commit["blockHash"] == header["hash"] and len(commit["signatures"]) == 4
    assert (await rpc(client, "muagic_getCommit", "latest"))["result"]["height"] == hex(node.chain.height)
    assert (await rpc(client, "muagic_getCommit", "earliest"))["result"] is None
    assert (await rpc(client, "muagic_status"))["result"]["height"] == node.chain.height
    assert (await rpc(client, "muagic_getHeader", "0x" + "ab" * 32))["error"]["code"] == -32001



async def test_muagic_get_headers_serves_each_header_with_its_commit_and_refuses_bad_ranges(served):
    node, history, client = served
    height = node.chain.height
    headers = (await rpc(client, "muagic_getHeaders", "0x0", hex(height + 1)))["result"]
    assert [h["number"] for h in headers] == [hex(n) for n in range(height + 1)]
    for number, item in enumerate(headers):
        single = (await rpc(client, "muagic_getHeader", hex(number)))["result"]
        commit = (await rpc(client, "muagic_getCommit", hex(number)))["result"]
        assert {key: item[key] for key in ("number", "hash", "rlp")} == single
        assert keccak(bytes.fromhex(item["rlp"][2:])) == node.chain.get_header(number).hash
        assert item["commit"] == (commit["rlp"] if commit is not None else None)
    assert headers[0]["commit"] is None  # genesis is never voted on
    assert headers[-1]["commit"] is not None  # the head's stored commit
    # Cut at the head; a window inside the chain; plain JSON integers as quantities.
    assert len((await rpc(client, "muagic_getHeaders", hex(height - 1), "0x100"))["result"]) == 2
    assert (await rpc(client, "muagic_getHeaders", 2, 3))["result"] == headers[2:5]
    for params, code in ((["0x1", "0x0"], -32602), (["0x1", "0x101"], -32602), (["latest", "0x1"], -32602),
                         (["0x1"], -32602), ([-1, "0x1"], -32602), ([hex(height + 1), "0x1"], -32001)):
        error = assert_error(await rpc(client, "muagic_getHeaders", *params), code)
        assert "Traceback" not in error["message"]
    assert (await rpc(client, "muagic_getHeaders", "0x1", "0x100"))["result"][0] == headers[1]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                                         max_size=4), max_leaves=12)
PARAM = (JSON | st.sampled_from(["latest", "pending", "earliest", "0x0", "0x1", "0x" + "ab" * 20, "0x" + "cd" * 32,
                                 "0xzz", "0x", "-0x1", "0x" + "f" * 70]))


def test_fuzzed_requests_always_get_well_formed_answers(tmp_path):
    node = RPCTestNode(tmp_path / "db")
    build_work_history(node)
    dispatcher = RPCDispatcher(node)
    names = sorted(dispatcher.methods)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(method=st.sampled_from(names) | st.text(max_size=12), params=st.lists(PARAM, max_size=4) | JSON,
           request_id=st.integers() | st.text(max_size=5) | st.none())
    def check(method, params, request_id):
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}).encode()
        answer = json.loads(dispatcher.handle(body))
        assert answer["jsonrpc"] == "2.0" and answer["id"] == request_id
        assert ("result" in answer) != ("error" in answer)
        if "error" in answer:
            # -32603 would mean a method crashed on input it should have refused by type.
            # 3 is geth's "execution reverted" (eth_call, eth_estimateGas).
            assert answer["error"]["code"] in (3, -32000, -32001, -32600, -32601, -32602), answer

    check()
    node.close()


def test_fuzzed_http_bodies_get_json_answers(tmp_path):
    """Arbitrary bytes POSTed to / through the ASGI app: always a JSON-RPC error or answer, never a crash."""
    import trio

    from node.http import NodeApp

    node = RPCTestNode(tmp_path / "db")
    app = NodeApp(node)

    async def post(body: bytes) -> tuple[int, bytes]:
        sent: list[dict] = []
        messages = [{"type": "http.request", "body": body[:len(body) // 2], "more_body": True},
                    {"type": "http.request", "body": body[len(body) // 2:], "more_body": False}]

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        await app({"type": "http", "method": "POST", "path": "/", "headers": []}, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    @settings(max_examples=200, deadline=None)
    @given(body=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
    def check(body):
        status, payload = trio.run(post, body)
        assert status in (200, 204)
        if status == 200:
            answer = json.loads(payload)
            for item in answer if isinstance(answer, list) else [answer]:
                assert item["jsonrpc"] == "2.0" and ("result" in item) != ("error" in item)
                if "error" in item:
                    assert item["error"]["code"] in (-32700, -32600, -32601, -32602, -32000, -32001)

    check()
    node.close()
