"""The listening socket: accepts inbound connections and runs each admitted peer.

Bounds how many inbound connections may be mid-handshake at once, in all and
from any one address, so a flood of half-open connections cannot cost
unbounded memory nor, from one host, lock every other peer out; and closes a
connection from a banned address before any handshake work is spent on it.
"""

from __future__ import annotations

import logging

import trio

from .config import LocalNode, P2PConfig
from .exceptions import P2PError
from .handshake import Handshaker
from .peer_table import PeerTable

logger = logging.getLogger("p2p.listener")


class Listener:
    def __init__(
        self, config: P2PConfig, local: LocalNode, handshaker: Handshaker, peers: PeerTable
    ) -> None:
        self.config = config
        self.refused = 0  # inbound connections closed before the handshake (too many pending)
        self.refused_banned = 0  # inbound connections closed at once: their address is banned
        self._local = local
        self._handshaker = handshaker
        self._peers = peers
        self._pending_handshakes = 0
        self._pending_by_host: dict[str, int] = {}  # only hosts with a pending handshake are keys
        self._listeners: list[trio.SocketListener] | None = None

    async def bind(self) -> None:
        """Open the listening socket; from now on our enode is known."""
        self._listeners = await trio.open_tcp_listeners(
            self.config.listen_port, host=self.config.listen_host
        )
        self._local.listen_port = self._listeners[0].socket.getsockname()[1]
        logger.info("listening enode=%s", self._local.enode)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._listeners is None:
            await self.bind()
        assert self._listeners is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._on_inbound, self._listeners)
            task_status.started()

    async def _on_inbound(self, stream: trio.SocketStream) -> None:
        remote_host = get_remote_host(stream)
        if self._peers.is_address_banned(remote_host):
            self.refused_banned += 1
            logger.debug("refused inbound connection remote=%s: address banned", remote_host)
            await trio.aclose_forcefully(stream)
            return
        if self._pending_handshakes >= self.config.max_pending_handshakes or self._is_host_over_cap(
            remote_host
        ):
            self.refused += 1
            logger.warning(
                "refused inbound connection remote=%s: too many pending handshakes", remote_host
            )
            await trio.aclose_forcefully(stream)
            return
        self._pending_handshakes += 1
        self._pending_by_host[remote_host] = self._pending_by_host.get(remote_host, 0) + 1
        try:
            peer = await self._handshaker.establish(stream, inbound=True, remote_host=remote_host)
        except (
            P2PError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
            trio.TooSlowError,
        ):
            return
        finally:
            self._pending_handshakes -= 1
            self._release_host(remote_host)
        await self._peers.run_peer_quietly(peer)

    def _is_host_over_cap(self, host: str) -> bool:
        if not self._peers.is_address_bannable(host):
            return False  # our own address, shared with co-located honest nodes: only the total cap
        return self._pending_by_host.get(host, 0) >= self.config.max_pending_handshakes_per_ip

    def _release_host(self, host: str) -> None:
        left = self._pending_by_host[host] - 1
        if left:
            self._pending_by_host[host] = left
        else:
            del self._pending_by_host[host]  # the map never outgrows the pending handshakes


def get_remote_host(stream: trio.SocketStream) -> str:
    try:
        return stream.socket.getpeername()[0]
    except OSError:
        return "?"
