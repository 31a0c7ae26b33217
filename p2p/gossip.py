"""Gossip topics, message ids, the validation verdicts and the bounded seen-cache."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from functools import cached_property
from enum import Enum, IntEnum
from typing import Callable

from eth_utils import keccak

from .exceptions import InvalidMessage


class Topic(IntEnum):
    TRANSACTIONS = 1
    PROPOSALS = 2
    VOTES = 3
    EVIDENCE = 4
    JOB_RESULTS = 5
    ATTESTATIONS = 6


class ValidationResult(Enum):
    ACCEPT = "accept"  # deliver to the subscriber and forward to other peers
    IGNORE = "ignore"  # drop quietly (e.g. stale or not yet checkable); no penalty
    REJECT = "reject"  # drop and score the sender down


@dataclass(frozen=True)
class GossipMessage:
    topic: Topic
    payload: bytes
    sender: bytes  # node id of the peer we got it from

    @cached_property
    def message_id(self) -> bytes:
        return compute_message_id(self.payload)


GossipValidator = Callable[[GossipMessage], ValidationResult]


def compute_message_id(payload: bytes) -> bytes:
    """keccak(payload): for an RLP payload its usual hash (a raw tx's id is its tx hash)."""
    return keccak(payload)


def compute_seen_key(topic: int, payload: bytes) -> bytes:
    """The dedup key of (topic, payload); the same bytes on two topics are two messages.

    A local cache key, never sent or signed: blake2b because it costs a tenth of
    keccak here and is paid on every copy of every message.
    """
    key = hashlib.blake2b(bytes([topic]), digest_size=32)
    key.update(payload)
    return key.digest()


def validate_topic(value: int) -> Topic:
    try:
        return Topic(value)
    except ValueError:
        raise InvalidMessage(
            "unknown gossip topic", got=value, expected=[t.value for t in Topic]
        ) from None


class SeenCache:
    """The most recent `capacity` message ids, oldest evicted first."""

    def __init__(self, capacity: int) -> None:
        assert capacity > 0
        self.capacity = capacity
        self._ids: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: bytes) -> bool:
        return message_id in self._ids

    def add(self, message_id: bytes) -> bool:
        """Record an id; True if it was new."""
        if message_id in self._ids:
            return False
        self._ids[message_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True
