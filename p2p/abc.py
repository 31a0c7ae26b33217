"""Interfaces of the p2p package, in one place.

The layers depend on these rather than on each other, so imports only point
down: a `Peer` knows its host only as a `PeerHostAPI`, the host's callbacks
see a peer only as a `PeerAPI`, and sync serves whatever `SyncProviderAPI` the
node lends it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Sequence

from .config import P2PConfig
from .exceptions import DisconnectReason, P2PError


class PeerAPI(ABC):
    """A connected peer as its host's callbacks see it: who it is, and how to send to or drop it."""

    node_id: bytes
    short_id: str
    disconnect_reason: DisconnectReason | None  # None while the connection is open

    @property
    @abstractmethod
    def queued(self) -> int:
        """Frames waiting in this peer's outbox."""

    @abstractmethod
    def try_send(self, body: bytes) -> bool:
        """Queue one encoded frame without waiting; False if it was not queued.

        A full outbox drops the peer as too slow (the host's `on_slow_peer`).
        """

    @abstractmethod
    def disconnect(self, reason: DisconnectReason, detail: str = "") -> None:
        """Start closing: say why if there is room, stop reading, flush."""


class PeerHostAPI(ABC):
    """Everything a `Peer` needs from whoever runs it; the peer calls nothing else.

    The peer owns the connection (framing, keepalive, request ids, stream
    bounds); the host owns the decisions: what gossip to deliver and forward,
    which handler answers a request, and what a fault or a slow peer costs.
    """

    config: P2PConfig  # the limits the peer enforces: frame size, queues, timeouts, concurrency

    @abstractmethod
    def on_gossip(self, peer: PeerAPI, topic_value: int, payload: bytes, body: bytes) -> None:
        """A GOSSIP frame arrived; `body` is the whole encoded frame, forwarded as is.

        Raises `InvalidMessage` for an unknown topic (the peer counts it a fault).
        """

    @abstractmethod
    def is_stream_method(self, method: str) -> bool:
        """True if `method` is answered with a streamed response rather than one RESPONSE."""

    @abstractmethod
    async def serve_request(self, peer: PeerAPI, method: str, params: Any) -> tuple:
        """Answer a plain request: (RESPONSE, result) or (ERROR, code, message)."""

    @abstractmethod
    async def serve_stream(
        self, peer: PeerAPI, request_id: int, method: str, params: Any
    ) -> tuple | None:
        """Push a streamed response's items to `peer`; return the frame that ends the stream,
        or None when the peer can no longer take items."""

    @abstractmethod
    def on_peer_fault(self, node_id: bytes, exc: P2PError) -> None:
        """The peer sent something invalid; `exc.penalty` says how bad."""

    @abstractmethod
    def on_slow_peer(self, peer: PeerAPI) -> None:
        """The peer's outbox is full or a write timed out: it cannot keep up."""


class SyncProviderAPI(ABC):
    """What the node lends p2p to serve sync: read-only views of its canonical chain."""

    @abstractmethod
    def get_headers(self, start: int, count: int) -> Sequence[bytes]:
        """RLP headers at heights start, start+1, ...; fewer (or none) past the head."""

    @abstractmethod
    def get_blocks(self, start: int, count: int) -> Sequence[bytes]:
        """RLP blocks at heights start, start+1, ...; fewer (or none) past the head."""

    @abstractmethod
    def status(self) -> tuple[int, bytes]:
        """(head height, head hash)."""
