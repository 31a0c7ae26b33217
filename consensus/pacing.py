"""Round pacing: how long a validator waits in each step, from what it has observed (issue 14).

Owns the adaptive timeouts and the proposer-liveness view that the round
drivers (`node.consensus_driver`, `consensus.sim`) apply to the machine's
`ScheduleTimeout` outputs. Pure and synchronous: no clock; the driver measures
milliseconds on its own clock and passes them in.

Safety never depends on what is decided here. A timeout only makes a validator
prevote or precommit nil, or start the next round, and Algorithm 1 is safe
whenever those happen (its timeouts may take any value). Pacing changes how
soon a round gives up, so it changes liveness and throughput only.

What it decides:
- a proposer *known to be absent* (nothing signed by it reached us in the last
  `absent_after_heights` decided heights, nor at the current height) gets a
  short propose timeout (`absent_propose_ms`): its round is nil-voted quickly
  and the next round's proposer takes the slot;
- any other proposer gets the adaptive propose timeout: a multiple of the
  observed proposal delay (a high quantile of recent samples), never below a
  floor, raised when a proposer believed up misses its slot, decayed back when
  proposals arrive in time, plus a per-round increment;
- prevote and precommit waits follow the same latency estimate, and a round
  whose precommit quorum is nil moves on at once (those validators cannot
  precommit anything else in that round, so waiting would only help if some of
  them equivocated; and a quorum for a value of that round that arrives later
  is still decided, since the machine decides values of any round);
- the configured `TimeoutConfig` is the ceiling of every value, so pacing only
  ever shortens waits. Both the ceiling and the paced values grow with the
  round, so after GST some round's timeouts exceed the real delays and
  Algorithm 1's liveness argument holds.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from consensus.bft import ScheduleTimeout, Step, TendermintMachine, TimeoutConfig
from consensus.exceptions import InvalidMessage
from consensus.validators import is_quorum
from consensus.votes import NIL

PERCENT = 100


@dataclass(frozen=True)
class PacingConfig:
    """Knobs of the adaptive timeouts (milliseconds unless named otherwise)."""

    # A proposer believed up is never given less, after the block interval: a block of many transactions
    # takes a while to build, and a live proposer timed out too early costs a whole round.
    propose_floor_ms: int = 600
    propose_factor: int = 3  # x the delay quantile
    propose_margin_ms: int = 250
    vote_floor_ms: int = 150  # prevote and precommit waits
    vote_factor: int = 2
    vote_margin_ms: int = 50
    absent_propose_ms: int = 150  # the propose timeout for a proposer known to be absent
    absent_after_heights: int = 3  # decided heights without a signed message from a validator: absent
    round_delta_ms: int = 100  # added per round, so a stalled height eventually waits long enough
    window: int = 64  # recent proposal delays kept
    quantile_percent: int = 95
    raise_percent: int = 150  # x on a propose timeout for a proposer believed up
    decay_percent: int = 90  # x on a proposal in time, down to 100%
    max_boost_percent: int = 800

    def validate(self) -> None:
        """Raises InvalidMessage naming the first knob out of range."""
        for name in ("propose_floor_ms", "vote_floor_ms", "absent_propose_ms", "window", "absent_after_heights"):
            if getattr(self, name) < 1:
                raise InvalidMessage(f"pacing {name}", getattr(self, name), ">= 1")
        ranges = (("quantile_percent", 1, PERCENT), ("decay_percent", 1, PERCENT))
        for name, low, high in ranges:
            if not low <= getattr(self, name) <= high:
                raise InvalidMessage(f"pacing {name}", getattr(self, name), f"{low}..{high}")
        for name in ("raise_percent", "max_boost_percent"):
            if getattr(self, name) < PERCENT:
                raise InvalidMessage(f"pacing {name}", getattr(self, name), f">= {PERCENT}")


class LatencyWindow:
    """The last `size` delay samples (ms) and their quantile."""

    def __init__(self, size: int) -> None:
        self.samples: deque[int] = deque(maxlen=size)

    def add(self, delay_ms: int) -> None:
        self.samples.append(max(0, int(delay_ms)))

    def get_quantile(self, percent: int) -> int | None:
        """Nearest-rank quantile; None before the first sample."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        rank = -(-percent * len(ordered) // PERCENT)  # ceil
        return ordered[max(1, rank) - 1]


