"""Junk from a peer: it is closed, scored down or banned, and the node keeps serving others."""

import os
import struct

import msgpack
import pytest
import trio

from p2p import DisconnectReason, PeerDisconnected, Topic, ValidationResult
from p2p.messages import MsgType
from p2p.secure import encode_record

from .helpers import make_config, make_key, raw_session, start_service, wait_until


async def assert_still_serving(nursery, a) -> None:
    """A fresh honest peer connects and exchanges gossip with `a`."""
    b = await start_service(nursery, make_config())
    received = b.subscribe(Topic.VOTES, lambda message: ValidationResult.ACCEPT)
    await b.connect(a.enode)
    a.publish(Topic.VOTES, b"still alive " + os.urandom(8))
    message = await received.receive()
    assert message.payload.startswith(b"still alive") and message.sender == a.node_id


async def test_garbage_before_handshake_is_closed(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        for junk in (
            os.urandom(300),
            b"\xff\xff" + os.urandom(65535),
            b"GET / HTTP/1.1\r\n\r\n" * 3,
        ):
            stream = await trio.open_tcp_stream("127.0.0.1", a.enode.port)
            await stream.send_all(junk)
            with trio.fail_after(5):
                # The node answers garbage by closing; reading hits end of stream.
                while await stream.receive_some(65536):
                    pass
            await stream.aclose()
        assert a.statistics().handshake_failures == 3
        await assert_still_serving(nursery, a)


async def test_silent_connection_times_out(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config(handshake_timeout=0.3))
        stream = await trio.open_tcp_stream("127.0.0.1", a.enode.port)
        with trio.fail_after(5):
            assert await stream.receive_some(65536) == b""
        await wait_until(lambda: a.statistics().handshake_failures == 1)


def oversized_prefix() -> bytes:
    return struct.pack(">I", 2**32 - 1) + b"x" * 10


def malformed_msgpack() -> bytes:
    body = b"\xc1\xc1\xc1"  # 0xc1 is never used in msgpack
    return struct.pack(">I", len(body)) + body


def truncated_msgpack() -> bytes:
    body = msgpack.packb([2, 1, b"payload"])[:-3] + b"\x00"
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("make_junk", [oversized_prefix, malformed_msgpack, truncated_msgpack])
async def test_bad_frame_bans_the_peer(nursery, make_junk):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config(max_frame_size=1 << 20))
        key = make_key()
        async with raw_session(a.enode.port, key=key) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            await raw.channel.send_plaintext(make_junk())
            messages = await raw.receive_until_closed()
        assert messages[-1][0] is MsgType.DISCONNECT
        assert messages[-1][1][0] in (
            DisconnectReason.OVERSIZED,
            DisconnectReason.MALFORMED,
            DisconnectReason.BANNED,
        )
        assert a.is_banned(raw.node_id)
        stats = a.statistics()
        assert stats.bans == 1 and stats.banned_now == 1 and stats.faults == 1
        # The same identity is refused while the ban lasts, with a typed reason.
        async with raw_session(a.enode.port, key=key, read_hello=False) as again:
            messages = await again.receive_until_closed()
        reasons = [fields[0] for msg_type, fields in messages if msg_type is MsgType.DISCONNECT]
        assert reasons == [DisconnectReason.BANNED]
        await assert_still_serving(nursery, a)


