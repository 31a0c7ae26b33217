"""P2PService: listening, dialling, admission, gossip routing, requests, scores and bans.

The service owns every peer task in its nursery. Peers report to it
(`on_gossip`, `serve_request`, `on_peer_fault`, `on_slow_peer`); it decides what
to deliver, what to forward, whom to penalise and whom to ban.
"""

from __future__ import annotations

import logging
import random
from contextlib import aclosing
from dataclasses import dataclass
from enum import Enum
from typing import Any, AsyncIterator, Awaitable, Callable

import rlp
import trio
from eth_keys import keys

from .exceptions import (
    AlreadySubscribed,
    BadRequest,
    DisconnectReason,
    HandshakeError,
    HelloMismatch,
    InvalidMessage,
    P2PError,
    PeerDisconnected,
    PeerNotConnected,
    PeerRefused,
    PENALTY_REJECTED_GOSSIP,
    PENALTY_SEVERE,
)
from .gossip import (
    GossipMessage,
    GossipValidator,
    SeenCache,
    Topic,
    ValidationResult,
    compute_message_id,
    compute_seen_key,
    validate_topic,
)
from .hello import (
    PROTOCOL_VERSION,
    Hello,
    NetworkId,
    decode_hello,
    sign_hello,
    validate_expected_identity,
    validate_hello_signature,
    validate_network,
)
from .identity import Enode, compute_short_id, get_node_id, parse_enode
from .messages import ErrorCode, MsgType, decode_message, encode_message
from .peer import Peer, ResponseStream, compute_remote_reason
from .scoring import BanList, PeerScores
from .secure import SecureChannel, perform_noise_handshake

logger = logging.getLogger("p2p.service")

RequestHandler = Callable[[bytes, Any], Awaitable[Any]]
StreamHandler = Callable[[bytes, Any], AsyncIterator[Any]]
GOSSIP_FRAME_OVERHEAD = 64
MAX_HELLO_FRAME = (
    2048  # a hello (or a refusal) is a few hundred bytes; nobody gets 4 MiB before we know them
)


@dataclass(frozen=True)
class P2PConfig:
    private_key: keys.PrivateKey
    chain_id: int
    genesis_hash: bytes
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: an ephemeral port, see P2PService.enode once started
    bootnodes: tuple[str, ...] = ()
    max_peers: int = 25
    max_pending_handshakes: int = 64  # inbound connections still in the handshake
    protocol_version: int = PROTOCOL_VERSION
    client: bytes = b"magicoin/0.1.0"
    max_frame_size: int = 4 * 1024 * 1024
    send_queue_size: int = 1024
    max_concurrent_requests: int = 16
    max_concurrent_streams: int = 16  # streamed responses served to one peer at once; more are refused
    handshake_timeout: float = 5.0
    request_timeout: float = 10.0
    write_timeout: float = 10.0
    ping_interval: float = 15.0  # ping a connection idle this long
    idle_timeout: float = 45.0  # drop a connection silent this long
    ban_duration: float = 600.0
    ban_threshold: int = PENALTY_SEVERE
    dial_timeout: float = 5.0
    reconnect_base: float = 0.5
    reconnect_max: float = 30.0
    seen_cache_size: int = 100_000
    subscription_buffer: int = 4096


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


@dataclass(frozen=True)
class P2PStatistics:
    peers: int
    inbound: int
    outbound: int
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    gossip_published: int
    gossip_delivered: int
    gossip_forwarded: int
    gossip_duplicates: int
    gossip_rejected: int
    gossip_ignored: int
    deliveries_dropped: int  # accepted gossip lost because a subscriber's channel was full
    requests_in: int
    requests_out: int
    faults: int
    drops: int  # slow peers dropped
    bans: int  # bans imposed since start
    banned_now: int
    handshake_failures: int
    dials: int  # outbound connection attempts
    dial_failures: int  # attempts that did not end in a connected peer


@dataclass
class _Counters:
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    messages_out: int = 0
    gossip_published: int = 0
    gossip_delivered: int = 0
    gossip_forwarded: int = 0
    gossip_duplicates: int = 0
    gossip_rejected: int = 0
    gossip_ignored: int = 0
    deliveries_dropped: int = 0
    requests_in: int = 0
    requests_out: int = 0
    faults: int = 0
    drops: int = 0
    bans: int = 0
    handshake_failures: int = 0
    dials: int = 0
    dial_failures: int = 0


