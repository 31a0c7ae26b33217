"""Hostile bytes on the p2p port of a real node on loopback (issue 14): the node drops the sender and lives.

The node runs in its own process (`tests.node.hostile_node`), with Python's
recursion limit raised to 100,000 after start-up as py_ecc does, so nothing
here is caught by RecursionError: msgpack frames are bounded by msgpack's own
container stack and our depth and length limits, RLP inside frames by the
shape pre-scan (`primitives.limits`). After each attack the process must be
alive and answer eth_blockNumber promptly; at the end the chain must still be
finalising.

Each attack connects from its own loopback address (127.0.0.N), so a ban of
one abuser's key or address never hides what the next attack does.
"""
from __future__ import annotations

import itertools
import os
import struct
import time

import msgpack
import pytest
import rlp
import trio
from rlp.codec import length_prefix

from p2p.gossip import Topic
from p2p.hello import PROTOCOL_VERSION, Hello, sign_hello
from p2p.messages import MsgType, encode_message
from p2p.secure import perform_noise_handshake
from tests.node.hostile_node import RAISED_RECURSION_LIMIT, HostileNode, start_hostile_node
from tests.p2p.helpers import RawPeer, make_key

SOURCE_ADDRESSES = (f"127.0.0.{n}" for n in itertools.count(2))
MAX_ANSWER_SECONDS = 2.0  # eth_blockNumber after an attack: the attack did not stall the node


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> HostileNode:
    node = start_hostile_node(tmp_path_factory.mktemp("hostile-wire"))
    yield node
    node.stop()


def make_nested_rlp(depth: int, inner: bytes = b"\xc0") -> bytes:
    item = inner
    for _ in range(depth):
        item = length_prefix(len(item), 0xC0) + item
    return item


def make_wide_rlp(count: int) -> bytes:
    """rlp.encode([b"\\x01"] * count), built without pyrlp (which takes seconds for a million items)."""
    return length_prefix(count, 0xC0) + b"\x01" * count


def make_nested_msgpack(depth: int, inner=None) -> bytes:
    # fixarray-of-one headers: msgpack.packb itself would recurse to build it.
    return b"\x91" * depth + msgpack.packb(inner)


def assert_alive(node: HostileNode) -> None:
    started = time.monotonic()
    node.get_height()
    assert time.monotonic() - started < MAX_ANSWER_SECONDS, "the node was stalled by the attack"


async def open_stream(node: HostileNode) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", node.p2p_port, local_address=next(SOURCE_ADDRESSES))


async def open_session(node: HostileNode, hello_rlp: bytes | None = None) -> RawPeer:
    """A Noise session and a signed hello on the node's network (or `hello_rlp` in its place)."""
    stream = await open_stream(node)
    channel = await perform_noise_handshake(stream, initiator=True)
    key = make_key()
    hello = Hello(PROTOCOL_VERSION, node.chain_id, node.genesis_hash, key.public_key.to_bytes(), 0, b"hostile")
    signature = sign_hello(key, hello, channel.handshake_hash)
    await channel.send_frames([encode_message(MsgType.HELLO, hello_rlp or rlp.encode(hello), signature)])
    return RawPeer(channel, key, None)


