"""JSON-RPC against an unmodified web3.py over a real socket: reads, EIP-1186 proofs, and a signed offering.

web3's HTTPProvider is synchronous, so it runs in a worker thread while the
server (and the test node's block producer) run on the trio loop.
"""
from __future__ import annotations

import functools

import pytest
import rlp
import trio
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from trie import HexaryTrie
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from chain.payloads import Offering
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS
from genesis import MUAGIC
from node.http import serve_http
from tests.node.conftest_rpc import (
    CHAIN_ID, REQUESTER_KEY, VALIDATOR_KEYS, VALIDATORS, RPCTestNode, build_work_history,
)


@pytest.fixture
async def served(tmp_path, nursery):
    node = RPCTestNode(tmp_path / "db")
    history = build_work_history(node)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    yield node, history, url
    nursery.cancel_scope.cancel()


async def in_thread(fn, *args):
    return await trio.to_thread.run_sync(functools.partial(fn, *args))


def verify_account_proof(proof, state_root: bytes) -> None:
    """Check an eth_getProof answer against a state root with py-trie, as a light client would."""
    nodes = [rlp.decode(bytes(p)) for p in proof["accountProof"]]
    encoded = HexaryTrie.get_from_proof(state_root, keccak(bytes.fromhex(proof["address"][2:])), nodes)
    nonce, balance, storage_hash, code_hash = rlp.decode(encoded)
    assert int.from_bytes(nonce, "big") == proof["nonce"]
    assert int.from_bytes(balance, "big") == proof["balance"]
    assert storage_hash == bytes(proof["storageHash"]) and code_hash == bytes(proof["codeHash"])
    for item in proof["storageProof"]:
        nodes = [rlp.decode(bytes(p)) for p in item["proof"]]
        value = HexaryTrie.get_from_proof(storage_hash, keccak(bytes(item["key"]).rjust(32, b"\0")), nodes)
        # web3 hands the value back as bytes (HexBytes of the hex quantity)
        assert int.from_bytes(rlp.decode(value) if value else b"", "big") == int.from_bytes(bytes(item["value"]), "big")


async def test_web3_reads_blocks_state_transactions_receipts_and_proofs(served):
    node, history, url = served
    w3 = Web3(Web3.HTTPProvider(url))

    def read():
        assert w3.is_connected()
        assert w3.eth.chain_id == CHAIN_ID
        assert w3.net.version == str(CHAIN_ID)
        assert w3.client_version.startswith("magicoin/")
        assert w3.eth.syncing is False
        height = node.chain.height
        assert w3.eth.block_number == height >= 5

        for number in range(node.chain.height + 1):
            block = w3.eth.get_block(number)
            header = node.chain.get_header(number)
            assert block["hash"] == header.hash and block["stateRoot"] == header.state_root
            assert block["number"] == number and block["miner"] == to_checksum_address(header.proposer)
            assert block["timestamp"] == header.timestamp_ms // 1000 and block["baseFeePerGas"] == 1  # waived
            assert w3.eth.get_block(header.hash)["number"] == number
        assert w3.eth.get_block("latest")["number"] == w3.eth.get_block("finalized")["number"] == height
        assert w3.eth.get_block("earliest")["number"] == 0

        # Full transaction objects: senders, kinds, nonces and values as they were signed.
        full = w3.eth.get_block(height - 1, full_transactions=True)
        assert full["transactions"] and all(tx["blockNumber"] == height - 1 for tx in full["transactions"])
        assert [tx["hash"] for tx in full["transactions"]] == list(w3.eth.get_block(height - 1)["transactions"])
        offering_hash = history.tx_hashes["offering"]
        tx = w3.eth.get_transaction(offering_hash)
        assert tx["from"] == to_checksum_address(VALIDATORS[1]) and tx["value"] == 5 * MUAGIC
        assert tx["to"] == to_checksum_address(ADDRESS_BY_KIND["offering"]) and tx["type"] == 2

        for kind, tx_hash in history.tx_hashes.items():
            receipt = w3.eth.get_transaction_receipt(tx_hash)
            assert receipt["transactionHash"] == tx_hash
            assert receipt["status"] == (0 if kind == "annotation_failed" else 1), kind
        assert w3.eth.get_transaction_receipt(history.failed_tx)["status"] == 0

        state = node.chain.state
        for address in VALIDATORS + [POOL_ADDRESS]:
            assert w3.eth.get_balance(to_checksum_address(address)) == state.get_balance(address)
            assert w3.eth.get_transaction_count(to_checksum_address(address)) == state.get_nonce(address)
        assert w3.eth.get_balance(to_checksum_address(VALIDATORS[3])) == 0  # slashed by the evidence
        # Balances at an older block come from that block's state root: before the slash, validator 3 held its
        # genesis balance, plus an attester's reward if the committee draw (seeded by block hashes) seated it.
        before_slash = w3.eth.get_balance(to_checksum_address(VALIDATORS[3]), height - 1)
        assert before_slash == node.chain.state_at(node.chain.get_header(height - 1).state_root).get_balance(
            VALIDATORS[3])
        if VALIDATORS[3] in history.committee:
            assert before_slash > 100 * MUAGIC
        else:
            assert before_slash == 100 * MUAGIC

        # eth_getProof: the account and its recognition slot, checked against the block's stateRoot.
        for number in (2, height):
            header = node.chain.get_header(number)
            proof = w3.eth.get_proof(to_checksum_address(VALIDATORS[1]), [0, 1], number)
            verify_account_proof(proof, header.state_root)
            assert proof["balance"] == node.chain.state_at(header.state_root).get_balance(VALIDATORS[1])
        assert w3.eth.get_proof(to_checksum_address(VALIDATORS[1]), [0])["storageProof"][0]["value"] != b""
        assert w3.eth.get_storage_at(to_checksum_address(VALIDATORS[1]), 0) == \
            state.get_storage(VALIDATORS[1], bytes(32)).rjust(32, b"\0")
        assert w3.eth.get_code(to_checksum_address(VALIDATORS[0])) == b""

    await in_thread(read)


