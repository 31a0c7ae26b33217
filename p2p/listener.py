"""The listening socket: accepts inbound connections and runs each admitted peer.

Bounds how many inbound connections may be mid-handshake at once, so a flood
of half-open connections cannot cost unbounded memory.
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
        self._local = local
        self._handshaker = handshaker
        self._peers = peers
        self._pending_handshakes = 0
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
        if self._pending_handshakes >= self.config.max_pending_handshakes:
            self.refused += 1
            logger.warning(
                "refused inbound connection remote=%s: too many pending handshakes", remote_host
            )
            await trio.aclose_forcefully(stream)
            return
        self._pending_handshakes += 1
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
        await self._peers.run_peer_quietly(peer)


def get_remote_host(stream: trio.SocketStream) -> str:
    try:
        return stream.socket.getpeername()[0]
    except OSError:
        return "?"
