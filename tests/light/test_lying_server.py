"""A light client no server can fool, crash or stall: every lie ends in a typed error and the client keeps running.

Lying servers are real sockets on loopback: the `TamperingProxy` of the kit in
front of the node's real JSON-RPC (forged answers), and a raw trio socket server
(`serve_raw`) for what no well-behaved HTTP stack would send (a drip of bytes, a
50 MB body). Lies already covered one by one in test_lies.py are repeated here
through the service loop, where they must not stop it.
"""
from __future__ import annotations

import os
from functools import partial

import httpx
import psutil
import pytest
import rlp
import trio

from genesis import MUAGIC
from genesis.keys import get_address
from node.devchain import VALIDATOR_KEYS as KEYS, build_signed_chain, make_offering, sign_commit
from node.light import HTTPTransport, LightClient
from node.light.exceptions import (
    ConflictingUpstreams,
    InvalidHeaderCommit,
    InvalidProof,
    MalformedResponse,
    ResponseTooLarge,
    RPCTimeout,
)
from node.light.server import LightService
from node.light.upstreams import LightPool
from consensus.validators import ValidatorSet, compute_validators_hash
from eth_utils import keccak
from tests.light.kit import BLOCKS, height_of, rewrite_header, serve_chain, start_proxy, with_result

GIVER = get_address(KEYS[3])


async def post(url: str, body) -> dict | list:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.post(url, json=body)).json()


async def call(url: str, method: str, *params) -> dict:
    return await post(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})


async def wait_for(predicate, seconds: float = 10.0) -> None:
    with trio.fail_after(seconds):
        while not predicate():
            await trio.sleep(0.05)


def honest(method, params, response):
    return response


# --- a raw socket server: answers no HTTP library would send ----------------------------------------