class ProposerLiveness:
    """Which validators this node has heard from lately, in decided heights.

    "Heard" means a signed proposal or vote that the machine accepted, or a
    precommit in an imported block's commit. A validator that joins the set is
    given `absent_after_heights` heights before it can count as absent.
    """

    def __init__(self, absent_after_heights: int) -> None:
        self.absent_after_heights = absent_after_heights
        self.last_heard: dict[bytes, int] = {}
        self.member_since: dict[bytes, int] = {}

    def on_heard(self, validators: Iterable[bytes], height: int) -> None:
        for validator in validators:
            if self.last_heard.get(validator, -1) < height:
                self.last_heard[validator] = height

    def on_members(self, members: Iterable[bytes], height: int) -> None:
        """The set voting at `height`; forgets those who left it (memory stays bounded by the set)."""
        members = list(members)
        for member in members:
            self.member_since.setdefault(member, height)
        current = set(members)
        for table in (self.member_since, self.last_heard):
            for gone in [address for address in table if address not in current]:
                del table[gone]

    def is_absent(self, validator: bytes, height: int) -> bool:
        """Nothing signed by `validator` reached us in the `absent_after_heights` heights before `height`."""
        since = self.member_since.setdefault(validator, height)
        reference = self.last_heard.get(validator, since - 1)
        return height - reference > self.absent_after_heights


class PacedTimeout(NamedTuple):
    duration_ms: int
    absent_proposer: bool  # a propose timeout shortened because its proposer is known to be absent


