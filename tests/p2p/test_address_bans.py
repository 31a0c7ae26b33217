"""Bans by IP address and the per-address handshake cap (issue 14), on real services on loopback.

A ban of a connected peer also bans the address it came from, so the abuser cannot come back under a
fresh key; inbound connections from a banned address are closed before any handshake work. Our own
listen address (and `ip_ban_exempt`) is shared with co-located honest nodes and is never banned. One
address may hold at most `max_pending_handshakes_per_ip` connections in the handshake.
"""
from __future__ import annotations

import itertools
import os

import pytest
import rlp
import trio

from p2p import P2PError
from p2p.hello import PROTOCOL_VERSION, Hello, sign_hello
from p2p.messages import MsgType, encode_message
from p2p.secure import perform_noise_handshake

from .helpers import (
    CHAIN_ID,
    GENESIS_HASH,
    RawPeer,
    make_config,
    make_key,
    start_service,
    wait_until,
)

# Each test takes fresh source addresses, so no ban leaks from one test into another.
ADDRESSES = (f"127.0.{os.getpid() % 200 + 20}.{n}" for n in itertools.count(2))


async def open_session(port: int, source: str, key=None) -> RawPeer:
    key = key or make_key()
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    channel = await perform_noise_handshake(stream, initiator=True)
    hello = Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS_HASH, key.public_key.to_bytes(), 0, b"raw")
    await channel.send_frames([encode_message(MsgType.HELLO, rlp.encode(hello),
                                              sign_hello(key, hello, channel.handshake_hash))])
    return RawPeer(channel, key, None)


async def test_a_ban_covers_the_address_and_a_fresh_key_from_it_is_refused(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config())
        source = next(ADDRESSES)
        rogue = await open_session(a.enode.port, source)
        await wait_until(lambda: a.is_connected(rogue.node_id))
        a.ban(rogue.node_id, "test")
        assert a.is_banned(rogue.node_id) and a.is_address_banned(source)
        await rogue.receive_until_closed()
        assert a.peer_table.counters.address_bans == 1

        with pytest.raises((P2PError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
            await open_session(a.enode.port, source)  # closed before the Noise handshake
        assert a.listener.refused_banned == 1

        other = await open_session(a.enode.port, next(ADDRESSES))  # another address is not affected
        await wait_until(lambda: a.is_connected(other.node_id))
        await other.aclose()


async def test_our_own_and_exempt_addresses_are_never_banned(nursery):
    with trio.fail_after(15):
        exempt = next(ADDRESSES)
        a = await start_service(nursery, make_config(ip_ban_exempt=(exempt,)))
        for source in ("127.0.0.1", exempt):
            rogue = await open_session(a.enode.port, source)
            await wait_until(lambda rogue=rogue: a.is_connected(rogue.node_id))
            a.ban(rogue.node_id, "test")
            await rogue.receive_until_closed()
            assert a.is_banned(rogue.node_id) and not a.is_address_banned(source)
            fresh = await open_session(a.enode.port, source)  # a co-located honest node still gets in
            await wait_until(lambda fresh=fresh: a.is_connected(fresh.node_id))
            await fresh.aclose()
        assert a.peer_table.counters.address_bans == 0


async def test_an_address_ban_expires(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config(ban_duration=0.5))
        source = next(ADDRESSES)
        rogue = await open_session(a.enode.port, source)
        await wait_until(lambda: a.is_connected(rogue.node_id))
        a.ban(rogue.node_id, "test")
        assert a.is_address_banned(source)
        await wait_until(lambda: not a.is_address_banned(source))
        back = await open_session(a.enode.port, source)
        await wait_until(lambda: a.is_connected(back.node_id))
        await back.aclose()


async def test_one_address_cannot_take_every_pending_handshake(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config(max_pending_handshakes=10, max_pending_handshakes_per_ip=2,
                                                     handshake_timeout=5.0))
        flooder = next(ADDRESSES)
        streams = [await trio.open_tcp_stream("127.0.0.1", a.enode.port, local_address=flooder) for _ in range(6)]
        await wait_until(lambda: a.listener.refused == 4)  # all but two closed at once
        # Another address, and our own, still complete a handshake while the flooder holds its two.
        for source in (next(ADDRESSES), "127.0.0.1"):
            peer = await open_session(a.enode.port, source)
            await wait_until(lambda peer=peer: a.is_connected(peer.node_id))
            await peer.aclose()
        for stream in streams:
            await stream.aclose()
        await wait_until(lambda: a.listener._pending_by_host == {})  # the map empties with the handshakes