@dataclass
class _Subscription:
    validate: GossipValidator
    send: trio.MemorySendChannel[GossipMessage]


class P2PService:
    def __init__(self, config: P2PConfig) -> None:
        self.config = config
        self.node_id = get_node_id(config.private_key)
        self.short_id = compute_short_id(self.node_id)
        self.network = NetworkId(config.protocol_version, config.chain_id, config.genesis_hash)
        self.bootnodes = tuple(parse_enode(text) for text in config.bootnodes)
        self.listen_port: int | None = None
        self.scores = PeerScores(config.ban_threshold)
        self.bans = BanList(trio.current_time)
        self._peers: dict[bytes, Peer] = {}
        self._seen = SeenCache(config.seen_cache_size)
        self._subscriptions: dict[Topic, _Subscription] = {}
        self._handlers: dict[str, RequestHandler] = {}
        self._stream_handlers: dict[str, StreamHandler] = {}
        self._event_channels: list[trio.MemorySendChannel[PeerEvent]] = []
        self._counters = _Counters()
        self._pending_handshakes = 0
        self._nursery: trio.Nursery | None = None

    # --- lifecycle ---

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(
            self.config.listen_port, host=self.config.listen_host
        )
        self.listen_port = listeners[0].socket.getsockname()[1]
        logger.info("listening enode=%s", self.enode)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(trio.serve_listeners, self._on_inbound, listeners)
                for enode in self.bootnodes:
                    nursery.start_soon(self._maintain_connection, enode)
                task_status.started()
        finally:
            self._nursery = None
            # Consumers iterating their channels see the end of the service.
            for channel in self._event_channels:
                channel.close()
            for subscription in self._subscriptions.values():
                subscription.send.close()

    @property
    def enode(self) -> Enode:
        assert self.listen_port is not None, "enode is known once run() has started"
        return Enode(self.node_id, self.config.listen_host, self.listen_port)

    # --- gossip ---

    def subscribe(
        self, topic: Topic, validate: GossipValidator, *, buffer: int | None = None
    ) -> trio.MemoryReceiveChannel[GossipMessage]:
        """Receive accepted gossip on a topic; `validate` decides accept/ignore/reject first."""
        topic = Topic(topic)
        if topic in self._subscriptions:
            raise AlreadySubscribed(topic)
        send, receive = trio.open_memory_channel[GossipMessage](
            buffer or self.config.subscription_buffer
        )
        self._subscriptions[topic] = _Subscription(validate, send)
        return receive

    def publish(self, topic: Topic, payload: bytes) -> bytes:
        """Send our own message to every peer; returns its id. Not delivered locally."""
        topic = Topic(topic)
        validate_payload_size(payload, self.config.max_frame_size - GOSSIP_FRAME_OVERHEAD)
        if self._seen.add(compute_seen_key(topic, payload)):
            self._counters.gossip_published += 1
            self._broadcast(encode_message(MsgType.GOSSIP, int(topic), payload), exclude=None)
        return compute_message_id(payload)

    def on_gossip(self, peer: Peer, topic_value: int, payload: bytes, body: bytes) -> None:
        topic = validate_topic(topic_value)
        subscription = self._subscriptions.get(topic)
        if subscription is None:
            # Unvalidated gossip is never forwarded. Not marked seen either, so a
            # copy arriving after someone subscribes is still handled.
            self._counters.gossip_ignored += 1
            return
        if not self._seen.add(compute_seen_key(topic, payload)):
            self._counters.gossip_duplicates += 1
            return
        message = GossipMessage(topic, payload, peer.node_id)
        verdict = self._run_validator(subscription, message)
        if verdict is ValidationResult.REJECT:
            self._counters.gossip_rejected += 1
            self.apply_penalty(
                peer.node_id, PENALTY_REJECTED_GOSSIP, f"rejected gossip on {topic.name}"
            )
            return
        if verdict is ValidationResult.IGNORE:
            self._counters.gossip_ignored += 1
            return
        self._deliver(subscription, message)
        self._counters.gossip_forwarded += self._broadcast(body, exclude=peer.node_id)

    def _run_validator(
        self, subscription: _Subscription, message: GossipMessage
    ) -> ValidationResult:
        try:
            verdict = subscription.validate(message)
        except Exception:
            # A validator bug must not take the node down; the message is dropped.
            logger.exception("gossip validator raised topic=%s", message.topic.name)
            return ValidationResult.IGNORE
        if not isinstance(verdict, ValidationResult):
            logger.error("gossip validator returned %r, expected a ValidationResult", verdict)
            return ValidationResult.IGNORE
        return verdict

    def _deliver(self, subscription: _Subscription, message: GossipMessage) -> None:
        try:
            subscription.send.send_nowait(message)
            self._counters.gossip_delivered += 1
        except trio.WouldBlock:
            self._counters.deliveries_dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._counters.deliveries_dropped += 1

    def _broadcast(self, body: bytes, *, exclude: bytes | None) -> int:
        sent = 0
        for peer in list(self._peers.values()):
            if peer.node_id != exclude and peer.try_send(body):
                sent += 1
        return sent

    # --- requests ---

    def register_handler(self, method: str, handler: RequestHandler) -> None:
        """Serve `method`: `await handler(peer_node_id, params)` returns a msgpack-able result.

        Raise `BadRequest` for invalid params: the caller gets an error and is scored down.
        """
        self._handlers[method] = handler

    async def request(
        self, node_id: bytes, method: str, params: Any, *, timeout: float | None = None
    ) -> Any:
        peer = self.get_peer(node_id)
        self._counters.requests_out += 1
        return await peer.request(method, params, timeout or self.config.request_timeout)

    def register_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve `method` as a streamed response: `handler(peer_node_id, params)` is an async
        iterator (typically an async generator) whose items are pushed to the requester as
        they come; the stream ends with the iterator.

        The handler is closed (`aclose`) when the requester cancels, disconnects or is too
        slow to take the items. Raise `BadRequest` for invalid params, as for requests.
        """
        self._stream_handlers[method] = handler

    def is_stream_method(self, method: str) -> bool:
        return method in self._stream_handlers

    async def open_stream(
        self,
        node_id: bytes,
        method: str,
        params: Any,
        *,
        max_items: int,
        item_timeout: float | None = None,
    ) -> ResponseStream:
        """Ask a peer for a streamed response; iterate the returned stream, then `aclose()` it.

        At most `max_items` unread items are buffered: a peer that sends more is
        penalised and the stream fails. `item_timeout`: the longest wait for any
        one item (None: until the stream ends or the peer disconnects).
        """
        peer = self.get_peer(node_id)
        self._counters.requests_out += 1
        return await peer.open_stream(method, params, max_items=max_items, item_timeout=item_timeout)

    async def serve_request(self, peer: Peer, method: str, params: Any) -> tuple:
        """Run a handler for a peer; returns (RESPONSE, result) or (ERROR, code, message)."""
        self._counters.requests_in += 1
        handler = self._handlers.get(method)
        if handler is None:
            return (
                MsgType.ERROR,
                int(ErrorCode.METHOD_NOT_FOUND),
                f"unknown method {method[:64]!r}",
            )

        async def call() -> Any:
            result = await handler(peer.node_id, params)
            encode_message(MsgType.RESPONSE, 0, result)  # fail here, not in the peer's writer
            return result

        return await self._answer(peer, method, call)

    async def serve_stream(self, peer: Peer, request_id: int, method: str, params: Any) -> tuple | None:
        """Push a stream handler's items to a peer; returns the frame that ends the stream,
        or None when the peer can no longer take items (gone, or dropped as too slow)."""
        self._counters.requests_in += 1
        handler = self._stream_handlers[method]

        async def call() -> bool:
            async with aclosing(handler(peer.node_id, params)) as items:
                async for item in items:
                    if not peer.try_send(encode_message(MsgType.STREAM, request_id, item)):
                        return False
            return True

        reply = await self._answer(peer, method, call)
        if reply[0] is MsgType.RESPONSE:
            return (MsgType.RESPONSE, None) if reply[1] else None
        return reply

    async def _answer(self, peer: Peer, method: str, call: Callable[[], Awaitable[Any]]) -> tuple:
        """Run a handler call; map its outcome to (RESPONSE, result) or (ERROR, code, message)."""
        try:
            result = await call()
        except BadRequest as exc:
            self.on_peer_fault(peer.node_id, exc)
            return (MsgType.ERROR, int(ErrorCode.BAD_REQUEST), str(exc)[:500])
        except P2PError as exc:
            return (MsgType.ERROR, int(ErrorCode.UNAVAILABLE), str(exc)[:500])
        except Exception:
            # A handler bug must not take the node down.
            logger.exception("request handler failed method=%s peer=%s", method, peer.short_id)
            return (MsgType.ERROR, int(ErrorCode.INTERNAL), "internal error")
        return (MsgType.RESPONSE, result)

    # --- peers ---

    def get_peer(self, node_id: bytes) -> Peer:
        peer = self._peers.get(node_id)
        if peer is None:
            raise PeerNotConnected(node_id)
        return peer

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

    def subscribe_peer_events(self, *, buffer: int = 256) -> trio.MemoryReceiveChannel[PeerEvent]:
        send, receive = trio.open_memory_channel[PeerEvent](buffer)
        self._event_channels.append(send)
        return receive

    def disconnect(
        self, node_id: bytes, reason: DisconnectReason = DisconnectReason.REQUESTED
    ) -> None:
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.disconnect(reason)

    def ban(self, node_id: bytes, reason: str, duration: float | None = None) -> None:
        self.bans.ban(node_id, duration if duration is not None else self.config.ban_duration)
        self._counters.bans += 1
        logger.warning("ban peer=%s reason=%s", compute_short_id(node_id), reason)
        peer = self._peers.get(node_id)
        if peer is not None:
            peer.disconnect(DisconnectReason.BANNED, reason)

    def is_banned(self, node_id: bytes) -> bool:
        return self.bans.is_banned(node_id)

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
        self._counters.faults += 1
        self.apply_penalty(node_id, max(exc.penalty, 1), f"{type(exc).__name__}: {exc}")

    def on_slow_peer(self, peer: Peer) -> None:
        if peer.disconnect_reason is None:
            self._counters.drops += 1
            peer.disconnect(DisconnectReason.SLOW, f"send queue full ({peer.queued} frames)")

    async def connect(self, enode: Enode | str) -> bytes:
        """Dial once and return the peer's node id once connected (at once if it already is)."""
        enode = parse_enode(enode) if isinstance(enode, str) else enode
        assert self._nursery is not None, "connect() needs a running service"
        if enode.node_id in self._peers:
            return enode.node_id
        return await self._nursery.start(self._connect_and_run, enode)

    async def _connect_and_run(self, enode: Enode, *, task_status: trio.TaskStatus[bytes]) -> None:
        peer = await self._dial(enode)
        await self._run_peer(peer, task_status=task_status)

    async def _maintain_connection(self, enode: Enode) -> None:
        """Keep a bootnode connected, backing off exponentially while dials fail."""
        if enode.node_id == self.node_id:
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
                await self._run_peer_quietly(peer)
                if trio.current_time() - connected_at > 10 * self.config.reconnect_base:
                    backoff = self.config.reconnect_base
            await trio.sleep(backoff * random.uniform(0.5, 1.0))
            backoff = min(backoff * 2, self.config.reconnect_max)

    async def _wait_until_dialable(self, enode: Enode) -> bool:
        """Wait out bans, an existing connection or a full peer table; True if we waited."""
        remaining = self.bans.get_remaining(enode.node_id)
        if remaining > 0:
            await trio.sleep(remaining)
            return True
        existing = self._peers.get(enode.node_id)
        if existing is not None:
            await existing.closed.wait()
            return True
        if len(self._peers) >= self.config.max_peers:
            await trio.sleep(self.config.reconnect_max)
            return True
        return False

    async def _run_peer_quietly(self, peer: Peer) -> None:
        try:
            await self._run_peer(peer)
        except HandshakeError as exc:
            logger.info("connection refused peer=%s reason=%s", peer.short_id, exc)

    # --- connection setup ---

    async def _on_inbound(self, stream: trio.SocketStream) -> None:
        remote_host = get_remote_host(stream)
        if self._pending_handshakes >= self.config.max_pending_handshakes:
            # A flood of half-open connections must not cost us unbounded memory.
            self._counters.handshake_failures += 1
            logger.warning(
                "refused inbound connection remote=%s: too many pending handshakes", remote_host
            )
            await trio.aclose_forcefully(stream)
            return
        self._pending_handshakes += 1
        try:
            peer = await self._establish(stream, inbound=True, remote_host=remote_host)
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
        await self._run_peer_quietly(peer)

    async def _dial(self, enode: Enode) -> Peer:
        self._counters.dials += 1
        try:
            with trio.fail_after(self.config.dial_timeout):
                stream = await trio.open_tcp_stream(enode.host, enode.port)
            return await self._establish(
                stream, inbound=False, remote_host=enode.host, expected_node_id=enode.node_id
            )
        except BaseException:
            self._counters.dial_failures += 1
            raise

    async def _establish(
        self,
        stream: trio.SocketStream,
        *,
        inbound: bool,
        remote_host: str,
        expected_node_id: bytes | None = None,
    ) -> Peer:
        """Noise XX, then signed hellos, then admission; closes the stream on any failure."""
        channel: SecureChannel | None = None
        try:
            with trio.fail_after(self.config.handshake_timeout):
                channel = await perform_noise_handshake(stream, initiator=not inbound)
                if inbound:
                    hello = await self._receive_hello(channel, expected_node_id)
                    await self._send_hello(channel)
                else:
                    await self._send_hello(channel)
                    hello = await self._receive_hello(channel, expected_node_id)
            return Peer(self, channel, hello, inbound=inbound, remote_host=remote_host)
        except (
            P2PError,
            trio.TooSlowError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
        ) as exc:
            self._counters.handshake_failures += 1
            logger.warning(
                "handshake failed remote=%s inbound=%s error=%s: %s",
                remote_host,
                inbound,
                type(exc).__name__,
                exc,
            )
            await self._refuse(stream, channel, exc)
            raise

    async def _send_hello(self, channel: SecureChannel) -> None:
        ours = Hello(
            self.config.protocol_version,
            self.config.chain_id,
            self.config.genesis_hash,
            self.node_id,
            self.listen_port or 0,
            self.config.client,
        )
        signature = sign_hello(self.config.private_key, ours, channel.handshake_hash)
        await channel.send_frames([encode_message(MsgType.HELLO, rlp.encode(ours), signature)])

    async def _receive_hello(self, channel: SecureChannel, expected_node_id: bytes | None) -> Hello:
        """The remote's hello, checked for network, identity and admission.

        The dialler speaks first, so a responder that refuses never reveals its
        own hello and the dialler learns the typed reason from the DISCONNECT.
        """
        msg_type, fields = decode_message(await channel.receive_frame(MAX_HELLO_FRAME))
        if msg_type is MsgType.DISCONNECT:
            raise PeerDisconnected(
                compute_remote_reason(fields[0]), f"refused by remote: {fields[1][:200]}"
            )
        if msg_type is not MsgType.HELLO:
            raise InvalidMessage("first message is not HELLO", got=msg_type.name, expected="HELLO")
        theirs = decode_hello(fields[0])
        # The signature first: every later refusal is then pinned on a proven identity.
        validate_hello_signature(theirs, fields[1], channel.handshake_hash)
        self._validate_not_banned(theirs.node_id)
        try:
            validate_network(theirs, self.network)
        except HelloMismatch as exc:
            # A node of another network would redial us forever: keep it away for a while.
            self.ban(theirs.node_id, str(exc))
            raise
        validate_expected_identity(theirs, expected_node_id)
        self._validate_admission(theirs.node_id)
        return theirs

    def _validate_not_banned(self, node_id: bytes) -> None:
        if self.bans.is_banned(node_id):
            raise PeerRefused(
                DisconnectReason.BANNED, f"for {self.bans.get_remaining(node_id):.0f} s more"
            )

    def _validate_admission(self, node_id: bytes) -> None:
        if node_id == self.node_id:
            raise PeerRefused(DisconnectReason.SELF_CONNECTION)
        if node_id not in self._peers and len(self._peers) >= self.config.max_peers:
            raise PeerRefused(DisconnectReason.TOO_MANY_PEERS, f"limit {self.config.max_peers}")

    async def _refuse(
        self, stream: trio.SocketStream, channel: SecureChannel | None, exc: BaseException
    ) -> None:
        """Tell the remote why (if we have a channel and it was our decision), then close."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1.0):
                if (
                    channel is not None
                    and isinstance(exc, P2PError)
                    and not isinstance(exc, PeerDisconnected)
                ):
                    try:
                        await channel.send_frames(
                            [encode_message(MsgType.DISCONNECT, int(exc.reason), str(exc)[:200])]
                        )
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            await trio.aclose_forcefully(stream)

    async def _run_peer(
        self, peer: Peer, *, task_status: trio.TaskStatus[bytes] = trio.TASK_STATUS_IGNORED
    ) -> None:
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

    def _register(self, peer: Peer) -> None:
        existing = self._peers.get(peer.node_id)
        if existing is not None:
            if not self._is_preferred_duplicate(peer, existing):
                raise PeerRefused(DisconnectReason.DUPLICATE, "already connected")
            existing.disconnect(DisconnectReason.DUPLICATE, "replaced by a newer connection")
            self._unregister(existing)
        elif len(self._peers) >= self.config.max_peers:
            raise PeerRefused(DisconnectReason.TOO_MANY_PEERS, f"limit {self.config.max_peers}")
        self._peers[peer.node_id] = peer
        logger.info(
            "peer connected peer=%s inbound=%s address=%s", peer.short_id, peer.inbound, peer.enode
        )
        self._emit(PeerEvent(PeerEventKind.CONNECTED, peer.node_id, peer.inbound))

    def _is_preferred_duplicate(self, new: Peer, existing: Peer) -> bool:
        # Both ends must keep the same connection when two dials cross: keep the
        # one dialled by the smaller node id. Same dialer twice: the old one is stale.
        new_dialer = new.node_id if new.inbound else self.node_id
        existing_dialer = existing.node_id if existing.inbound else self.node_id
        if new_dialer == existing_dialer:
            return True
        return new_dialer == min(self.node_id, new.node_id)

    def _unregister(self, peer: Peer) -> None:
        if self._peers.get(peer.node_id) is not peer:
            return
        del self._peers[peer.node_id]
        self._counters.bytes_in += peer.channel.bytes_in
        self._counters.bytes_out += peer.channel.bytes_out
        self._counters.messages_in += peer.messages_in
        self._counters.messages_out += peer.messages_out
        self._emit(
            PeerEvent(
                PeerEventKind.DISCONNECTED, peer.node_id, peer.inbound, peer.disconnect_reason
            )
        )

    def _emit(self, event: PeerEvent) -> None:
        for channel in list(self._event_channels):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:
                logger.warning("peer event dropped: subscriber is not keeping up")
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                self._event_channels.remove(channel)

    # --- statistics ---

    def statistics(self) -> P2PStatistics:
        live = list(self._peers.values())
        c = self._counters
        return P2PStatistics(
            peers=len(live),
            inbound=sum(1 for peer in live if peer.inbound),
            outbound=sum(1 for peer in live if not peer.inbound),
            bytes_in=c.bytes_in + sum(peer.channel.bytes_in for peer in live),
            bytes_out=c.bytes_out + sum(peer.channel.bytes_out for peer in live),
            messages_in=c.messages_in + sum(peer.messages_in for peer in live),
            messages_out=c.messages_out + sum(peer.messages_out for peer in live),
            gossip_published=c.gossip_published,
            gossip_delivered=c.gossip_delivered,
            gossip_forwarded=c.gossip_forwarded,
            gossip_duplicates=c.gossip_duplicates,
            gossip_rejected=c.gossip_rejected,
            gossip_ignored=c.gossip_ignored,
            deliveries_dropped=c.deliveries_dropped,
            requests_in=c.requests_in,
            requests_out=c.requests_out,
            faults=c.faults,
            drops=c.drops,
            bans=c.bans,
            banned_now=len(self.bans.get_active()),
            handshake_failures=c.handshake_failures,
            dials=c.dials,
            dial_failures=c.dial_failures,
        )


def validate_payload_size(payload: bytes, limit: int) -> None:
    if not isinstance(payload, bytes):
        raise TypeError(f"gossip payload must be bytes, got {type(payload).__name__}")
    if len(payload) > limit:
        raise ValueError(f"gossip payload of {len(payload)} bytes exceeds {limit}")


def get_remote_host(stream: trio.SocketStream) -> str:
    try:
        return stream.socket.getpeername()[0]
    except OSError:
        return "?"
