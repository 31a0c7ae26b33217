"""The light client against an honest server: the node's real HTTP JSON-RPC over a built chain.

The chain has 4 equal validators; evidence at block 3 slashes three of them, so
from height 6 the set is the fourth alone. Sequential sync must follow the
change through next_validators_hash; skipping from genesis must bisect (the one
remaining validator is only 1/4 of the trusted set).
"""
from __future__ import annotations

import pytest

from node.devchain import VALIDATOR_KEYS as KEYS
from chain.ledger import get_recognition
from genesis import MUAGIC
from genesis.keys import get_address
from node.light import HTTPTransport, LightClient, NotVerified
from node.light.client import compute_genesis_header
from tests.light.kit import BLOCKS, serve_chain


async def make_client(nursery, chain, genesis, **kwargs) -> LightClient:
    url = await serve_chain(nursery, chain)
    return await LightClient.from_genesis(genesis, HTTPTransport(url, timeout=5), **kwargs)


def test_genesis_header_is_computed_from_the_file_alone(built):
    genesis, chain = built
    header, validator_set = compute_genesis_header(genesis)
    assert header.hash == chain.get_header(0).hash
    assert len(validator_set) == 4


async def test_sequential_sync_verifies_every_header_and_follows_the_set_change(built, nursery):
    genesis, chain = built
    client = await make_client(nursery, chain, genesis)
    head = await client.sync(skipping=False)
    assert head.hash == chain.head.hash and head.number == BLOCKS
    stats = client.stats
    assert stats.headers_verified == stats.commits_checked == BLOCKS
    assert stats.validator_sets_fetched == 1  # the one-member set announced at height 5
    assert client.validator_sets.keys() == {chain.get_header(1).validators_hash, chain.get_header(6).validators_hash}
    assert chain.get_header(5).next_validators_hash != chain.get_header(5).validators_hash


async def test_skipping_bisects_across_the_set_change_and_reaches_the_same_head(built, nursery):
    genesis, chain = built
    client = await make_client(nursery, chain, genesis)
    head = await client.sync(skipping=True)
    assert head.hash == chain.head.hash
    stats = client.stats
    assert stats.bisections >= 1  # the new set holds 1/4 of the trusted weight: not enough to skip over it
    assert stats.commits_checked < BLOCKS // 4
    # Headers the skip jumped over are verified backwards by parent hash on demand.
    middle = await client.get_header(17)
    assert middle.hash == chain.get_header(17).hash
    assert client.stats.headers_backfilled >= 1


async def test_checkpoint_sync_trusts_only_the_given_hash(built, nursery):
    genesis, chain = built
    url = await serve_chain(nursery, chain)
    checkpoint = chain.get_header(20).hash
    client = await LightClient.from_checkpoint(genesis, HTTPTransport(url, timeout=5), checkpoint)
    assert client.head.number == 20
    await client.sync(skipping=False)
    assert client.head.hash == chain.head.hash and client.stats.headers_verified == BLOCKS - 20
    with pytest.raises(NotVerified, match="below the trusted checkpoint"):
        await client.get_header(19)
    with pytest.raises(NotVerified, match="beyond the verified head"):
        await client.get_header(BLOCKS + 1)


async def test_accounts_are_proven_at_each_height(built, nursery):
    genesis, chain = built
    client = await make_client(nursery, chain, genesis)
    await client.sync()
    giver, slashed = get_address(KEYS[3]), get_address(KEYS[0])
    for height in (0, 2, 3, 8, 12, BLOCKS):
        state = chain.state_at(chain.get_header(height).state_root)
        for address in (giver, slashed):
            account = await client.get_account(address, height)
            assert (account.nonce, account.balance, account.recognition) == (
                state.get_nonce(address), state.get_balance(address), get_recognition(state, address))
    assert (await client.get_account(slashed, 2)).recognition == 100 * MUAGIC
    assert (await client.get_account(slashed, 3)).recognition == 0
    before, after = (await client.get_account(giver, 11)).balance, (await client.get_account(giver, 12)).balance
    assert before - after == 3 * MUAGIC
    nobody = await client.get_account(b"\x42" * 20)
    assert (nobody.nonce, nobody.balance, nobody.recognition) == (0, 0, 0)


async def test_block_bodies_are_checked_against_the_header_roots(built, nursery):
    genesis, chain = built
    client = await make_client(nursery, chain, genesis)
    await client.sync()
    for height in (3, 8, 9):
        block = await client.get_block(height)
        expected = chain.get_block_by_number(height)
        assert [tx.raw for tx in block.transactions] == list(expected.transactions)
        receipts = chain.get_receipts(expected.hash)
        assert block.gas_used == (receipts[-1].cumulative_gas_used if receipts else 0)
    assert [tx.kind for tx in (await client.get_block(3)).transactions] == ["evidence"] * 3
