"""Outbound connections: one-off dials (`connect`) and bootnodes kept connected forever.

A bootnode is redialled with exponential back-off while dials fail, and waits
out a ban, a live connection or a full peer table before dialling again.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import trio

from .config import LocalNode, P2PConfig
from .exceptions import P2PError
from .handshake import Handshaker
from .identity import Enode, parse_enode
from .peer import Peer
from .peer_table import PeerTable

logger = logging.getLogger("p2p.dialer")


@dataclass
class DialCounters:
    dials: int = 0  # outbound connection attempts
    dial_failures: int = 0  # attempts that did not end in a connected peer


class Dialer:
    def __init__(
        self, config: P2PConfig, local: LocalNode, handshaker: Handshaker, peers: PeerTable
    ) -> None:
        self.config = config
        self.bootnodes = tuple(parse_enode(text) for text in config.bootnodes)
        self.counters = DialCounters()
        self._local = local
        self._handshaker = handshaker
        self._peers = peers
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for enode in self.bootnodes:
                    nursery.start_soon(self._maintain_connection, enode)
                task_status.started()
                # Peers we dial with connect() run in this nursery too.
                await trio.sleep_forever()
        finally:
            self._nursery = None

    async def connect(self, enode: Enode | str) -> bytes:
        """Dial once and return the peer's node id once connected (at once if it already is)."""
        enode = parse_enode(enode) if isinstance(enode, str) else enode
        assert self._nursery is not None, "connect() needs a running service"
        if self._peers.is_connected(enode.node_id):
            return enode.node_id
        return await self._nursery.start(self._connect_and_run, enode)

    async def _connect_and_run(self, enode: Enode, *, task_status: trio.TaskStatus[bytes]) -> None:
        peer = await self._dial(enode)
        await self._peers.run_peer(peer, task_status=task_status)

    async def _maintain_connection(self, enode: Enode) -> None:
        """Keep a bootnode connected, backing off exponentially while dials fail."""
        if enode.node_id == self._local.node_id:
            return
        backoff = self.config.reconnect_base
        while True:
            if await self._wait_until_dialable(enode):
                continue
            try:
                peer = await self._dial(enode)
            except (P2PError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                logger.debug("dial failed enode=%s error=%s", enode, exc)
            else:
                connected_at = trio.current_time()
                await self._peers.run_peer_quietly(peer)
                if trio.current_time() - connected_at > 10 * self.config.reconnect_base:
                    backoff = self.config.reconnect_base
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.config.reconnect_max)

    async def _wait_until_dialable(self, enode: Enode) -> bool:
        """Wait out bans, an existing connection or a full peer table; True if we waited."""
        remaining = self._peers.bans.get_remaining(enode.node_id)
        if remaining > 0:
            await trio.sleep(remaining)
            return True
        existing = self._peers.find_peer(enode.node_id)
        if existing is not None:
            await existing.closed.wait()
            return True
        if self._peers.is_full():
            await trio.sleep(self.config.reconnect_max)
            return True
        return False

    async def _dial(self, enode: Enode) -> Peer:
        self.counters.dials += 1
        try:
            with trio.fail_after(self.config.dial_timeout):
                stream = await trio.open_tcp_stream(enode.host, enode.port)
            return await self._handshaker.establish(
                stream, inbound=False, remote_host=enode.host, expected_node_id=enode.node_id
            )
        except BaseException:
            self.counters.dial_failures += 1
            raise
