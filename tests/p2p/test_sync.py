"""Range sync from peers into an in-memory chain of RLP blobs."""

import pytest
import rlp
import trio
from eth_utils import keccak

from p2p import (
    DisconnectReason,
    PeerDisconnected,
    RemoteRequestError,
    SyncFailed,
    SyncKind,
    register_sync_handlers,
    request_range,
    request_status,
    sync_to_peer_head,
)
from p2p.messages import ErrorCode

from .helpers import ListProvider, make_chain, make_config, start_service


async def start_synced_node(nursery, blobs, **config):
    provider = ListProvider(blobs)
    service = await start_service(nursery, make_config(**config))
    register_sync_handlers(service, provider)
    return service, provider


async def test_range_sync_of_200_blobs(nursery):
    with trio.fail_after(30):
        chain = make_chain(200, payload_size=2000)
        # A small frame limit forces responses to be prefixes of the asked range.
        a, _ = await start_synced_node(nursery, chain, max_frame_size=48 * 1024)
        b, b_store = await start_synced_node(nursery, chain[:1], max_frame_size=48 * 1024)
        await b.connect(a.enode)
        imports = []

        async def import_batch(start, blobs):
            imports.append((start, len(blobs)))
            await b_store.import_blocks(start, blobs)

        result = await sync_to_peer_head(b, b_store, import_batch, batch_size=32, max_in_flight=4)
        assert b_store.blobs == chain
        assert result.imported == 200 and result.start_height == 0
        assert result.head_height == result.target_height == 200 and result.banned == ()
        assert max(count for _, count in imports) < 32  # trimmed to fit 48 KiB frames
        assert [start for start, _ in imports] == sorted(start for start, _ in imports)
        # A second run has nothing to do.
        again = await sync_to_peer_head(b, b_store, import_batch)
        assert again.imported == 0


async def test_sync_from_several_peers_bans_the_one_with_a_bad_batch(nursery):
    with trio.fail_after(30):
        chain = make_chain(120)
        # Every forged blob fails on its own, so the blame is clear whatever the liar serves.
        forged = chain[:1] + [
            rlp.encode([h, keccak(b"elsewhere"), b"forged"]) for h in range(1, 121)
        ]
        honest, _ = await start_synced_node(nursery, chain)
        liar, _ = await start_synced_node(nursery, forged)
        b, b_store = await start_synced_node(nursery, chain[:1])
        await b.connect(honest.enode)
        await b.connect(liar.enode)
        result = await sync_to_peer_head(
            b, b_store, b_store.import_blocks, batch_size=10, max_in_flight=3
        )
        assert b_store.blobs == chain
        assert result.banned == (liar.node_id,)
        assert b.is_banned(liar.node_id) and not b.is_connected(liar.node_id)
        assert b.is_connected(honest.node_id)


async def test_sync_fails_cleanly_when_the_only_peer_lies(nursery):
    with trio.fail_after(30):
        chain = make_chain(30)
        forged = chain[:10] + make_chain(30)[10:]
        liar, _ = await start_synced_node(nursery, forged)
        b, b_store = await start_synced_node(nursery, chain[:1])
        await b.connect(liar.enode)
        with pytest.raises(SyncFailed):
            await sync_to_peer_head(b, b_store, b_store.import_blocks, batch_size=8)
        assert b_store.blobs == chain[:10]  # what checked out is kept
        assert b.is_banned(liar.node_id)


async def test_header_sync(nursery):
    with trio.fail_after(20):
        chain = make_chain(50)
        a, a_store = await start_synced_node(nursery, chain)
        b, b_store = await start_synced_node(nursery, chain[:1])
        await b.connect(a.enode)
        headers: list[bytes] = []

        async def import_headers(start, batch):
            assert start == len(headers) + 1
            headers.extend(batch)
            b_store.blobs.extend(chain[start : start + len(batch)])  # our head follows the headers

        await sync_to_peer_head(b, b_store, import_headers, kind=SyncKind.HEADERS, batch_size=20)
        assert headers == a_store.get_headers(1, 50)


async def test_status_and_range_requests_are_validated(nursery):
    with trio.fail_after(20):
        chain = make_chain(10)
        a, _ = await start_synced_node(nursery, chain)
        b, _ = await start_synced_node(nursery, chain[:1])
        await b.connect(a.enode)
        status = await request_status(b, a.node_id)
        assert status.height == 10 and status.head_hash == keccak(chain[-1])
        assert await request_range(b, a.node_id, SyncKind.BLOCKS, 3, 4) == chain[3:7]
        for params in ([1], [-1, 2], [0, True]):
            with pytest.raises(RemoteRequestError) as caught:
                await b.request(a.node_id, SyncKind.BLOCKS.value, params)
            assert caught.value.code == ErrorCode.BAD_REQUEST
        # The fourth bad request reaches the ban threshold: no answer, a typed disconnect.
        with pytest.raises(PeerDisconnected) as caught:
            await b.request(a.node_id, SyncKind.BLOCKS.value, [0, 100000])
        assert caught.value.reason is DisconnectReason.BANNED
        assert a.is_banned(b.node_id)


async def test_peer_claiming_an_absurd_height_is_banned(nursery):
    with trio.fail_after(20):
        chain = make_chain(20)

        class Boaster(ListProvider):
            def status(self):
                return 2**62, keccak(b"nothing")

        boaster = await start_service(nursery, make_config())
        register_sync_handlers(boaster, Boaster(chain))
        honest, _ = await start_synced_node(nursery, chain)
        b, b_store = await start_synced_node(nursery, chain[:1])
        await b.connect(boaster.enode)
        await b.connect(honest.enode)
        with pytest.raises(SyncFailed):
            await sync_to_peer_head(b, b_store, b_store.import_blocks, batch_size=8)
        # Everything real was imported; the boaster served nothing past 20 and was banned for it.
        assert b_store.blobs == chain
        assert b.is_banned(boaster.node_id) and b.is_connected(honest.node_id)
