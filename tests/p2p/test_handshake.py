"""Noise XX plus the signed hello: who may connect, and typed reasons for who may not."""

import pytest
import trio
from eth_utils import keccak

from p2p import DisconnectReason, PeerDisconnected, PeerEventKind, parse_enode
from p2p.exceptions import BadHelloSignature, HelloMismatch, IdentityMismatch
from p2p.hello import PROTOCOL_VERSION
from p2p.identity import Enode

from .helpers import (
    CHAIN_ID,
    GENESIS_HASH,
    make_config,
    make_key,
    raw_session,
    start_service,
    wait_until,
)


async def test_handshake_connects_both_sides(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        events = a.subscribe_peer_events()
        b = await start_service(nursery, make_config(bootnodes=(str(a.enode),)))
        event = await events.receive()
        assert (
            event.kind is PeerEventKind.CONNECTED and event.node_id == b.node_id and event.inbound
        )
        await wait_until(lambda: b.is_connected(a.node_id))
        [info] = b.get_peers()
        assert info.node_id == a.node_id and not info.inbound
        assert info.enode.port == a.enode.port  # the hello carries the listen port
        # Both ends derived the same session from one Noise handshake.
        assert (
            a.get_peer(b.node_id).channel.handshake_hash
            == b.get_peer(a.node_id).channel.handshake_hash
        )
        assert a.statistics().peers == 1 and a.statistics().inbound == 1
        assert b.statistics().outbound == 1


@pytest.mark.parametrize(
    "override, field, reason",
    [
        ({"chain_id": CHAIN_ID + 1}, "chain_id", DisconnectReason.CHAIN_ID),
        ({"genesis_hash": keccak(b"another genesis")}, "genesis_hash", DisconnectReason.GENESIS),
        (
            {"protocol_version": PROTOCOL_VERSION + 1},
            "protocol_version",
            DisconnectReason.PROTOCOL_VERSION,
        ),
    ],
)
async def test_other_network_is_rejected(nursery, caplog, override, field, reason):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config(**override))
        # Both sides check; the dialler's own check raises first with the typed mismatch.
        with pytest.raises((HelloMismatch, PeerDisconnected)) as caught:
            await b.connect(a.enode)
        if isinstance(caught.value, HelloMismatch):
            assert caught.value.field == field and caught.value.reason is reason
        else:
            assert caught.value.reason is reason
        await wait_until(lambda: a.statistics().handshake_failures == 1)
        assert a.statistics().peers == 0 and b.statistics().peers == 0
        assert f"hello {field} mismatch" in caplog.text
        # Its signature proved who it is, so it is kept from redialling for a while.
        assert a.is_banned(b.node_id)
        with pytest.raises(PeerDisconnected) as caught:
            await b.connect(a.enode)
        assert caught.value.reason is DisconnectReason.BANNED


async def test_dialling_an_enode_reaches_only_that_identity(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        impostor = Enode(make_key().public_key.to_bytes(), "127.0.0.1", a.enode.port)
        with pytest.raises(IdentityMismatch) as caught:
            await b.connect(impostor)
        assert caught.value.got == a.node_id and caught.value.expected == impostor.node_id
        assert b.statistics().peers == 0
        await wait_until(lambda: a.statistics().peers == 0)


async def test_claiming_another_identity_is_rejected(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        victim = make_key().public_key.to_bytes()
        # Signed with our own key but claiming the victim's node id.
        async with raw_session(a.enode.port, claimed_node_id=victim) as raw:
            assert raw.refusal is DisconnectReason.BAD_HELLO and raw.remote_hello is None
            assert await raw.receive_until_closed() == []
        assert a.statistics().handshake_failures == 1 and not a.is_connected(victim)


async def test_replayed_hello_signature_is_rejected(nursery):
    """A signature lifted from one session does not authenticate another."""
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        key = make_key()
        async with raw_session(a.enode.port, key=key) as first:
            await wait_until(lambda: a.is_connected(first.node_id))
            from p2p.hello import Hello, sign_hello

            hello = Hello(PROTOCOL_VERSION, CHAIN_ID, GENESIS_HASH, first.node_id, 0, b"raw")
            lifted = sign_hello(key, hello, first.channel.handshake_hash)
        await wait_until(lambda: not a.is_connected(first.node_id))
        async with raw_session(
            a.enode.port, claimed_node_id=first.node_id, signature_override=lifted
        ) as second:
            assert second.refusal is DisconnectReason.BAD_HELLO
        assert not a.is_connected(first.node_id)


def test_bad_signature_error_names_both_keys():
    exc = BadHelloSignature(b"\x01" * 64, b"\x02" * 64)
    assert "0101" in str(exc) and "0202" in str(exc)


def test_parse_enode_round_trips():
    node_id = make_key().public_key.to_bytes()
    text = f"{node_id.hex()}@127.0.0.1:30303"
    enode = parse_enode(text)
    assert enode == Enode(node_id, "127.0.0.1", 30303) and str(enode) == text
    assert parse_enode("enode://" + text) == enode
    v6 = parse_enode(f"{node_id.hex()}@[::1]:30303")
    assert v6.host == "::1" and parse_enode(str(v6)) == v6


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc@127.0.0.1:1",
        "00" * 64 + "@127.0.0.1:1",
        "zz@1.2.3.4:5",
        "{k}@127.0.0.1",
        "{k}@127.0.0.1:0",
        "{k}127.0.0.1:1",
    ],
)
def test_parse_enode_rejects_junk(text):
    from p2p.exceptions import InvalidEnode

    with pytest.raises(InvalidEnode):
        parse_enode(text.format(k=make_key().public_key.to_bytes().hex()))
