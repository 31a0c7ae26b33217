"""Hundreds of idle connections against a real node process on loopback (issue 14).

300 TCP connections to the p2p port (from one foreign loopback address) and 300 to the HTTP port that
send nothing, plus 30 HTTP clients that send half a request header slowly (slowloris). While they are
open the node stays up, keeps finalising, answers a fresh JSON-RPC request promptly and still completes
an honest peer's p2p handshake; its file descriptors stay bounded, since the p2p listener holds at most
`max_pending_handshakes_per_ip` (8) connections from one address in the handshake (64 in all) and closes
the rest at once; the idle p2p connections left are closed by the handshake timeout (5 s) and every idle
or slow HTTP connection by hypercorn's keep-alive timeout (`HTTPLimits.keep_alive_timeout`, 30 s; its
timer is not reset by header bytes trickling in); afterwards the descriptors are back to where they were.
"""
from __future__ import annotations

import os
import time

import pytest
import trio
from eth_keys import keys

from node.asgi import HTTPLimits
from p2p import P2PConfig
from p2p.messages import MsgType
from tests.node.hostile_node import HostileNode, start_hostile_node
from tests.node.test_hostile_peer import open_session

IDLE = 300
SLOW = 30
MAX_ANSWER_SECONDS = 2.0
PENDING_PER_IP = P2PConfig.__dataclass_fields__["max_pending_handshakes_per_ip"].default
HANDSHAKE_TIMEOUT = P2PConfig.__dataclass_fields__["handshake_timeout"].default
KEEP_ALIVE = HTTPLimits().keep_alive_timeout
SLACK_FDS = 40  # the node's own churn: LevelDB files, peers' sockets, the odd RPC connection


@pytest.fixture
def node(tmp_path) -> HostileNode:
    node = start_hostile_node(tmp_path / "idle", keep_recursion_limit=True)
    yield node
    node.stop()


def count_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def wait_closed(stream: trio.SocketStream, closed: list[float], started: float) -> None:
    """Read until the node closes the connection; record when."""
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    closed.append(time.monotonic() - started)


async def trickle(stream: trio.SocketStream) -> None:
    """Half a request, one header byte every half second: never a complete header block."""
    try:
        await stream.send_all(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        while True:
            await trio.sleep(0.5)
            await stream.send_all(b"a")
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass


async def get_height_promptly(node: HostileNode) -> int:
    started = time.monotonic()
    height = await trio.to_thread.run_sync(node.get_height)
    assert time.monotonic() - started < MAX_ANSWER_SECONDS, "a fresh request waited behind the idle connections"
    return height


class NetworkOf:
    """What `open_session` needs of a genesis: the node's network."""

    def __init__(self, node: HostileNode) -> None:
        self.chain_id = node.chain_id
        self.genesis_hash = node.genesis_hash


async def assert_honest_handshake(node: HostileNode) -> None:
    """A fresh peer from 127.0.0.1 gets the node's hello back: the idle connections did not lock it out."""
    with trio.fail_after(MAX_ANSWER_SECONDS + 3):
        peer = await open_session(node.p2p_port, "127.0.0.1", NetworkOf(node), keys.PrivateKey(os.urandom(32)))
        msg_type, _fields = await peer.receive()
        await peer.aclose()
    assert msg_type is MsgType.HELLO


async def test_hundreds_of_idle_connections_are_capped_and_closed(node):
    http_port = int(node.url.rsplit(":", 1)[1])
    flooder = f"127.0.{os.getpid() % 200 + 20}.{os.urandom(1)[0] % 200 + 20}"
    start_height = await get_height_promptly(node)
    baseline = count_fds(node.process.pid)
    p2p_closed: list[float] = []
    http_closed: list[float] = []
    with trio.fail_after(KEEP_ALIVE + 30):
        async with trio.open_nursery() as nursery:
            started = time.monotonic()
            streams = []
            for _ in range(IDLE):
                stream = await trio.open_tcp_stream("127.0.0.1", node.p2p_port, local_address=flooder)
                streams.append(stream)
                nursery.start_soon(wait_closed, stream, p2p_closed, started)
            for index in range(IDLE + SLOW):
                stream = await trio.open_tcp_stream("127.0.0.1", http_port)
                streams.append(stream)
                nursery.start_soon(wait_closed, stream, http_closed, started)
                if index >= IDLE:
                    nursery.start_soon(trickle, stream)
            await trio.sleep(0.5)
            peak = count_fds(node.process.pid)

            # Served, finalising and open to an honest peer while every connection is open.
            await get_height_promptly(node)
            await assert_honest_handshake(node)
            while await get_height_promptly(node) < start_height + 2:
                await trio.sleep(0.2)

            # p2p: beyond the per-address cap closed at once, the rest by the handshake timeout.
            while len(p2p_closed) < IDLE:
                await trio.sleep(0.1)
            assert max(p2p_closed) < HANDSHAKE_TIMEOUT + 5, max(p2p_closed)
            assert sorted(p2p_closed)[IDLE - PENDING_PER_IP - 1] < HANDSHAKE_TIMEOUT, "refused at once"
            assert sorted(p2p_closed)[IDLE - PENDING_PER_IP] >= HANDSHAKE_TIMEOUT - 1, "the capped few waited"
            # HTTP: idle and half-sent requests alike are closed by the keep-alive timeout.
            while len(http_closed) < IDLE + SLOW:
                await trio.sleep(0.2)
            assert max(http_closed) < KEEP_ALIVE + 10, max(http_closed)
            await get_height_promptly(node)
            for stream in streams:
                await stream.aclose()
    await trio.sleep(0.5)
    after = count_fds(node.process.pid)
    print(f"\nfds: baseline {baseline}, with {2 * IDLE + SLOW} connections open {peak}, after {after}; "
          f"p2p closed by {max(p2p_closed):.1f} s, HTTP by {max(http_closed):.1f} s")
    # Bounded: every HTTP connection costs one descriptor until its timeout, p2p at most the per-address cap.
    assert peak <= baseline + IDLE + SLOW + PENDING_PER_IP + SLACK_FDS, (baseline, peak)
    assert after <= baseline + SLACK_FDS, (baseline, after)
    node.wait_for_blocks(2)