async def test_undecryptable_record_bans_the_peer(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        async with raw_session(a.enode.port) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            await raw.channel.stream.send_all(encode_record(os.urandom(100)))
            await raw.receive_until_closed()
        assert a.is_banned(raw.node_id)
        await assert_still_serving(nursery, a)


@pytest.mark.parametrize(
    "fields",
    [
        [99, 1, 2],  # unknown message type
        [int(MsgType.GOSSIP), "votes", b"x"],  # topic is not an int
        [int(MsgType.GOSSIP), 1],  # missing field
        [int(MsgType.GOSSIP), 77, b"x"],  # unknown topic
        [int(MsgType.REQUEST), -1, "status", None],  # request id out of range
        [int(MsgType.HELLO), b"again", b"sig"],  # a second hello
        {"type": 2},  # not an array
        [True, 1, b"x"],  # a bool is not a message type
    ],
)
async def test_schema_violations_score_down_then_ban(nursery, fields):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        async with raw_session(a.enode.port) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            body = msgpack.packb(fields, use_bin_type=True)
            await raw.channel.send_frames([body])
            await wait_until(lambda: a.scores.get_score(raw.node_id) < 0)
            assert a.is_connected(raw.node_id) and not a.is_banned(raw.node_id)
            # Repeated faults cross the threshold.
            await raw.channel.send_frames([body] * 3)
            await raw.receive_until_closed()
        assert a.is_banned(raw.node_id)
        assert a.statistics().faults == 4


async def test_rejected_gossip_scores_down_and_is_not_forwarded(nursery):
    with trio.fail_after(10):

        def validate(message):
            return (
                ValidationResult.REJECT
                if message.payload.startswith(b"bad")
                else ValidationResult.ACCEPT
            )

        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        a_votes = a.subscribe(Topic.VOTES, validate)
        b_votes = b.subscribe(Topic.VOTES, validate)
        await b.connect(a.enode)
        async with raw_session(a.enode.port) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            await raw.send(MsgType.GOSSIP, int(Topic.VOTES), b"bad vote")
            await raw.send(MsgType.GOSSIP, int(Topic.VOTES), b"good vote")
            assert (await a_votes.receive()).payload == b"good vote"
            assert (await b_votes.receive()).payload == b"good vote"
            assert a.scores.get_score(raw.node_id) < 0 and a.is_connected(raw.node_id)
        stats = a.statistics()
        assert stats.gossip_rejected == 1 and stats.gossip_delivered == 1
        assert b.statistics().gossip_delivered == 1


async def test_validator_bug_does_not_crash_the_node(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())

        def broken(message):
            raise RuntimeError("validator bug")

        a.subscribe(Topic.TRANSACTIONS, broken)
        async with raw_session(a.enode.port) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            await raw.send(MsgType.GOSSIP, int(Topic.TRANSACTIONS), b"tx")
            await wait_until(lambda: a.statistics().gossip_ignored == 1)
            assert a.is_connected(raw.node_id)
        await assert_still_serving(nursery, a)


async def test_banned_peer_cannot_be_dialled_back(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        await b.connect(a.enode)
        a.ban(b.node_id, "test")
        await wait_until(lambda: not b.is_connected(a.node_id))
        with pytest.raises(PeerDisconnected) as caught:
            await b.connect(a.enode)
        assert caught.value.reason is DisconnectReason.BANNED


async def test_half_open_connection_flood_is_capped(nursery):
    with trio.fail_after(15):
        a = await start_service(
            nursery, make_config(max_pending_handshakes=4, handshake_timeout=5.0)
        )
        streams = [await trio.open_tcp_stream("127.0.0.1", a.enode.port) for _ in range(8)]
        # Connections beyond the cap are closed at once; the first four wait in the handshake.
        await wait_until(lambda: a.statistics().handshake_failures == 4)
        for stream in streams:
            await stream.aclose()
        await wait_until(lambda: a.statistics().handshake_failures == 8)
        await assert_still_serving(nursery, a)


async def test_ban_expires(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config(ban_duration=0.3))
        b = await start_service(nursery, make_config(bootnodes=(str(a.enode),)))
        await wait_until(lambda: a.is_connected(b.node_id))
        a.ban(b.node_id, "test")
        assert a.statistics().banned_now == 1
        await wait_until(lambda: not a.is_connected(b.node_id))
        # b keeps redialling with back-off and gets back in once the ban is over.
        await wait_until(lambda: a.is_connected(b.node_id))
        assert not a.is_banned(b.node_id) and a.statistics().banned_now == 0


async def test_random_frames_from_many_peers_never_crash_the_node(nursery):
    import random

    rng = random.Random(5)
    with trio.fail_after(30):
        a = await start_service(nursery, make_config(max_frame_size=4096))
        a.subscribe(
            Topic.VOTES,
            lambda m: (
                ValidationResult.REJECT if m.payload[:1] == b"\x00" else ValidationResult.ACCEPT
            ),
        )
        for _ in range(12):
            async with raw_session(a.enode.port) as raw:
                await wait_until(lambda: a.is_connected(raw.node_id))
                for _ in range(20):
                    kind = rng.randrange(4)
                    if kind == 0:
                        junk = rng.randbytes(rng.randrange(1, 64))
                    elif kind == 1:
                        body = msgpack.packb(
                            [rng.randrange(-2, 8)]
                            + [
                                rng.choice([1, b"x", "s", None, [1]])
                                for _ in range(rng.randrange(4))
                            ]
                        )
                        junk = struct.pack(">I", len(body)) + body
                    elif kind == 2:
                        body = msgpack.packb(
                            [int(MsgType.GOSSIP), int(Topic.VOTES), rng.randbytes(8)]
                        )
                        junk = struct.pack(">I", len(body)) + body
                    else:
                        junk = struct.pack(">I", rng.randrange(2**32))
                    try:
                        await raw.channel.send_plaintext(junk)
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        break  # the node already hung up on us
                await trio.sleep(0.01)
        stats = a.statistics()
        assert stats.faults > 0 and stats.bans > 0
        await assert_still_serving(nursery, a)


async def test_oversized_hello_is_refused(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        stream = await trio.open_tcp_stream("127.0.0.1", a.enode.port)
        from p2p.secure import perform_noise_handshake

        channel = await perform_noise_handshake(stream, initiator=True)
        await channel.send_plaintext(struct.pack(">I", 1 << 20))  # announce a 1 MiB hello
        with trio.fail_after(5):
            while await stream.receive_some(65536):
                pass
        assert a.statistics().handshake_failures == 1
