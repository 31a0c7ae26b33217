"""Peer scores and the ban list.

Scores start at 0 and only fall (faults); a peer at or below -ban_threshold is
banned for a while. Time comes from trio's clock so MockClock drives expiry in
tests; the ban list forgets entries once they expire.
"""

from __future__ import annotations

from typing import Callable


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
    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._expiry: dict[bytes, float] = {}

    def ban(self, node_id: bytes, duration: float) -> None:
        expiry = self._clock() + duration
        self._expiry[node_id] = max(expiry, self._expiry.get(node_id, expiry))

    def is_banned(self, node_id: bytes) -> bool:
        return self.get_remaining(node_id) > 0

    def get_remaining(self, node_id: bytes) -> float:
        expiry = self._expiry.get(node_id)
        if expiry is None:
            return 0.0
        remaining = expiry - self._clock()
        if remaining <= 0:
            del self._expiry[node_id]
            return 0.0
        return remaining

    def get_active(self) -> dict[bytes, float]:
        """node id -> seconds left, for every ban still in force."""
        return {
            node_id: left
            for node_id in list(self._expiry)
            if (left := self.get_remaining(node_id)) > 0
        }