async def test_web3_sends_an_eth_account_signed_offering_through_its_own_fee_and_gas_flow(served, nursery):
    node, history, url = served
    nursery.start_soon(node.run_producer)
    account = Account.from_key(VALIDATOR_KEYS[0])
    w3 = Web3(Web3.HTTPProvider(url))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    data = rlp.encode(Offering(b"for the pool", history.job_id))
    pool_before = node.chain.state.get_balance(POOL_ADDRESS)

    def send():
        # send_transaction: web3 asks for the nonce (pending), gas (eth_estimateGas), fees
        # (eth_maxPriorityFeePerGas, the block's baseFeePerGas) and the chain id, signs, and sends raw.
        tx_hash = w3.eth.send_transaction({"from": account.address, "to": to_checksum_address(
            ADDRESS_BY_KIND["offering"]), "value": 2 * MUAGIC, "data": data})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=20, poll_latency=0.05)
        # A second one, signed by eth-account directly and sent with send_raw_transaction.
        signed = Account.sign_transaction({
            "type": 2, "chainId": w3.eth.chain_id, "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            "to": to_checksum_address(ADDRESS_BY_KIND["offering"]), "value": MUAGIC, "data": data,
            "gas": w3.eth.estimate_gas({"to": to_checksum_address(ADDRESS_BY_KIND["offering"]), "data": data,
                                        "value": MUAGIC}),
            "maxFeePerGas": 0, "maxPriorityFeePerGas": w3.eth.max_priority_fee}, account.key)
        raw_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        return tx_hash, receipt, w3.eth.wait_for_transaction_receipt(raw_hash, timeout=20, poll_latency=0.05)

    tx_hash, receipt, raw_receipt = await in_thread(send)
    assert receipt["status"] == 1 and receipt["transactionHash"] == tx_hash
    assert raw_receipt["status"] == 1
    assert node.chain.state.get_balance(POOL_ADDRESS) >= pool_before + 3 * MUAGIC
    tx = node.chain.get_transaction(bytes(tx_hash))[2]
    assert tx[0] == 2  # a type-2 transaction as the chain stored it
