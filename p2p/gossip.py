"""Gossip topics, message ids, the validation verdicts and the bounded seen-cache."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
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
    message_id: bytes
    sender: bytes  # node id of the peer we got it from


GossipValidator = Callable[[GossipMessage], ValidationResult]


def compute_message_id(payload: bytes) -> bytes:
    """keccak(payload): for an RLP payload its usual hash (a raw tx's id is its tx hash)."""
    return keccak(payload)


def compute_seen_key(topic: int, message_id: bytes) -> bytes:
    # One seen-cache for all topics; the same bytes on two topics are two messages.
    return bytes([topic]) + message_id


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
