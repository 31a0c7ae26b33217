"""A lying RPC server is always caught, with a typed error naming the lie.

The upstream is the node's real JSON-RPC over the built chain; between it and
the light client sits a `TamperingProxy` on loopback that rewrites one kind of
answer per test.
"""
from __future__ import annotations

import httpx
import pytest
import rlp

from chain.chain import encode_validator_set
from consensus.validators import ValidatorSet, compute_validators_hash
from consensus.votes import Commit
from eth_utils import keccak
from genesis.keys import get_address
from node.light import (
    CommitBelowQuorum,
    ForgedHeader,
    GenesisMismatch,
    HeaderWithheld,
    HTTPTransport,
    InvalidHeaderCommit,
    InvalidProof,
    LightClient,
    ReportedValueMismatch,
    RPCTimeout,
    WrongValidatorSet,
)
from node.devchain import VALIDATOR_KEYS as KEYS, sign_commit
from node.light.server import LightService
from tests.light.kit import HANG, WITHHOLD, at, height_of, rewrite_header, serve_chain, start_proxy, with_result

GIVER = get_address(KEYS[3])


async def lying_client(nursery, built, tamper, *, timeout: float = 5.0, sync: bool = False) -> LightClient:
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    proxy, url = await start_proxy(nursery, upstream)
    client = await LightClient.from_genesis(genesis, HTTPTransport(url, timeout=timeout))
    if sync:
        await client.sync()
    proxy.tamper = tamper
    return client


# --- accounts ------------------------------------------------------------------------------------

async def test_a_changed_balance_is_caught(built, nursery):
    def inflate(name, params, response):
        if name == "eth_getProof":
            result = dict(response["result"], balance=hex(int(response["result"]["balance"], 16) + 10**18))
            return with_result(response, result)
        return response
    client = await lying_client(nursery, built, inflate, sync=True)
    with pytest.raises(ReportedValueMismatch, match="false balance") as caught:
        await client.get_account(GIVER)
    assert caught.value.got == caught.value.expected + 10**18


async def test_a_changed_recognition_is_caught(built, nursery):
    def inflate(name, params, response):
        if name == "eth_getProof":
            storage = [dict(item, value=hex(int(item["value"], 16) + 1)) for item in response["result"]["storageProof"]]
            return with_result(response, dict(response["result"], storageProof=storage))
        return response
    client = await lying_client(nursery, built, inflate, sync=True)
    with pytest.raises(ReportedValueMismatch, match="false recognition"):
        await client.get_account(GIVER)


async def test_a_proof_from_a_different_root_is_caught(built, nursery):
    genesis, chain = built
    stale = chain.get_proof(GIVER, [b"\x00" * 32], 7)  # before the offerings: another balance, another root

    def replay_old_proof(name, params, response):
        if name == "eth_getProof":
            return with_result(response, dict(
                response["result"], balance=hex(stale.balance), nonce=hex(stale.nonce),
                accountProof=["0x" + node.hex() for node in stale.account_proof]))
        return response
    client = await lying_client(nursery, built, replay_old_proof, sync=True)
    with pytest.raises(InvalidProof, match="account proof does not lead from the state root") as caught:
        await client.get_account(GIVER)
    assert caught.value.expected == chain.head.state_root


# --- headers ----------------------------------------------------------------------------------------

async def test_a_header_whose_rlp_does_not_hash_to_its_claimed_hash_is_caught(built, nursery):
    client = await lying_client(nursery, built, at("muagic_getHeader", 9, lambda r: rewrite_header(
        r, keep_claimed_hash=True, state_root=b"\x66" * 32)))
    with pytest.raises(ForgedHeader, match="forged header at height 9: hash"):
        await client.sync(skipping=False)
    assert client.head.number == 8  # everything before the lie was verified, nothing after is shown


async def test_a_rehashed_forged_header_is_caught_by_its_commit(built, nursery):
    client = await lying_client(nursery, built, at("muagic_getHeader", 9, lambda r: rewrite_header(
        r, keep_claimed_hash=False, state_root=b"\x66" * 32)))
    with pytest.raises(InvalidHeaderCommit, match="invalid commit for height 9: block_hash"):
        await client.sync(skipping=False)


async def test_a_forged_far_header_is_caught_when_skipping(built, nursery):
    genesis, chain = built
    client = await lying_client(nursery, built, at("muagic_getHeader", chain.height, lambda r: rewrite_header(
        r, keep_claimed_hash=False, state_root=b"\x66" * 32)))
    with pytest.raises(InvalidHeaderCommit, match="block_hash"):
        await client.sync(skipping=True)
    assert client.head.number < chain.height