async def read_until_closed(stream: trio.SocketStream, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        try:
            while await stream.receive_some(65536):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


# --- before and during the handshake ---------------------------------------------------------------

JUNK_STREAMS = {
    "random 300 bytes": os.urandom(300),
    "random 1 MB": os.urandom(1 << 20),
    "huge record length": b"\xff\xff" + os.urandom(65535),
    "nested msgpack": make_nested_msgpack(100_000),
    "nested rlp": make_nested_rlp(100_000),
    "http": b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n[[[[[" * 3,
}


@pytest.mark.parametrize("junk", list(JUNK_STREAMS.values()), ids=list(JUNK_STREAMS))
async def test_junk_before_the_handshake_is_dropped(node, junk):
    assert node.recursion_limit == RAISED_RECURSION_LIMIT
    stream = await open_stream(node)
    try:
        await stream.send_all(junk)
    except trio.BrokenResourceError:
        pass  # the node closed first
    await read_until_closed(stream)
    await stream.aclose()
    assert_alive(node)


async def test_truncated_handshakes_are_dropped(node):
    for cut in (1, 2, 10, 31):
        stream = await open_stream(node)
        await stream.send_all(struct.pack(">H", 32) + os.urandom(cut))
        await stream.aclose()
    assert_alive(node)


@pytest.mark.parametrize("hello_rlp", [make_nested_rlp(16), make_nested_rlp(600), os.urandom(1000),
                                       rlp.encode([b"\x01"] * 900)], ids=["nested 16", "nested 600", "random", "wide"])
async def test_malformed_hellos_are_refused(node, hello_rlp):
    peer = await open_session(node, hello_rlp)
    await read_until_closed(peer.channel.stream)
    await peer.aclose()
    assert_alive(node)


# --- after the handshake ---------------------------------------------------------------------------

def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


HOSTILE_FRAMES = {
    "msgpack nested 100k": make_nested_msgpack(100_000),
    "msgpack nested 1025": make_nested_msgpack(1_025),
    "msgpack nested in params": msgpack.packb([int(MsgType.REQUEST), 1, "consensus_messages", None])[:-1]
    + make_nested_msgpack(1_000),
    "msgpack nested maps": b"\x81\xa1k" * 1_000 + b"\xc0",
    "msgpack huge text": msgpack.packb([int(MsgType.DISCONNECT), 0, "x" * 3_000_000]),
    "msgpack huge array": msgpack.packb([int(MsgType.PING)] + [0] * 200_000),
    "msgpack ext": msgpack.packb([int(MsgType.PING), msgpack.ExtType(5, b"x" * 100)]),
    "random": os.urandom(100_000),
}


@pytest.mark.parametrize("body", list(HOSTILE_FRAMES.values()), ids=list(HOSTILE_FRAMES))
async def test_hostile_frames_get_the_peer_dropped(node, body):
    peer = await open_session(node)
    await peer.channel.send_plaintext(frame(body))
    await read_until_closed(peer.channel.stream)
    await peer.aclose()
    assert_alive(node)


RLP_PAYLOADS = {
    "nested 100k": make_nested_rlp(100_000),  # 380 kB
    "nested 45k": make_nested_rlp(45_000),  # 158 kB: pyrlp copies it at every level (14 s before the bounds)
    "nested 17": make_nested_rlp(17),
    "wide": make_wide_rlp(1_000_000),  # 1 MB of one-byte items
    "wide 2M": make_wide_rlp(2_000_000),
    "8k items of 500 bytes": length_prefix(8_000 * 500, 0xC0) + (b"\xb9\x01\xf1" + b"a" * 497) * 8_000,  # 0.9 s before
    "random": os.urandom(50_000),
}


@pytest.mark.parametrize("topic", list(Topic), ids=[t.name for t in Topic])
async def test_hostile_rlp_gossip_is_rejected_without_stalling(node, topic):
    peer = await open_session(node)
    for name, payload in RLP_PAYLOADS.items():
        if topic is Topic.TRANSACTIONS:
            payload = b"\x02" + payload
        try:
            await peer.send(MsgType.GOSSIP, int(topic), payload)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            break  # scored down and dropped: fine, as long as the node lives
        assert_alive(node)
    await peer.aclose()
    assert_alive(node)


async def test_hostile_requests_are_answered_or_dropped(node):
    peer = await open_session(node)
    nested = make_nested_rlp(50_000)
    for method in ("consensus_messages", "get_candidate", "get_commit", "status", "get_headers", "get_blocks"):
        for params in ([nested], [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]], [b"\x00" * 1_000_000], "x" * 60_000):
            try:
                await peer.send(MsgType.REQUEST, 7, method, params)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                await peer.aclose()
                peer = await open_session(node)
            assert_alive(node)
    await peer.aclose()


async def test_the_chain_keeps_finalising_after_the_attacks(node):
    node.wait_for_blocks(3)
    assert "Fatal Python error" not in node.log_path.read_text(errors="replace")


# --- two validators in this process: the attacked one keeps finalising with the other ------------------

async def test_two_validators_keep_finalising_while_one_is_attacked(tmp_path):
    import sys

    import httpx

    from tests.node.nodekit import VALIDATOR_KEYS, make_test_genesis, start_network, wait_for_height, wait_for_peers
    from tests.p2p.helpers import raw_session

    found = sys.getrecursionlimit()
    genesis = make_test_genesis(2)  # both are needed for a commit: the attacked one must keep voting
    try:
        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:2], http=("127.0.0.1", 0))
                await wait_for_peers(nodes, 1)
                await wait_for_height(nodes, 2)
                sys.setrecursionlimit(RAISED_RECURSION_LIMIT)  # after start-up, as a late import would
                start = min(node.chain.height for node in nodes)
                target = nodes[0]
                async with raw_session(target.p2p.listen_port, chain_id=genesis.chain_id,
                                       genesis_hash=genesis.genesis_hash) as peer:
                    for topic in (Topic.PROPOSALS, Topic.VOTES, Topic.TRANSACTIONS):
                        for payload in (RLP_PAYLOADS["nested 100k"], RLP_PAYLOADS["wide"]):
                            try:
                                await peer.send(MsgType.GOSSIP, int(topic), payload)
                            except (trio.BrokenResourceError, trio.ClosedResourceError):
                                break
                async with httpx.AsyncClient(base_url=target.http_url, timeout=10) as client:
                    response = await client.post("/", content=b"[" * 100_000,
                                                 headers={"content-type": "application/json"})
                    assert response.json()["error"]["code"] == -32700
                await wait_for_height(nodes, start + 3)
                nursery.cancel_scope.cancel()
    finally:
        sys.setrecursionlimit(found)
