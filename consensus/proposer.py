"""The proposer schedule: CometBFT's weighted proposer-priority rotation over recognition.

Each step every member's priority grows by its weight; the member with the
highest priority (ties to the lower address) proposes and pays back the total
weight. Before each call, priorities are rescaled into a window of
2 x total weight and centred on their average, as CometBFT does, so a member
proposes in proportion to its weight and the rotation stays bounded.

The schedule is a pure function of (validator set, epoch start, height, round):
priorities start at zero when an epoch's set takes effect, the height state
is reached by one step per height, and round r of a height takes r more steps
in one call (CometBFT's `IncrementProposerPriority(r)` on the height's copy).
Python integers do not overflow, so CometBFT's int64 clipping has no
counterpart here.
"""
from __future__ import annotations

from typing import Sequence

from consensus.validators import InvalidValidatorSet, ValidatorSet

PRIORITY_WINDOW_SIZE_FACTOR = 2
CHECKPOINT_EVERY = 256

Priorities = tuple[int, ...]  # aligned with validator_set.members (sorted by address)


def _trunc_div(a: int, b: int) -> int:
    """Go's integer division (truncates toward zero), used by the rescale."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def compute_rescaled_priorities(priorities: Sequence[int], diff_max: int) -> Priorities:
    """Shrink the spread of priorities to at most diff_max by an integer ratio."""
    if not priorities or diff_max <= 0:
        return tuple(priorities)
    diff = max(priorities) - min(priorities)
    if diff <= diff_max:
        return tuple(priorities)
    ratio = (diff + diff_max - 1) // diff_max
    return tuple(_trunc_div(p, ratio) for p in priorities)


def compute_centred_priorities(priorities: Sequence[int]) -> Priorities:
    """Subtract the average (floor division, like Go's big.Int Div for n > 0)."""
    average = sum(priorities) // len(priorities)
    return tuple(p - average for p in priorities)


def get_most_priority_index(validator_set: ValidatorSet, priorities: Sequence[int]) -> int:
    """Highest priority wins; a tie goes to the lower address (members are sorted)."""
    best = 0
    for i in range(1, len(priorities)):
        # Strictly greater only: on a tie the earlier (lower) address is kept.
        if priorities[i] > priorities[best]:
            best = i
    return best


def compute_incremented_priorities(
    validator_set: ValidatorSet, priorities: Sequence[int], times: int
) -> tuple[Priorities, bytes]:
    """CometBFT's IncrementProposerPriority(times): returns new priorities and the proposer."""
    if times <= 0:
        raise InvalidValidatorSet("times", times, "> 0")
    total = validator_set.total_weight
    weights = [v.weight for v in validator_set.members]
    current = list(
        compute_centred_priorities(
            compute_rescaled_priorities(priorities, PRIORITY_WINDOW_SIZE_FACTOR * total)
        )
    )
    proposer_index = 0
    for _ in range(times):
        for i, w in enumerate(weights):
            current[i] += w
        proposer_index = get_most_priority_index(validator_set, current)
        current[proposer_index] -= total
    return tuple(current), validator_set.members[proposer_index].address


def compute_initial_priorities(validator_set: ValidatorSet) -> tuple[Priorities, bytes]:
    """A new set starts at zero and is incremented once (CometBFT's NewValidatorSet)."""
    return compute_incremented_priorities(validator_set, (0,) * len(validator_set), 1)


class ProposerSchedule:
    """get_proposer(height, round) for one epoch's validator set.

    Pure in what it answers; it only memoises height states (every
    CHECKPOINT_EVERY heights plus the latest) so a node walking forward pays
    one step per height.
    """

    def __init__(self, validator_set: ValidatorSet, epoch_start: int = 1) -> None:
        if epoch_start < 0:
            raise InvalidValidatorSet("epoch_start", epoch_start, ">= 0")
        self.validator_set = validator_set
        self.epoch_start = epoch_start
        initial = compute_initial_priorities(validator_set)
        self._checkpoints: dict[int, tuple[Priorities, bytes]] = {epoch_start: initial}
        self._latest: tuple[int, tuple[Priorities, bytes]] = (epoch_start, initial)

    def get_height_state(self, height: int) -> tuple[Priorities, bytes]:
        """Priorities and round-0 proposer at `height`."""
        if height < self.epoch_start:
            raise InvalidValidatorSet("height", height, f">= epoch start {self.epoch_start}")
        start_height, state = self._latest
        if start_height > height:
            start_height = self.epoch_start + (height - self.epoch_start) // CHECKPOINT_EVERY * CHECKPOINT_EVERY
            state = self._checkpoints[start_height]
        for h in range(start_height + 1, height + 1):
            state = compute_incremented_priorities(self.validator_set, state[0], 1)
            if (h - self.epoch_start) % CHECKPOINT_EVERY == 0:
                self._checkpoints[h] = state
        if height >= self._latest[0]:
            self._latest = (height, state)
        return state

    def get_proposer(self, height: int, round: int) -> bytes:
        if round < 0:
            raise InvalidValidatorSet("round", round, ">= 0")
        priorities, proposer = self.get_height_state(height)
        if round == 0:
            return proposer
        return compute_incremented_priorities(self.validator_set, priorities, round)[1]
