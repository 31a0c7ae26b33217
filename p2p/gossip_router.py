"""Gossip routing: subscriptions, validation verdicts, delivery, the seen-cache and forwarding.

One subscriber per topic. A copy is dropped if seen before, then the
subscriber's validator decides: ACCEPT delivers it and forwards it to every
other peer, IGNORE drops it, REJECT drops it and scores the sender down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from .abc import PeerAPI
from .config import P2PConfig
from .exceptions import PENALTY_REJECTED_GOSSIP, AlreadySubscribed
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
from .messages import MsgType, encode_message
from .peer_table import PeerTable

logger = logging.getLogger("p2p.gossip_router")

GOSSIP_FRAME_OVERHEAD = 64


@dataclass
class GossipCounters:
    published: int = 0
    delivered: int = 0
    forwarded: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored: int = 0
    deliveries_dropped: int = 0  # accepted gossip lost because a subscriber's channel was full


@dataclass
class Subscription:
    validate: GossipValidator
    send: trio.MemorySendChannel[GossipMessage]


class GossipRouter:
    def __init__(self, config: P2PConfig, peers: PeerTable) -> None:
        self.config = config
        self.counters = GossipCounters()
        self._peers = peers
        self._seen = SeenCache(config.seen_cache_size)
        self._subscriptions: dict[Topic, Subscription] = {}

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
        self._subscriptions[topic] = Subscription(validate, send)
        return receive

    def close_subscriptions(self) -> None:
        # Consumers iterating their channels see the end of the service.
        for subscription in self._subscriptions.values():
            subscription.send.close()

    def publish(self, topic: Topic, payload: bytes) -> bytes:
        """Send our own message to every peer; returns its id. Not delivered locally."""
        topic = Topic(topic)
        validate_payload_size(payload, self.config.max_frame_size - GOSSIP_FRAME_OVERHEAD)
        if self._seen.add(compute_seen_key(topic, payload)):
            self.counters.published += 1
            self.broadcast(encode_message(MsgType.GOSSIP, int(topic), payload), exclude=None)
        return compute_message_id(payload)

    def on_gossip(self, peer: PeerAPI, topic_value: int, payload: bytes, body: bytes) -> None:
        topic = validate_topic(topic_value)
        subscription = self._subscriptions.get(topic)
        if subscription is None:
            # Unvalidated gossip is never forwarded. Not marked seen either, so a
            # copy arriving after someone subscribes is still handled.
            self.counters.ignored += 1
            return
        if not self._seen.add(compute_seen_key(topic, payload)):
            self.counters.duplicates += 1
            return
        message = GossipMessage(topic, payload, peer.node_id)
        verdict = self._run_validator(subscription, message)
        if verdict is ValidationResult.REJECT:
            self.counters.rejected += 1
            self._peers.apply_penalty(
                peer.node_id, PENALTY_REJECTED_GOSSIP, f"rejected gossip on {topic.name}"
            )
            return
        if verdict is ValidationResult.IGNORE:
            self.counters.ignored += 1
            return
        self._deliver(subscription, message)
        self.counters.forwarded += self.broadcast(body, exclude=peer.node_id)

    def broadcast(self, body: bytes, *, exclude: bytes | None) -> int:
        """Queue an encoded frame to every peer but `exclude`; returns how many took it."""
        sent = 0
        for peer in self._peers.get_connected():
            if peer.node_id != exclude and peer.try_send(body):
                sent += 1
        return sent

    def _run_validator(
        self, subscription: Subscription, message: GossipMessage
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

    def _deliver(self, subscription: Subscription, message: GossipMessage) -> None:
        try:
            subscription.send.send_nowait(message)
            self.counters.delivered += 1
        except trio.WouldBlock:
            self.counters.deliveries_dropped += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.counters.deliveries_dropped += 1


def validate_payload_size(payload: bytes, limit: int) -> None:
    if not isinstance(payload, bytes):
        raise TypeError(f"gossip payload must be bytes, got {type(payload).__name__}")
    if len(payload) > limit:
        raise ValueError(f"gossip payload of {len(payload)} bytes exceeds {limit}")