async def test_a_commit_below_quorum_is_caught(built, nursery):
    def drop_signatures(response):
        commit = rlp.decode(bytes.fromhex(response["result"]["rlp"][2:]), sedes=Commit)
        thin = commit.copy(signatures=commit.signatures[:2])  # 2 of 4 equal weights: not more than 2/3
        return with_result(response, dict(response["result"], rlp="0x" + rlp.encode(thin).hex()))
    client = await lying_client(nursery, built, at("muagic_getCommit", 4, drop_signatures))
    with pytest.raises(CommitBelowQuorum, match="commit for height 4") as caught:
        await client.sync(skipping=False)
    assert (caught.value.weight, caught.value.total) == (200 * 10**18, 400 * 10**18)


async def test_a_commit_with_a_forged_signature_is_caught(built, nursery):
    def forge(response):
        commit = rlp.decode(bytes.fromhex(response["result"]["rlp"][2:]), sedes=Commit)
        first = commit.signatures[0]
        bad = first.copy(signature=bytes([first.signature[0] ^ 1]) + first.signature[1:])
        forged = commit.copy(signatures=[bad] + list(commit.signatures[1:]))
        return with_result(response, dict(response["result"], rlp="0x" + rlp.encode(forged).hex()))
    client = await lying_client(nursery, built, at("muagic_getCommit", 2, forge))
    with pytest.raises(InvalidHeaderCommit, match="height 2: bad signature"):
        await client.sync(skipping=False)


async def test_a_wrong_validator_set_is_caught(built, nursery):
    attacker = ValidatorSet([(keccak(b"attacker")[:20], 10**20)])

    def swap(response):
        encoded = encode_validator_set(attacker)
        return with_result(response, dict(response["result"], rlp="0x" + encoded.hex(),
                                          hash="0x" + compute_validators_hash(attacker).hex()))
    genesis, chain = built
    client = await lying_client(nursery, built, at("muagic_getValidatorSet", 6, swap))
    with pytest.raises(WrongValidatorSet, match="wrong validator set for height 6") as caught:
        await client.sync(skipping=False)
    assert caught.value.expected == chain.get_header(6).validators_hash


async def test_a_consistent_fork_signed_by_another_set_is_caught(built, nursery):
    """Header, commit and set all forged consistently by keys outside the trusted set."""
    genesis, chain = built
    fake_keys = [keccak(b"fork-%d" % i) for i in range(4)]
    fake_set = ValidatorSet([(get_address(k), 10**20) for k in fake_keys])
    original = chain.get_header(9)
    fork = original.copy(validators_hash=compute_validators_hash(fake_set), state_root=b"\x66" * 32)
    commit = sign_commit(fork, fake_keys, chain.genesis.chain_id)

    def tamper(name, params, response):
        if height_of(params) != 9 or response.get("result") is None:
            return response
        if name == "muagic_getHeader":
            return with_result(response, {"number": "0x9", "hash": "0x" + fork.hash.hex(),
                                          "rlp": "0x" + rlp.encode(fork).hex()})
        if name == "muagic_getCommit":
            return with_result(response, dict(response["result"], rlp="0x" + rlp.encode(commit).hex()))
        if name == "muagic_getValidatorSet":
            return with_result(response, dict(response["result"], rlp="0x" + encode_validator_set(fake_set).hex()))
        return response
    client = await lying_client(nursery, built, tamper)
    with pytest.raises(ForgedHeader, match="height 9: validators_hash"):
        await client.sync(skipping=False)
    client = await lying_client(nursery, built, tamper)
    with pytest.raises(ForgedHeader, match="height 9: validators_hash"):
        await client.sync(9, skipping=True)



# --- the range method (muagic_getHeaders) ------------------------------------------------------------

