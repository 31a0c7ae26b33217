"""The light client in front of a real `node.service.Node` (one validator finalising with consensus),
read through web3.py pointed at the light client, and the `magicoin light` command as a user runs it."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import rlp
import trio
from eth_account import Account
from eth_utils import to_checksum_address
from web3 import Web3
from web3.middleware import SignAndSendRawMiddlewareBuilder

from chain.ledger import get_recognition
from chain.payloads import Offering
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS
from genesis import MUAGIC, save_genesis
from node.light import HTTPTransport, LightClient
from node.light.server import LightService
from tests.node.nodekit import CHAIN_ID, VALIDATOR_KEYS, make_node, make_test_genesis, start_node


async def start_real_node(nursery, tmp_path, height: int = 2):
    node = make_node(make_test_genesis(1), tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < height:
            await trio.sleep(0.05)
    return node


async def test_web3_reads_verified_data_through_the_light_client(tmp_path, nursery):
    node = await start_real_node(nursery, tmp_path)
    client = await LightClient.from_genesis(node.genesis, HTTPTransport(node.http_url, timeout=5))
    service = LightService(client, "127.0.0.1", 0, poll_interval=0.2)
    light_url = await nursery.start(service.run)
    account = Account.from_key(VALIDATOR_KEYS[0])
    full = Web3(Web3.HTTPProvider(node.http_url))
    full.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    light = Web3(Web3.HTTPProvider(light_url))

    def send_offering():
        tx_hash = full.eth.send_transaction({"from": account.address, "value": 7 * MUAGIC,
                                            "to": to_checksum_address(ADDRESS_BY_KIND["offering"]),
                                            "data": rlp.encode(Offering(b"light", b""))})
        return full.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)

    receipt = await trio.to_thread.run_sync(send_offering)
    with trio.fail_after(20):
        while client.head.number < receipt["blockNumber"]:
            await trio.sleep(0.05)

    def read():
        assert light.is_connected()
        assert light.eth.chain_id == CHAIN_ID
        number = receipt["blockNumber"]
        assert light.eth.block_number >= number
        before = light.eth.get_balance(account.address, number - 1)
        after = light.eth.get_balance(account.address, number)
        pool_after = light.eth.get_balance(to_checksum_address(POOL_ADDRESS), number)
        nonce = light.eth.get_transaction_count(account.address, number)
        block = light.eth.get_block(number, full_transactions=True)
        recognition = light.provider.make_request("muagic_getRecognition", [account.address, hex(number)])
        latest = light.eth.get_block("latest")
        return before, after, pool_after, nonce, block, int(recognition["result"], 16), latest

    before, after, pool_after, nonce, block, recognition, latest = await trio.to_thread.run_sync(read)
    number = receipt["blockNumber"]
    state = node.chain.state_at(node.chain.get_header(number).state_root)
    address = account.address.lower()
    raw_address = bytes.fromhex(address[2:])
    assert after == state.get_balance(raw_address) and before - after >= 7 * MUAGIC
    assert pool_after == state.get_balance(POOL_ADDRESS)
    assert nonce == state.get_nonce(raw_address) >= 1
    assert recognition == get_recognition(state, raw_address) > 0
    assert block["hash"] == node.chain.get_header(number).hash
    assert [tx["hash"] for tx in block["transactions"]] == [receipt["transactionHash"]]
    assert block["transactions"][0]["from"] == account.address and block["transactions"][0]["value"] == 7 * MUAGIC
    assert latest["number"] >= number and latest["hash"] == node.chain.get_header(latest["number"]).hash
    nursery.cancel_scope.cancel()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_magicoin_light_command_against_a_real_node(tmp_path, nursery):
    node = await start_real_node(nursery, tmp_path, height=3)
    genesis_file = tmp_path / "genesis.json"
    save_genesis(node.genesis, genesis_file)
    port = free_port()
    process = await trio.lowlevel.open_process(
        [str(Path(sys.executable).parent / "magicoin"), "light", "--rpc", node.http_url, "--genesis", str(genesis_file),
         "--http.port", str(port), "--poll", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            with trio.fail_after(30):
                while True:
                    try:
                        answer = (await http.post(url, json={"jsonrpc": "2.0", "id": 1,
                                                             "method": "muagic_lightStatus"})).json()
                        if int(answer["result"]["head"], 16) >= 3:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
            head = int(answer["result"]["head"], 16)
            assert answer["result"]["headHash"] == "0x" + node.chain.get_header(head).hash.hex()
            balance = (await http.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "eth_getBalance",
                                                  "params": [to_checksum_address(POOL_ADDRESS), hex(head)]})).json()
            state = node.chain.state_at(node.chain.get_header(head).state_root)
            assert int(balance["result"], 16) == state.get_balance(POOL_ADDRESS)
    finally:
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(15):
            await process.wait()
    assert process.returncode == 0
    nursery.cancel_scope.cancel()
