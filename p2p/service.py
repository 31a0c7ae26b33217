"""P2PService: the node's one handle on p2p, composing the components that do the work.

- `PeerTable` (`peer_table`): who is connected, scores, bans, admission, peer events;
- `GossipRouter` (`gossip_router`): subscriptions, validation, the seen-cache, forwarding;
- `RequestRouter` (`request_router`): request and stream handlers, our requests and streams;
- `Handshaker` (`handshake`): Noise, signed hellos and admission, for both directions;
- `Listener` (`listener`) and `Dialer` (`dialer`): the trio services that run peers.

The service is also every peer's `PeerHostAPI`: each callback is handed to the
component that owns the decision. Its own methods only delegate.
"""

from __future__ import annotations

from typing import Any

import trio

from .abc import PeerAPI, PeerHostAPI
from .config import LocalNode, P2PConfig
from .dialer import Dialer
from .exceptions import DisconnectReason, P2PError
from .gossip import GossipMessage, GossipValidator, Topic
from .gossip_router import GOSSIP_FRAME_OVERHEAD, GossipRouter, validate_payload_size
from .handshake import MAX_HELLO_FRAME, Handshaker
from .identity import Enode
from .listener import Listener, get_remote_host
from .peer import Peer
from .peer_table import PeerEvent, PeerEventKind, PeerInfo, PeerTable
from .pending import ResponseStream
from .request_router import RequestHandler, RequestRouter, StreamHandler
from .statistics import P2PStatistics, compute_statistics

__all__ = [  # what this module offered before the split stays importable from it
    "GOSSIP_FRAME_OVERHEAD",
    "MAX_HELLO_FRAME",
    "P2PConfig",
    "P2PService",
    "P2PStatistics",
    "PeerEvent",
    "PeerEventKind",
    "PeerInfo",
    "RequestHandler",
    "StreamHandler",
    "get_remote_host",
    "validate_payload_size",
]


class P2PService(PeerHostAPI):
    """Listening, dialling, gossip, requests, scores and bans behind one object (see the module)."""

    def __init__(self, config: P2PConfig) -> None:
        self.config = config
        self.local = LocalNode(config)
        self.peer_table = PeerTable(config, self.local)
        self.gossip_router = GossipRouter(config, self.peer_table)
        self.request_router = RequestRouter(config, self.peer_table)
        self.handshaker = Handshaker(config, self.local, self.peer_table, self)
        self.listener = Listener(config, self.local, self.handshaker, self.peer_table)
        self.dialer = Dialer(config, self.local, self.handshaker, self.peer_table)
        self.node_id = self.local.node_id
        self.short_id = self.local.short_id
        self.network = self.local.network
        self.bootnodes = self.dialer.bootnodes
        self.scores = self.peer_table.scores
        self.bans = self.peer_table.bans

    # --- lifecycle ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # Bound outside the nursery, so a port in use raises its OSError unwrapped.
        await self.listener.bind()
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.listener.run)
                await nursery.start(self.dialer.run)
                task_status.started()
        finally:
            self.peer_table.close_event_channels()
            self.gossip_router.close_subscriptions()

    @property
    def listen_port(self) -> int | None:
        return self.local.listen_port

    @property
    def enode(self) -> Enode:
        return self.local.enode

    # --- gossip ---

    def subscribe(
        self, topic: Topic, validate: GossipValidator, *, buffer: int | None = None
    ) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Receive accepted gossip on a topic; `validate` decides accept/ignore/reject first."""
        return self.gossip_router.subscribe(topic, validate, buffer=buffer)

    def publish(self, topic: Topic, payload: bytes) -> bytes:
        """Send our own message to every peer; returns its id. Not delivered locally."""
        return self.gossip_router.publish(topic, payload)

    def on_gossip(self, peer: PeerAPI, topic_value: int, payload: bytes, body: bytes) -> None:
        self.gossip_router.on_gossip(peer, topic_value, payload, body)

    # --- requests ---

    def register_handler(self, method: str, handler: RequestHandler) -> None:
        """Serve `method`; see `RequestRouter.register_handler`."""
        self.request_router.register_handler(method, handler)

    def register_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve `method` as a streamed response; see `RequestRouter.register_stream_handler`."""
        self.request_router.register_stream_handler(method, handler)

    def is_stream_method(self, method: str) -> bool:
        return self.request_router.is_stream_method(method)

    async def request(
        self, node_id: bytes, method: str, params: Any, *, timeout: float | None = None
    ) -> Any:
        return await self.request_router.request(node_id, method, params, timeout=timeout)

    async def open_stream(
        self,
        node_id: bytes,
        method: str,
        params: Any,
        *,
        max_items: int,
        item_timeout: float | None = None,
    ) -> ResponseStream:
        """Ask a peer for a streamed response; see `RequestRouter.open_stream`."""
        return await self.request_router.open_stream(
            node_id, method, params, max_items=max_items, item_timeout=item_timeout
        )

    async def serve_request(self, peer: PeerAPI, method: str, params: Any) -> tuple:
        return await self.request_router.serve_request(peer, method, params)

    async def serve_stream(
        self, peer: PeerAPI, request_id: int, method: str, params: Any
    ) -> tuple | None:
        return await self.request_router.serve_stream(peer, request_id, method, params)

    # --- peers ---

    def get_peer(self, node_id: bytes) -> Peer:
        return self.peer_table.get_peer(node_id)

    def get_peers(self) -> list[PeerInfo]:
        return self.peer_table.get_peers()

    def is_connected(self, node_id: bytes) -> bool:
        return self.peer_table.is_connected(node_id)

    def subscribe_peer_events(self, *, buffer: int = 256) -> trio.MemoryReceiveChannel[PeerEvent]:
        return self.peer_table.subscribe_peer_events(buffer=buffer)

    async def connect(self, enode: Enode | str) -> bytes:
        """Dial once and return the peer's node id once connected (at once if it already is)."""
        return await self.dialer.connect(enode)

    def disconnect(
        self, node_id: bytes, reason: DisconnectReason = DisconnectReason.REQUESTED
    ) -> None:
        self.peer_table.disconnect(node_id, reason)

    # --- scores and bans ---

    def ban(self, node_id: bytes, reason: str, duration: float | None = None) -> None:
        self.peer_table.ban(node_id, reason, duration)

    def is_banned(self, node_id: bytes) -> bool:
        return self.peer_table.is_banned(node_id)

    def is_address_banned(self, host: str) -> bool:
        """Inbound connections from `host` are closed at once (a banned peer's address; see PeerTable.ban)."""
        return self.peer_table.is_address_banned(host)

    def apply_penalty(self, node_id: bytes, penalty: int, reason: str) -> None:
        """Lower a peer's score; at the threshold it is banned and disconnected."""
        self.peer_table.apply_penalty(node_id, penalty, reason)

    def on_peer_fault(self, node_id: bytes, exc: P2PError) -> None:
        """A peer sent something invalid: penalise it by the error's weight."""
        self.peer_table.on_peer_fault(node_id, exc)

    def on_slow_peer(self, peer: PeerAPI) -> None:
        self.peer_table.on_slow_peer(peer)

    # --- statistics ---

    def statistics(self) -> P2PStatistics:
        return compute_statistics(
            peers=self.peer_table,
            gossip=self.gossip_router.counters,
            requests=self.request_router.counters,
            dials=self.dialer.counters,
            handshake_failures=self.handshaker.failures + self.listener.refused,
        )
