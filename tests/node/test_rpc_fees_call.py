"""The fee fields a 1559 client reads, the refusal of other transaction types, and eth_call's views and reverts."""
from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import rlp
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address

from chain.ledger import get_recognition
from chain.payloads import RegisterAnnotator
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS, sign_work_transaction
from node.http import serve_http
from node.rpc_call import compute_abi
from tests.node.conftest_rpc import CHAIN_ID, VALIDATORS, RPCTestNode

ABI_PATH = Path(__file__).parents[2] / "docs" / "abi" / "magicoin.json"
FRESH_KEY = keccak(b"fees-test-fresh-account")


@pytest.fixture
async def served(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    node.produce()
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield node, client
    nursery.cancel_scope.cancel()


async def rpc(client, method: str, *params) -> dict:
    return (await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})).json()


async def test_fee_fields_read_as_a_1559_chain(served):
    node, client = served
    # ethers v6 builds type 2 only when the latest block's baseFeePerGas is truthy.
    assert (await rpc(client, "eth_getBlockByNumber", "latest", False))["result"]["baseFeePerGas"] == "0x1"
    assert (await rpc(client, "eth_maxPriorityFeePerGas"))["result"] == "0x0"
    assert (await rpc(client, "eth_gasPrice"))["result"] == "0x1"
    assert set((await rpc(client, "eth_feeHistory", "0x1", "latest"))["result"]["baseFeePerGas"]) == {"0x1"}
    # What ethers then signs (max fee 2 * base fee, tip 0) is admitted from an empty account: the base fee is waived.
    raw = sign_work_transaction(FRESH_KEY, chain_id=CHAIN_ID, nonce=0, kind="register_annotator",
                                data=rlp.encode(RegisterAnnotator(b"person")), max_fee_per_gas=2)
    assert (await rpc(client, "eth_sendRawTransaction", "0x" + raw.hex()))["result"] == "0x" + keccak(raw).hex()


@pytest.mark.parametrize("extra, name", [({"gasPrice": 1}, "legacy (type 0)"),
                                         ({"gasPrice": 1, "type": 1, "accessList": []}, "access-list (type 1, EIP-2930)")])
async def test_other_transaction_types_are_refused_by_name(served, extra, name):
    node, client = served
    signed = Account.sign_transaction(dict({"chainId": CHAIN_ID, "nonce": 0, "gas": 50_000, "value": 0, "data": b"",
                                            "to": to_checksum_address(ADDRESS_BY_KIND["annotation"])}, **extra), FRESH_KEY)
    error = (await rpc(client, "eth_sendRawTransaction", "0x" + signed.raw_transaction.hex()))["error"]
    assert error["code"] == -32000 and error["data"]["type"] == "UnsupportedTransactionType"
    assert error["message"].startswith(
        f"{name} transaction: magicoin accepts EIP-1559 (type 2) transactions; send with type: 2")


def call_data(signature: str, types=(), args=()) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + abi_encode(list(types), list(args))).hex()


async def test_eth_call_answers_the_published_views(served):
    node, client = served
    assert json.loads(ABI_PATH.read_text()) == compute_abi()  # the published file is what the node answers
    pool = to_checksum_address(POOL_ADDRESS)
    validator = to_checksum_address(VALIDATORS[0])
    answer = await rpc(client, "eth_call", {"to": pool, "data": call_data("recognitionOf(address)", ["address"],
                                                                           [validator])}, "latest")
    assert abi_decode(["uint256"], bytes.fromhex(answer["result"][2:]))[0] == get_recognition(node.chain.state,
                                                                                               VALIDATORS[0])
    jobs = to_checksum_address(ADDRESS_BY_KIND["inference_request"])
    answer = await rpc(client, "eth_call", {"to": jobs, "data": call_data("getJob(bytes32)", ["bytes32"],
                                                                           [b"\x01" * 32])})
    assert abi_decode(["bool"], bytes.fromhex(answer["result"][2:66]))[0] is False


@pytest.mark.parametrize("call, reason", [
    ({"to": "0x" + "11" * 20, "data": "0x"}, "no code at this address"),
    ({"to": to_checksum_address(POOL_ADDRESS), "data": "0xdeadbeef"}, "unknown function selector 0xdeadbeef"),
    ({"to": to_checksum_address(ADDRESS_BY_KIND["annotation"]), "data": "0x"}, "annotation is a work kind"),
    ({"to": to_checksum_address(POOL_ADDRESS), "data": call_data("balanceOf(address)")}, "cannot decode the arguments"),
])
async def test_eth_call_reverts_with_a_reason(served, call, reason):
    node, client = served
    error = (await rpc(client, "eth_call", call, "latest"))["error"]
    assert error["code"] == 3 and error["message"].startswith("execution reverted: " + reason), error
    data = bytes.fromhex(error["data"][2:])
    assert data[:4] == bytes.fromhex("08c379a0") and abi_decode(["string"], data[4:])[0].startswith(reason)