async def serve_raw(nursery: trio.Nursery, respond) -> str:
    """HTTP on a bare socket: reads one request, then `respond(stream)` writes whatever it likes."""
    async def handle(stream: trio.SocketStream) -> None:
        data = b""
        with trio.move_on_after(5):
            while b"\r\n\r\n" not in data:
                data += await stream.receive_some(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), 0)
            while len(body) < length:
                body += await stream.receive_some(65536)
            try:
                await respond(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the client gave up on us: what the test wants
    listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
    return f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"


async def drip(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n")
    for _ in range(100):
        await stream.send_all(b" ")
        await trio.sleep(1.0)  # each read is quick; only a deadline on the whole request catches this


async def flood(stream: trio.SocketStream) -> None:
    """50 MB of chunked JSON-ish bytes, no content-length: only a streaming cap stops it."""
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
    chunk = b"[" + b"1," * 32767
    for _ in range(50 * 1024 * 1024 // len(chunk)):
        await stream.send_all(b"%x\r\n%s\r\n" % (len(chunk), chunk))


# --- transport: malformed, huge and slow answers -------------------------------------------------------

@pytest.mark.parametrize("body", [
    b"not json", b"\xff\xfe", b"[" * 10_000, b'{"jsonrpc": "2.0"}', b"42",
    b'[{"jsonrpc":"2.0","id":[0],"result":"0x1"}]', b'[{"jsonrpc":"2.0","id":{"a":1},"result":"0x1"}]',
    b'[{"jsonrpc":"2.0","result":"0x1"}]', b'[{"jsonrpc":"2.0","id":7,"result":"0x1"}]',
    b'[{"jsonrpc":"2.0","id":0,"result":"0x1"},{"jsonrpc":"2.0","id":0,"result":"0x2"}]',
    b'[{"jsonrpc":"2.0","id":true,"result":"0x1"}]', b'["junk"]',
])
async def test_a_malformed_answer_is_a_typed_error(nursery, body):
    async def answer(stream):
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
    url = await serve_raw(nursery, answer)
    transport = HTTPTransport(url, timeout=5)
    with pytest.raises((MalformedResponse, ResponseTooLarge)) as caught:
        await transport.call_batch([("eth_blockNumber", [])])
    assert caught.value.expected is not None
    await transport.aclose()


async def test_a_slow_drip_hits_the_whole_request_deadline(nursery):
    url = await serve_raw(nursery, drip)
    transport = HTTPTransport(url, timeout=1.5)
    started = trio.current_time()
    with pytest.raises(RPCTimeout, match="whole answer within 1.5s"):
        await transport.call_batch([("eth_blockNumber", [])])
    assert trio.current_time() - started < 1.5 + 0.5
    await transport.aclose()


async def test_a_50_mb_answer_is_cut_off_with_bounded_memory(nursery):
    url = await serve_raw(nursery, flood)
    transport = HTTPTransport(url, timeout=20, max_response_bytes=1024 * 1024)
    process = psutil.Process(os.getpid())
    before = process.memory_info().rss
    started = trio.current_time()
    with pytest.raises(ResponseTooLarge, match="too large"):
        await transport.call_batch([("eth_blockNumber", [])])
    assert trio.current_time() - started < 5
    assert process.memory_info().rss - before < 30 * 1024 * 1024
    await transport.aclose()


# --- the service loop survives every lie -----------------------------------------------------------------

async def start_service(nursery, built, tamper, *, stall_window: float = 30.0, skipping: bool = False):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    proxy, proxy_url = await start_proxy(nursery, upstream, tamper)
    client = await LightClient.from_genesis(genesis, HTTPTransport(proxy_url, timeout=2))
    service = LightService(client, "127.0.0.1", 0, poll_interval=0.05, skipping=skipping, stall_window=stall_window)
    url = await nursery.start(service.run)
    return proxy, client, service, url


def list_ids(method, params, response):
    return {**response, "id": [response["id"]]}


def junk_proof(method, params, response):
    if method == "eth_getProof" and response.get("result"):
        return with_result(response, dict(response["result"], accountProof=["0xc0", "0xc3010203", "0xc4c2c0c0c0"]))
    return response


def forged_header(method, params, response):
    if method == "muagic_getHeader" and height_of(params) == 9 and response.get("result"):
        return rewrite_header(response, keep_claimed_hash=False, state_root=b"\x66" * 32)
    return response


def forged_body(method, params, response):
    if method == "eth_getBlockByNumber" and response.get("result"):
        return with_result(response, dict(response["result"], transactions=[{"junk": 1}]))
    return response


def withheld_beyond(height):
    def tamper(method, params, response):
        number = height_of(params)
        if method in ("muagic_getHeader", "muagic_getCommit") and number is not None and number > height:
            return with_result(response, None)
        if method == "muagic_getHeaders":
            items = [item for item in response.get("result") or [] if int(item["number"], 16) <= height]
            return with_result(response, items)
        return response
    return tamper


async def test_a_batch_with_list_ids_is_refused_and_the_loop_keeps_running(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    proxy, proxy_url = await start_proxy(nursery, upstream, list_ids)
    # A pool checks each server's block 0 on its first round, so a server lying from the start is retried.
    pool = LightPool.from_genesis(genesis, [HTTPTransport(proxy_url, timeout=2)])
    service = LightService(pool, "127.0.0.1", 0, poll_interval=0.05, skipping=False)
    await nursery.start(service.run)
    client = pool.upstreams[0].client
    assert service.pool.last_error.startswith("MalformedResponse: batch answer has an id we did not send")
    assert client.head.number == 0
    proxy.tamper = honest
    await wait_for(lambda: client.head.number == BLOCKS)


async def test_junk_proof_nodes_are_a_typed_json_rpc_error(built, nursery):
    proxy, client, service, url = await start_service(nursery, built, honest)
    await wait_for(lambda: client.head.number == BLOCKS)
    proxy.tamper = junk_proof
    answer = await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")
    assert answer["error"]["code"] == -32010 and answer["error"]["data"]["type"] == InvalidProof.__name__
    proxy.tamper = honest
    assert "result" in await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")


async def test_a_forged_block_body_is_refused(built, nursery):
    proxy, client, service, url = await start_service(nursery, built, forged_body)
    await wait_for(lambda: client.head.number == BLOCKS)
    answer = await call(url, "eth_getBlockByNumber", "0x8", True)
    assert answer["error"]["data"]["type"] == "BlockBodyMismatch"


async def test_a_frozen_head_reports_the_distance_and_refuses_latest(built, nursery):
    proxy, client, service, url = await start_service(nursery, built, withheld_beyond(12), stall_window=0.5)
    await wait_for(lambda: client.head.number == 12)
    syncing = (await call(url, "eth_syncing"))["result"]
    assert int(syncing["currentBlock"], 16) == 12 and int(syncing["highestBlock"], 16) >= BLOCKS - 1
    await trio.sleep(0.7)
    answer = await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")
    assert answer["error"]["code"] == -32012
    assert answer["error"]["message"].startswith("head is stale: verified 12, upstream claims")
    assert "result" in await call(url, "eth_getBalance", "0x" + GIVER.hex(), "0x8")  # a number is still served
    proxy.tamper = honest
    await wait_for(lambda: client.head.number == BLOCKS)
    assert "result" in await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")
    assert (await call(url, "eth_syncing"))["result"] is False


async def test_when_every_header_is_refused_latest_is_not_genesis(built, nursery):
    def forge_first(method, params, response):
        if method == "muagic_getHeader" and height_of(params) == 1 and response.get("result"):
            return rewrite_header(response, keep_claimed_hash=False, state_root=b"\x66" * 32)
        return response
    proxy, client, service, url = await start_service(nursery, built, forge_first)
    answer = await call(url, "eth_getBlockByNumber", "latest", False)
    assert answer["error"]["code"] == -32012 and "no verified head beyond genesis" in answer["error"]["message"]
    proxy.tamper = honest
    await wait_for(lambda: client.head.number == BLOCKS)


async def test_a_validator_set_change_not_signed_by_the_old_set_is_refused(built, nursery):
    genesis, chain = built
    fake_keys = [keccak(b"usurper-%d" % i) for i in range(4)]
    fake_set = ValidatorSet([(get_address(k), 10**20) for k in fake_keys])
    forged = chain.get_header(5).copy(next_validators_hash=compute_validators_hash(fake_set))
    commit = sign_commit(forged, fake_keys, genesis.chain_id)  # the new set signs its own coronation

    def usurp(method, params, response):
        if height_of(params) != 5 or not response.get("result"):
            return response
        if method == "muagic_getHeader":
            return with_result(response, {"number": "0x5", "hash": "0x" + forged.hash.hex(),
                                          "rlp": "0x" + rlp.encode(forged).hex()})
        if method == "muagic_getCommit":
            return with_result(response, {"rlp": "0x" + rlp.encode(commit).hex()})
        return response
    proxy, client, service, url = await start_service(nursery, built, usurp)
    await wait_for(lambda: service.pool.last_error is not None)
    assert service.pool.last_error.startswith("InvalidHeaderCommit: invalid commit for height 5: signer not in")
    assert client.head.number == 4
    proxy.tamper = honest
    await wait_for(lambda: client.head.number == BLOCKS)


# --- several upstreams --------------------------------------------------------------------------------

async def test_with_two_upstreams_the_honest_one_is_used_while_the_liar_is_marked(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    _, liar_url = await start_proxy(nursery, upstream, forged_header)
    _, honest_url = await start_proxy(nursery, upstream, honest)
    pool = LightPool.from_genesis(genesis, [HTTPTransport(liar_url, timeout=2), HTTPTransport(honest_url, timeout=2)])
    url = await nursery.start(LightService(pool, "127.0.0.1", 0, poll_interval=0.05, skipping=False).run)
    await wait_for(lambda: pool.head.number == BLOCKS)
    status = (await call(url, "muagic_lightStatus"))["result"]
    liar, good = status["upstreams"]
    assert liar["marked"] == "lying" and liar["lastError"].startswith("InvalidHeaderCommit")
    assert good["marked"] is None and good["head"] == BLOCKS
    assert (await call(url, "eth_blockNumber"))["result"] == hex(BLOCKS)
    assert "result" in await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")


async def test_two_upstreams_with_different_verified_blocks_are_a_conflict(built, nursery, tmp_path):
    genesis, chain = built
    other = build_signed_chain(tmp_path / "fork", genesis, 6, txs_at={2: [make_offering(KEYS[3], MUAGIC)]})
    try:
        assert other.chain.get_header(2).hash != chain.get_header(2).hash
        first, second = await serve_chain(nursery, chain), await serve_chain(nursery, other.chain)
        pool = LightPool.from_genesis(genesis, [HTTPTransport(first, timeout=2), HTTPTransport(second, timeout=2)])
        with pytest.raises(ConflictingUpstreams, match="disagree on verified block"):
            await pool.sync(skipping=False)
        url = await nursery.start(LightService(pool, "127.0.0.1", 0, poll_interval=0.05).run)
        answer = await call(url, "eth_getBalance", "0x" + GIVER.hex(), "latest")
        assert answer["error"]["data"]["type"] == "ConflictingUpstreams"
    finally:
        other.db.close()


async def test_a_forged_commit_is_refused_by_the_loop(built, nursery):
    def thin(method, params, response):
        if method == "muagic_getCommit" and height_of(params) == 3 and response.get("result"):
            return with_result(response, {"rlp": "0xc0"})
        return response
    proxy, client, service, url = await start_service(nursery, built, thin)
    await wait_for(lambda: service.pool.last_error is not None)
    assert service.pool.last_error.startswith(InvalidHeaderCommit.__name__)
    assert client.head.number == 2
