"""The light client's JSON-RPC: standard shapes and errors, and a background sync that meets a lie."""
from __future__ import annotations

import httpx
import trio

from node.devchain import VALIDATOR_KEYS as KEYS
from genesis.keys import get_address
from node.light import HTTPTransport, LightClient
from node.light.server import LightService
from tests.light.kit import BLOCKS, at, rewrite_header, serve_chain, start_proxy


async def post(url: str, body) -> dict | list:
    async with httpx.AsyncClient() as http:
        return (await http.post(url, json=body)).json()


async def test_rpc_shapes_and_errors(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    client = await LightClient.from_genesis(genesis, HTTPTransport(upstream, timeout=5))
    url = await nursery.start(LightService(client, "127.0.0.1", 0, poll_interval=60).run)
    address = "0x" + get_address(KEYS[3]).hex()
    answers = await post(url, [
        {"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"},
        {"jsonrpc": "2.0", "id": 2, "method": "eth_getTransactionCount", "params": [address, "0x8"]},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_getBlockByNumber", "params": ["earliest", False]},
        {"jsonrpc": "2.0", "id": 4, "method": "eth_sendRawTransaction", "params": ["0x00"]},
        {"jsonrpc": "2.0", "id": 5, "method": "eth_getBalance", "params": ["0x1234"]},
        {"jsonrpc": "2.0", "id": 6, "method": "eth_getBlockByNumber", "params": [hex(BLOCKS + 5), False]},
        {"jsonrpc": "2.0", "id": 7, "method": "eth_getBlockByHash", "params": ["0x" + chain.get_header(BLOCKS).hash.hex()]},
    ])
    by_id = {answer["id"]: answer for answer in answers}
    assert by_id[1]["result"] == hex(BLOCKS)
    assert by_id[2]["result"] == hex(chain.state_at(chain.get_header(8).state_root).get_nonce(get_address(KEYS[3])))
    assert by_id[3]["result"]["hash"] == "0x" + chain.get_header(0).hash.hex()
    assert by_id[4]["error"]["code"] == -32601  # the light client sends nothing it cannot verify
    assert by_id[5]["error"]["code"] == -32602
    assert by_id[6]["error"]["code"] == -32001 and "beyond the verified head" in by_id[6]["error"]["message"]
    assert by_id[7]["result"]["number"] == hex(BLOCKS)
    assert (await post(url, {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}))["result"] == hex(genesis.chain_id)
    assert (await post(url, []))["error"]["code"] == -32600


async def test_background_sync_refuses_a_forged_header_and_keeps_the_verified_head(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    proxy, proxy_url = await start_proxy(nursery, upstream, at("muagic_getHeader", 21, lambda r: rewrite_header(
        r, keep_claimed_hash=False, recognition=10**30)))
    client = await LightClient.from_genesis(genesis, HTTPTransport(proxy_url, timeout=5))
    service = LightService(client, "127.0.0.1", 0, poll_interval=0.05, skipping=False)
    url = await nursery.start(service.run)
    status = (await post(url, {"jsonrpc": "2.0", "id": 1, "method": "muagic_lightStatus"}))["result"]
    assert status["head"] == hex(20)
    assert status["lastError"].startswith("InvalidHeaderCommit: invalid commit for height 21: block_hash")
    answer = await post(url, {"jsonrpc": "2.0", "id": 2, "method": "eth_getBlockByNumber", "params": ["0x15", False]})
    assert answer["error"]["code"] == -32001  # block 21 is not shown: it never verified
    # The server stops lying: the next round verifies on.
    proxy.tamper = lambda method, params, response: response
    with trio.fail_after(10):
        while client.head.number < BLOCKS:
            await trio.sleep(0.05)
    status = (await post(url, {"jsonrpc": "2.0", "id": 3, "method": "muagic_lightStatus"}))["result"]
    assert status["lastError"] is None and status["headHash"] == "0x" + chain.head.hash.hex()