async def test_sequential_sync_fetches_ranges_and_checks_every_commit(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    proxy, url = await start_proxy(nursery, upstream)
    client = await LightClient.from_genesis(genesis, HTTPTransport(url))
    await client.sync(skipping=False)
    assert client.head == chain.head or client.head.number == chain.height - 1
    assert "muagic_getHeaders" in proxy.seen and "muagic_getHeader" not in proxy.seen[1:]
    assert client.stats.commits_checked == client.head.number


async def test_a_range_that_stops_short_or_skips_a_height_is_a_withheld_header(built, nursery):
    def drop_item(index):
        def tamper(name, params, response):
            if name == "muagic_getHeaders" and isinstance(response.get("result"), list):
                items = response["result"]
                return with_result(response, items[:index] + items[index + 1:])
            return response
        return tamper
    client = await lying_client(nursery, built, drop_item(6))  # the answer to "from 1" lacks height 7
    with pytest.raises(HeaderWithheld, match="withheld the header at height 7"):
        await client.sync(20, skipping=False)
    assert client.head.number == 6
    client = await lying_client(nursery, built, drop_item(100))  # nothing dropped: the chain is shorter
    await client.sync(20, skipping=False)
    assert client.head.number == 20


async def test_a_commit_moved_to_another_height_in_a_range_is_caught(built, nursery):
    def shift(name, params, response):
        if name == "muagic_getHeaders" and isinstance(response.get("result"), list):
            items = [dict(item) for item in response["result"]]
            items[4]["commit"] = items[3]["commit"]  # height 5 carries the commit of height 4
            return with_result(response, items)
        return response
    client = await lying_client(nursery, built, shift)
    with pytest.raises(InvalidHeaderCommit, match="invalid commit for height 5"):
        await client.sync(20, skipping=False)
    assert client.head.number == 4


async def test_a_server_without_the_range_method_is_synced_call_by_call_and_its_lies_still_caught(built, nursery):
    def no_range(name, params, response):
        if name == "muagic_getHeaders":
            return {"jsonrpc": "2.0", "id": response["id"], "error": {"code": -32601, "message": "method not found"}}
        return response
    genesis, chain = built
    client = await lying_client(nursery, built, no_range)
    await client.sync(skipping=False)
    assert client.range_supported is False and client.head.number >= chain.height - 1

    def no_range_and_forged(name, params, response):
        response = no_range(name, params, response)
        if name == "muagic_getHeader" and height_of(params) == 9:
            return rewrite_header(response, keep_claimed_hash=False, state_root=b"\x66" * 32)
        return response
    client = await lying_client(nursery, built, no_range_and_forged)
    with pytest.raises(InvalidHeaderCommit, match="invalid commit for height 9: block_hash"):
        await client.sync(skipping=False)
    assert client.head.number == 8


# --- withholding -------------------------------------------------------------------------------------

async def test_a_withheld_header_is_caught(built, nursery):
    client = await lying_client(nursery, built, at("muagic_getHeader", 11, lambda r: WITHHOLD))
    with pytest.raises(HeaderWithheld, match="withheld the header at height 11"):
        await client.sync(skipping=False)


async def test_a_withheld_commit_is_caught(built, nursery):
    client = await lying_client(nursery, built, at("muagic_getCommit", 11, lambda r: WITHHOLD))
    with pytest.raises(HeaderWithheld, match="withheld the commit at height 11"):
        await client.sync(30, skipping=False)


async def test_a_server_that_hangs_times_out(built, nursery):
    client = await lying_client(nursery, built, at("muagic_getHeader", 5, lambda r: HANG), timeout=0.5)
    with pytest.raises(RPCTimeout, match="did not answer"):
        await client.sync(skipping=False)


async def test_another_networks_genesis_is_refused(built, nursery):
    genesis, chain = built
    upstream = await serve_chain(nursery, chain)
    other = genesis.copy(chain_id=genesis.chain_id + 1)
    with pytest.raises(GenesisMismatch, match="block 0"):
        await LightClient.from_genesis(other, HTTPTransport(upstream, timeout=5))


# --- through the light client's own JSON-RPC -----------------------------------------------------------

async def test_the_light_rpc_answers_a_lie_with_an_error_naming_it(built, nursery):
    def inflate(name, params, response):
        if name == "eth_getProof":
            return with_result(response, dict(response["result"], balance="0xffff"))
        return response
    client = await lying_client(nursery, built, inflate, sync=True)
    url = await nursery.start(LightService(client, "127.0.0.1", 0, poll_interval=60).run)
    async with httpx.AsyncClient() as http:
        answer = (await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance",
                                             "params": ["0x" + GIVER.hex(), "latest"]})).json()
    assert "result" not in answer
    assert answer["error"]["code"] == -32010
    assert "false balance" in answer["error"]["message"]
    assert answer["error"]["data"]["type"] == "ReportedValueMismatch"
    assert answer["error"]["data"]["got"] == 0xFFFF
