"""Peer scores and the ban lists.

Scores start at 0 and only fall (faults); a peer at or below -ban_threshold is
banned for a while. Time comes from trio's clock so MockClock drives expiry in
tests; a ban list forgets entries once they expire. One `BanList` holds node
ids, another the IP addresses they came from (`PeerTable`), so a banned
abuser cannot come back under a fresh key from the same address.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable


class PeerScores:
    def __init__(self, ban_threshold: int) -> None:
        self.ban_threshold = ban_threshold
        self._scores: dict[bytes, int] = {}

    def get_score(self, node_id: bytes) -> int:
        return self._scores.get(node_id, 0)

    def apply_penalty(self, node_id: bytes, penalty: int) -> int:
        score = self.get_score(node_id) - penalty
        self._scores[node_id] = score
        return score

    def is_over_threshold(self, node_id: bytes) -> bool:
        return self.get_score(node_id) <= -self.ban_threshold

    def forget(self, node_id: bytes) -> None:
        self._scores.pop(node_id, None)


class BanList:
    """Bans keyed by node id (bytes) or by IP address (str)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expiry: dict[Hashable, float] = {}

    def ban(self, key: Hashable, duration: float) -> None:
        expiry = self._clock() + duration
        self._expiry[key] = max(expiry, self._expiry.get(key, expiry))

    def is_banned(self, key: Hashable) -> bool:
        return self.get_remaining(key) > 0

    def get_remaining(self, key: Hashable) -> float:
        expiry = self._expiry.get(key)
        if expiry is None:
            return 0.0
        remaining = expiry - self._clock()
        if remaining <= 0:
            del self._expiry[key]
            return 0.0
        return remaining

    def get_active(self) -> dict:
        """key -> seconds left, for every ban still in force."""
        return {
            key: left
            for key in list(self._expiry)
            if (left := self.get_remaining(key)) > 0
        }
