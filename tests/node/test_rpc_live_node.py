"""JSON-RPC served by the real `node.service.Node` (one validator finalising alone): web3.py reads and sends.

The other RPC tests use a small test node; this one checks the same server on
the node the team ships, with consensus sealing the blocks.
"""
from __future__ import annotations

import functools

import rlp
import trio
from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from chain.payloads import Offering
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS
from genesis import MUAGIC
from tests.node.nodekit import CHAIN_ID, VALIDATOR_KEYS, make_node, make_test_genesis, start_node


async def test_web3_against_a_running_single_validator_node(tmp_path, nursery):
    node = make_node(make_test_genesis(1), tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < 2:
            await trio.sleep(0.05)
    account = Account.from_key(VALIDATOR_KEYS[0])
    w3 = Web3(Web3.HTTPProvider(node.http_url))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)

    def use():
        assert w3.eth.chain_id == CHAIN_ID
        block = w3.eth.get_block("latest")
        assert block["number"] >= 2 and w3.eth.get_block(block["hash"])["number"] == block["number"]
        tx_hash = w3.eth.send_transaction({"from": account.address, "to": to_checksum_address(
            ADDRESS_BY_KIND["offering"]), "value": MUAGIC, "data": rlp.encode(Offering(b"live", b""))})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)
        return receipt, w3.eth.get_balance(to_checksum_address(POOL_ADDRESS), receipt["blockNumber"])

    receipt, pool = await trio.to_thread.run_sync(functools.partial(use))
    assert receipt["status"] == 1
    assert pool == node.chain.state_at(node.chain.get_header(receipt["blockNumber"]).state_root).get_balance(
        POOL_ADDRESS)
    nursery.cancel_scope.cancel()
