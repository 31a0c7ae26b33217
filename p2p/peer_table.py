"""The connected peers, their scores and bans, and the events that announce them.

`PeerTable` admits a peer for the length of its run (a duplicate or a full
table is refused), answers who is connected, and is where every penalty lands:
a peer whose score falls to the ban threshold is banned and dropped. Each
subscriber of `subscribe_peer_events` hears of every connect and disconnect.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

import trio

from .abc import PeerAPI
from .config import LocalNode, P2PConfig
from .exceptions import (
    DisconnectReason,
    HandshakeError,
    P2PError,
    PeerNotConnected,
    PeerRefused,
)
from .identity import Enode, compute_short_id
from .peer import Peer
from .scoring import BanList, PeerScores

logger = logging.getLogger("p2p.peer_table")


class PeerEventKind(Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True)
class PeerEvent:
    kind: PeerEventKind
    node_id: bytes
    inbound: bool
    reason: DisconnectReason | None = None


@dataclass(frozen=True)
class PeerInfo:
    node_id: bytes
    enode: Enode
    inbound: bool
    score: int
    queued: int  # frames waiting in this peer's outbox
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    connected_at: float


@dataclass
class PeerTableCounters:
    # Traffic of peers that have left; live peers still hold their own counts.
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    faults: int = 0
    drops: int = 0  # slow peers dropped
    bans: int = 0  # bans imposed since start
    address_bans: int = 0  # of those, the ones that also banned the peer's IP address


class PeerTable:
    def __init__(self, config: P2PConfig, local: LocalNode) -> None:
        self.config = config
        self.scores = PeerScores(config.ban_threshold)
        self.bans = BanList(trio.current_time)
        self.address_bans = BanList(trio.current_time)  # IP address -> expiry, see `ban`
        self.counters = PeerTableCounters()
        self._local = local
        self._peers: dict[bytes, Peer] = {}
        self._event_channels: list[trio.MemorySendChannel[PeerEvent]] = []

    # --- reads ---

    def get_peer(self, node_id: bytes) -> Peer:
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerNotConnected(node_id)
        return peer

    def find_peer(self, node_id: bytes) -> Peer | None:
        return self._peers.get(node_id)

    def get_connected(self) -> list[Peer]:
        """A snapshot, safe to iterate while peers come and go."""
        return list(self._peers.values())

    def get_peers(self) -> list[PeerInfo]:
        return [
            PeerInfo(
                node_id=peer.node_id,
                enode=peer.enode,
                inbound=peer.inbound,
                score=self.scores.get_score(peer.node_id),
                queued=peer.queued,
                messages_in=peer.messages_in,
                messages_out=peer.messages_out,
                bytes_in=peer.channel.bytes_in,
                bytes_out=peer.channel.bytes_out,
                connected_at=peer.connected_at,
            )
            for peer in self._peers.values()
        ]

    def is_connected(self, node_id: bytes) -> bool:
        return node_id in self._peers

    def is_full(self) -> bool:
        return len(self._peers) >= self.config.max_peers

    # --- events ---

    def subscribe_peer_events(self, *, buffer: int = 256) -> trio.MemoryReceiveChannel[PeerEvent]:
        send, receive = trio.open_memory_channel[PeerEvent](buffer)
        self._event_channels.append(send)
        return receive

    def close_event_channels(self) -> None:
        # Consumers iterating their channels see the end of the service.
        for channel in self._event_channels:
            channel.close()

    def _emit(self, event: PeerEvent) -> None:
        for channel in list(self._event_channels):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                logger.warning("peer event dropped: subscriber is not keeping up")
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._event_channels.remove(channel)

    # --- scores and bans ---

    def disconnect(
        self, node_id: bytes, reason: DisconnectReason = DisconnectReason.REQUESTED
    ) -> None:
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.disconnect(reason)

    def ban(self, node_id: bytes, reason: str, duration: float | None = None) -> None:
        """Ban the key and, if it is connected, the address it came from (a fresh key buys nothing)."""
        duration = duration if duration is not None else self.config.ban_duration
        self.bans.ban(node_id, duration)
        self.counters.bans += 1
        logger.warning("ban peer=%s reason=%s", compute_short_id(node_id), reason)
        peer = self._peers.get(node_id)
        if peer is not None:
            self.ban_address(peer.enode.host, duration)
            peer.disconnect(DisconnectReason.BANNED, reason)

    def ban_address(self, host: str, duration: float) -> None:
        if not self.is_address_bannable(host):
            return
        self.address_bans.ban(host, duration)
        self.counters.address_bans += 1
        logger.warning("ban address=%s for=%.0fs", host, duration)

    def is_address_bannable(self, host: str) -> bool:
        """Not our own listening address nor an exempt one: co-located honest nodes share those.

        Also decides which addresses the listener's per-address handshake cap applies to."""
        exempt = (*self.config.ip_ban_exempt, self.config.listen_host, "?", "")
        return host not in exempt

    def is_banned(self, node_id: bytes) -> bool:
        return self.bans.is_banned(node_id)

    def is_address_banned(self, host: str) -> bool:
        return self.address_bans.is_banned(host)

    def apply_penalty(self, node_id: bytes, penalty: int, reason: str) -> None:
        """Lower a peer's score; at the threshold it is banned and disconnected."""
        score = self.scores.apply_penalty(node_id, penalty)
        logger.info(
            "penalty peer=%s penalty=%d score=%d reason=%s",
            compute_short_id(node_id),
            penalty,
            score,
            reason,
        )
        if self.scores.is_over_threshold(node_id):
            self.scores.forget(node_id)  # a served ban wipes the slate
            self.ban(node_id, reason)

    def on_peer_fault(self, node_id: bytes, exc: P2PError) -> None:
        """A peer sent something invalid: penalise it by the error's weight."""
        self.counters.faults += 1
        self.apply_penalty(node_id, max(exc.penalty, 1), f"{type(exc).__name__}: {exc}")

    def on_slow_peer(self, peer: PeerAPI) -> None:
        if peer.disconnect_reason is None:
            self.counters.drops += 1
            peer.disconnect(DisconnectReason.SLOW, f"send queue full ({peer.queued} frames)")

    # --- admission ---

    def validate_not_banned(self, node_id: bytes) -> None:
        if self.bans.is_banned(node_id):
            raise PeerRefused(
                DisconnectReason.BANNED, f"for {self.bans.get_remaining(node_id):.0f} s more"
            )

    def validate_admission(self, node_id: bytes) -> None:
        if node_id == self._local.node_id:
            raise PeerRefused(DisconnectReason.SELF_CONNECTION)
        if node_id not in self._peers and self.is_full():
            raise PeerRefused(DisconnectReason.TOO_MANY_PEERS, f"limit {self.config.max_peers}")

    async def run_peer(
        self, peer: Peer, *, task_status: trio.TaskStatus[bytes] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run an established peer as a table member; a refused one is told why and closed."""
        try:
            self._register(peer)
        except PeerRefused as exc:
            peer.disconnect(exc.reason, exc.detail)
            await peer.run()  # flushes the DISCONNECT and closes
            raise
        task_status.started(peer.node_id)
        try:
            await peer.run()
        finally:
            self._unregister(peer)

    async def run_peer_quietly(self, peer: Peer) -> None:
        """`run_peer` for callers with nobody to tell: a refusal is only logged."""
        try:
            await self.run_peer(peer)
        except HandshakeError as exc:
            logger.info("connection refused peer=%s reason=%s", peer.short_id, exc)

    def _register(self, peer: Peer) -> None:
        if peer.inbound and self.is_address_banned(peer.enode.host):
            # Banned while this connection was still in its handshake (the listener checks before it).
            raise PeerRefused(DisconnectReason.BANNED, f"address {peer.enode.host} is banned")
        existing = self._peers.get(peer.node_id)
        if existing is not None:
            if not self._is_preferred_duplicate(peer, existing):
                raise PeerRefused(DisconnectReason.DUPLICATE, "already connected")
            existing.disconnect(DisconnectReason.DUPLICATE, "replaced by a newer connection")
            self._unregister(existing)
        elif self.is_full():
            raise PeerRefused(DisconnectReason.TOO_MANY_PEERS, f"limit {self.config.max_peers}")
        self._peers[peer.node_id] = peer
        logger.info(
            "peer connected peer=%s inbound=%s address=%s", peer.short_id, peer.inbound, peer.enode
        )
        self._emit(PeerEvent(PeerEventKind.CONNECTED, peer.node_id, peer.inbound))

    def _is_preferred_duplicate(self, new: Peer, existing: Peer) -> bool:
        # Both ends must keep the same connection when two dials cross: keep the
        # one dialled by the smaller node id. Same dialer twice: the old one is stale.
        own_id = self._local.node_id
        new_dialer = new.node_id if new.inbound else own_id
        existing_dialer = existing.node_id if existing.inbound else own_id
        if new_dialer == existing_dialer:
            return True
        return new_dialer == min(own_id, new.node_id)

    def _unregister(self, peer: Peer) -> None:
        if self._peers.get(peer.node_id) is not peer:
            return
        del self._peers[peer.node_id]
        self.counters.bytes_in += peer.channel.bytes_in
        self.counters.bytes_out += peer.channel.bytes_out
        self.counters.messages_in += peer.messages_in
        self.counters.messages_out += peer.messages_out
        self._emit(
            PeerEvent(
                PeerEventKind.DISCONNECTED, peer.node_id, peer.inbound, peer.disconnect_reason
            )
        )