class Pacer:
    """One validator's adaptive timeouts; the driver feeds it observations and asks it for durations."""

    def __init__(self, ceiling: TimeoutConfig, config: PacingConfig = PacingConfig()) -> None:
        config.validate()
        self.ceiling = ceiling
        self.config = config
        self.delays = LatencyWindow(config.window)
        self.liveness = ProposerLiveness(config.absent_after_heights)
        self.boost_percent = PERCENT
        # (height, round) -> the driver's time (ms) from which the round's proposer may send; current height only.
        self.ready_at: dict[tuple[int, int], int] = {}
        self.sampled: set[tuple[int, int]] = set()
        self.missed: set[tuple[int, int]] = set()  # propose timeouts fired while a proposer believed up was awaited

    # --- observations ----------------------------------------------------------------------

    def on_round_started(self, height: int, round: int, ready_ms: int) -> None:
        """We entered (height, round); its proposer may send from `ready_ms` on (after the block interval)."""
        self.ready_at.setdefault((height, round), ready_ms)

    def on_proposal(self, height: int, round: int, now_ms: int) -> None:
        """The first proposal of (height, round) arrived at `now_ms`: a delay sample, and in time or late."""
        key = (height, round)
        ready = self.ready_at.get(key)
        if ready is None or key in self.sampled:
            return
        self.sampled.add(key)
        self.delays.add(now_ms - ready)
        if key not in self.missed:
            self.boost_percent = max(PERCENT, self.boost_percent * self.config.decay_percent // PERCENT)

    def on_propose_missed(self, height: int, round: int, absent_proposer: bool) -> None:
        """Our propose timeout fired before any proposal: wait longer next time, unless the proposer is absent."""
        if absent_proposer or (height, round) in self.missed:
            return
        self.missed.add((height, round))
        self.boost_percent = min(self.config.max_boost_percent,
                                 self.boost_percent * self.config.raise_percent // PERCENT)

    def on_heard(self, validators: Iterable[bytes], height: int) -> None:
        """Signed messages of `height` from these validators reached us some other way (a block's commit)."""
        self.liveness.on_heard(validators, height)

    def on_decided(self, height: int, members: Iterable[bytes], heard: Iterable[bytes]) -> None:
        self.liveness.on_members(members, height)
        self.liveness.on_heard(heard, height)
        self.ready_at = {key: at for key, at in self.ready_at.items() if key[0] > height}
        self.sampled = {key for key in self.sampled if key[0] > height}
        self.missed = {key for key in self.missed if key[0] > height}

    # --- durations -------------------------------------------------------------------------

    def get_estimate_ms(self) -> int | None:
        return self.delays.get_quantile(self.config.quantile_percent)

    def get_propose_ms(self, round: int) -> int:
        """The propose wait for a proposer believed up, counted from when it may send."""
        config = self.config
        ceiling = self.ceiling.get_duration(Step.PROPOSE, round)
        estimate = self.get_estimate_ms()
        if estimate is None:
            return ceiling  # nothing observed yet: the configured value
        base = max(config.propose_floor_ms, config.propose_factor * estimate + config.propose_margin_ms)
        return min(ceiling, base * self.boost_percent // PERCENT + round * config.round_delta_ms)

    def get_vote_ms(self, step: Step, round: int) -> int:
        config = self.config
        ceiling = self.ceiling.get_duration(step, round)
        estimate = self.get_estimate_ms()
        if estimate is None:
            return ceiling
        base = max(config.vote_floor_ms, config.vote_factor * estimate + config.vote_margin_ms)
        return min(ceiling, base * self.boost_percent // PERCENT + round * config.round_delta_ms)

    def get_absent_propose_ms(self, round: int) -> int:
        return min(self.ceiling.get_duration(Step.PROPOSE, round), self.config.absent_propose_ms)


# --- what a driver calls ----------------------------------------------------------------------

def get_height_senders(machine: TendermintMachine) -> set[bytes]:
    """Every validator whose signed proposal or vote the machine accepted at its current height."""
    senders: set[bytes] = set()
    for round_senders in machine.round_senders.values():
        senders |= round_senders
    return senders


def is_nil_precommit_quorum(machine: TendermintMachine, round: int) -> bool:
    tally = machine.precommits.get(round)
    return tally is not None and is_quorum(tally.get_weight(NIL), machine.validator_set.total_weight)


def compute_paced_timeout(pacer: Pacer, machine: TendermintMachine, timeout: ScheduleTimeout,
                          wait_ms: int = 0) -> PacedTimeout:
    """The duration to use for the machine's `timeout`, read against the machine's current height.

    `wait_ms` is how long the round's proposer must still wait before it may
    build (the node's block interval); it is added to a propose timeout for a
    proposer believed up, never to one known to be absent.
    """
    height, round = timeout.height, timeout.round
    if height != machine.height:
        return PacedTimeout(timeout.duration_ms, False)  # not the machine's height: nothing observed applies
    if timeout.step == Step.PROPOSE:
        proposer = machine.schedule.get_proposer(height, round)
        absent = pacer.liveness.is_absent(proposer, height) and proposer not in get_height_senders(machine)
        if absent:
            return PacedTimeout(pacer.get_absent_propose_ms(round), True)
        # Never longer than the configured value, which counts from the round's start as the wait does.
        ceiling = pacer.ceiling.get_duration(Step.PROPOSE, round)
        return PacedTimeout(min(ceiling, max(0, wait_ms) + pacer.get_propose_ms(round)), False)
    if timeout.step == Step.PRECOMMIT and is_nil_precommit_quorum(machine, round):
        return PacedTimeout(0, False)
    return PacedTimeout(pacer.get_vote_ms(timeout.step, round), False)


def process_decided_height(pacer: Pacer, machine: TendermintMachine) -> None:
    """Before the machine leaves its decided height: who was heard at it, and the height's set."""
    pacer.on_decided(machine.height, (member.address for member in machine.validator_set.members),
                     get_height_senders(machine))


__all__ = [
    "LatencyWindow",
    "PacedTimeout",
    "Pacer",
    "PacingConfig",
    "ProposerLiveness",
    "compute_paced_timeout",
    "get_height_senders",
    "is_nil_precommit_quorum",
    "process_decided_height",
]
