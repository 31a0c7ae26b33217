"""The adaptive timeouts of `consensus.pacing`: bounded, reacting to latency, never below the floor,
and a proposer known to be absent timed out fast, checked against a real `TendermintMachine`."""
import pytest
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.bft import ScheduleTimeout, Step, TendermintMachine, TimeoutConfig
from consensus.exceptions import InvalidMessage
from consensus.pacing import (
    LatencyWindow,
    Pacer,
    PacingConfig,
    ProposerLiveness,
    compute_paced_timeout,
    process_decided_height,
)
from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet
from consensus.votes import NIL, PRECOMMIT, PREVOTE, get_address, make_vote, sign_vote

CEILING = TimeoutConfig(propose_ms=3000, prevote_ms=1000, precommit_ms=1000, delta_ms=500)
CONFIG = PacingConfig()
CHAIN_ID = 1337
KEYS = [keccak(b"pacing-test" + bytes([i])) for i in range(4)]
ADDRS = [get_address(k) for k in KEYS]
KEY_OF = dict(zip(ADDRS, KEYS))
VS = ValidatorSet(zip(ADDRS, (1, 1, 1, 1)))
SCHED = ProposerSchedule(VS)


def fed_pacer(delays_ms, config=CONFIG) -> Pacer:
    """A pacer that saw one in-time proposal per height with these delays."""
    pacer = Pacer(CEILING, config)
    for height, delay in enumerate(delays_ms, start=1):
        pacer.on_round_started(height, 0, ready_ms=height * 10_000)
        pacer.on_proposal(height, 0, now_ms=height * 10_000 + delay)
    return pacer


# --- the latency estimate ----------------------------------------------------------------------

def test_quantile_is_nearest_rank_over_the_window():
    window = LatencyWindow(size=4)
    assert window.get_quantile(95) is None
    for delay in (40, 10, 30, 20, 1_000):  # the oldest (40) falls out of a window of 4
        window.add(delay)
    assert sorted(window.samples) == [10, 20, 30, 1_000]
    assert window.get_quantile(50) == 20
    assert window.get_quantile(95) == 1_000
    window.add(-5)  # a proposer whose interval began before ours: its proposal can beat our start
    assert min(window.samples) == 0


def test_without_observations_the_configured_timeouts_apply():
    pacer = Pacer(CEILING, CONFIG)
    for step in (Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT):
        for round in (0, 3):
            expected = CEILING.get_duration(step, round)
            got = pacer.get_propose_ms(round) if step == Step.PROPOSE else pacer.get_vote_ms(step, round)
            assert got == expected


def test_timeouts_follow_the_observed_delay():
    fast, slow = fed_pacer([20] * 30), fed_pacer([400] * 30)
    assert fast.get_estimate_ms() == 20 and slow.get_estimate_ms() == 400
    assert fast.get_propose_ms(0) < slow.get_propose_ms(0) < CEILING.propose_ms
    assert fast.get_vote_ms(Step.PREVOTE, 0) < slow.get_vote_ms(Step.PREVOTE, 0) < CEILING.prevote_ms
    # The wait covers the delays seen, with room to spare.
    assert slow.get_propose_ms(0) >= CONFIG.propose_factor * 400


def test_a_new_latency_regime_replaces_the_old_one_within_the_window():
    pacer = fed_pacer([20] * CONFIG.window + [500] * CONFIG.window)
    assert pacer.get_estimate_ms() == 500
    assert pacer.get_propose_ms(0) == max(CONFIG.propose_floor_ms,
                                          CONFIG.propose_factor * 500 + CONFIG.propose_margin_ms)


@given(delays=st.lists(st.integers(0, 20_000), min_size=1, max_size=80), round=st.integers(0, 50),
       misses=st.integers(0, 12))
@settings(max_examples=200, deadline=None)
def test_timeouts_stay_between_the_floor_and_the_ceiling(delays, round, misses):
    pacer = fed_pacer(delays)
    for height in range(misses):
        pacer.on_propose_missed(10_000 + height, 0, absent_proposer=False)
    propose = pacer.get_propose_ms(round)
    assert min(CONFIG.propose_floor_ms, CEILING.get_duration(Step.PROPOSE, round)) <= propose
    assert propose <= CEILING.get_duration(Step.PROPOSE, round)
    for step in (Step.PREVOTE, Step.PRECOMMIT):
        vote = pacer.get_vote_ms(step, round)
        assert CONFIG.vote_floor_ms <= vote <= CEILING.get_duration(step, round)
    assert CONFIG.absent_propose_ms == pacer.get_absent_propose_ms(round)


def test_never_below_the_floor_even_on_zero_delays():
    pacer = fed_pacer([0] * 50)
    assert pacer.get_propose_ms(0) == CONFIG.propose_floor_ms
    assert pacer.get_vote_ms(Step.PRECOMMIT, 0) == CONFIG.vote_floor_ms


def test_later_rounds_wait_longer():
    pacer = fed_pacer([50] * 20)
    waits = [pacer.get_propose_ms(round) for round in range(6)]
    assert waits == sorted(waits) and waits[-1] > waits[0]


# --- raise on a missed slot, decay on success ------------------------------------------------------

def test_missed_slots_raise_the_wait_up_to_a_bound_and_proposals_in_time_bring_it_back():
    pacer = fed_pacer([50] * 20)
    settled = pacer.get_propose_ms(0)
    pacer.on_propose_missed(100, 0, absent_proposer=False)
    raised = pacer.get_propose_ms(0)
    assert raised > settled
    pacer.on_propose_missed(100, 0, absent_proposer=False)  # the same round counts once
    assert pacer.get_propose_ms(0) == raised
    for height in range(101, 200):
        pacer.on_propose_missed(height, 0, absent_proposer=False)
    assert pacer.boost_percent == CONFIG.max_boost_percent
    assert pacer.get_propose_ms(0) <= CEILING.propose_ms
    # A late proposal for a missed round is a sample but does not count as in time.
    pacer.on_round_started(300, 0, ready_ms=0)
    pacer.on_propose_missed(300, 0, absent_proposer=False)
    boost = pacer.boost_percent
    pacer.on_proposal(300, 0, now_ms=60)
    assert pacer.boost_percent == boost
    for height in range(400, 500):
        pacer.on_round_started(height, 0, ready_ms=0)
        pacer.on_proposal(height, 0, now_ms=50)
    assert pacer.boost_percent == 100
    assert pacer.get_propose_ms(0) == settled


def test_a_known_absent_proposer_does_not_raise_the_wait():
    pacer = fed_pacer([50] * 20)
    settled = pacer.get_propose_ms(0)
    for height in range(100, 120):
        pacer.on_propose_missed(height, 0, absent_proposer=True)
    assert pacer.get_propose_ms(0) == settled


# --- who is absent ---------------------------------------------------------------------------------

def test_a_validator_unheard_for_the_window_is_absent_until_heard_again():
    liveness = ProposerLiveness(absent_after_heights=3)
    a, b = ADDRS[:2]
    for height in range(1, 8):
        liveness.on_members([a, b], height)
        liveness.on_heard([a] if height >= 4 else [a, b], height)
    # b was last heard at height 3: at 4..6 it may just be slow; from 7 on it missed 3 decided heights.
    assert not liveness.is_absent(b, 6)
    assert liveness.is_absent(b, 7)
    assert not liveness.is_absent(a, 8)
    liveness.on_heard([b], 7)
    assert not liveness.is_absent(b, 8)


def test_a_new_member_gets_the_window_before_it_can_be_absent():
    liveness = ProposerLiveness(absent_after_heights=3)
    newcomer = ADDRS[3]
    liveness.on_members([ADDRS[0], newcomer], 10)  # a member of decided height 10, not heard at it
    assert not liveness.is_absent(newcomer, 11)
    assert not liveness.is_absent(newcomer, 12)
    assert liveness.is_absent(newcomer, 13)  # 10, 11 and 12 decided without a word from it
    liveness.on_members([ADDRS[0]], 20)  # it left the set: forgotten
    assert newcomer not in liveness.member_since and newcomer not in liveness.last_heard


def test_invalid_configs_are_refused():
    for bad in ({"propose_floor_ms": 0}, {"quantile_percent": 101}, {"raise_percent": 90},
                {"decay_percent": 0}, {"max_boost_percent": 50}, {"window": 0}):
        with pytest.raises(InvalidMessage) as refused:
            Pacer(CEILING, PacingConfig(**bad))
        [(name, value)] = bad.items()
        assert name in str(refused.value) and refused.value.got == value


# --- on a real machine -------------------------------------------------------------------------------

def vote(addr, vote_type, height, round, block_hash):
    return sign_vote(make_vote(vote_type, height, round, block_hash, addr), KEY_OF[addr], CHAIN_ID)


def non_proposer(height):
    return next(a for a in ADDRS if a != SCHED.get_proposer(height, 0))


def test_paced_timeouts_on_a_machine_whose_proposer_went_silent():
    """Heights decided without ever hearing the next proposer make its round time out fast."""
    silent = SCHED.get_proposer(5, 0)
    me = next(a for a in ADDRS if a != silent)
    machine = TendermintMachine(KEY_OF[me], CHAIN_ID, CEILING)
    pacer = fed_pacer([30] * 10)
    heard = [a for a in ADDRS if a != silent]
    for height in range(1, 5):
        pacer.on_decided(height, ADDRS, ADDRS if height == 1 else heard)
    out = machine.start_height(5, VS, SCHED)
    propose = next(o for o in out if isinstance(o, ScheduleTimeout))
    assert propose == ScheduleTimeout(5, 0, Step.PROPOSE, CEILING.propose_ms)
    # Heard at height 1 only: 2 and 3 may be chance, from 5 on it missed 3 decided heights.
    paced = compute_paced_timeout(pacer, machine, propose, wait_ms=400)
    assert paced.absent_proposer and paced.duration_ms == CONFIG.absent_propose_ms
    # A vote from it at this height proves it is up: the full wait (block interval included) again.
    machine.on_vote(vote(silent, PREVOTE, 5, 0, NIL))
    paced = compute_paced_timeout(pacer, machine, propose, wait_ms=400)
    assert not paced.absent_proposer and paced.duration_ms == 400 + pacer.get_propose_ms(0)


def test_a_nil_precommit_quorum_moves_to_the_next_round_at_once():
    me = non_proposer(1)
    machine = TendermintMachine(KEY_OF[me], CHAIN_ID, CEILING)
    machine.start_height(1, VS, SCHED)
    pacer = fed_pacer([30] * 10)
    others = [a for a in ADDRS if a != me]
    out = machine.on_timeout(1, 0, Step.PROPOSE)  # our nil prevote
    for a in others:
        out += machine.on_vote(vote(a, PREVOTE, 1, 0, NIL))
    for a in others[:2]:
        out += machine.on_vote(vote(a, PRECOMMIT, 1, 0, NIL))
    precommit = next(o for o in out if isinstance(o, ScheduleTimeout) and o.step == Step.PRECOMMIT)
    assert compute_paced_timeout(pacer, machine, precommit).duration_ms == 0
    # A split precommit quorum still waits (the value's precommits may be on their way).
    other = TendermintMachine(KEY_OF[me], CHAIN_ID, CEILING)
    other.start_height(1, VS, SCHED)
    out = other.on_timeout(1, 0, Step.PROPOSE)
    out += other.on_vote(vote(others[0], PRECOMMIT, 1, 0, keccak(b"v")))
    out += other.on_vote(vote(others[1], PRECOMMIT, 1, 0, NIL))
    for a in others:
        out += other.on_vote(vote(a, PREVOTE, 1, 0, NIL))
    precommit = next(o for o in out if isinstance(o, ScheduleTimeout) and o.step == Step.PRECOMMIT)
    assert compute_paced_timeout(pacer, other, precommit).duration_ms == pacer.get_vote_ms(Step.PRECOMMIT, 0)


def test_the_decided_height_records_who_was_heard():
    me = non_proposer(1)
    machine = TendermintMachine(KEY_OF[me], CHAIN_ID, CEILING)
    machine.start_height(1, VS, SCHED)
    machine.on_vote(vote(ADDRS[0], PREVOTE, 1, 0, NIL))
    pacer = Pacer(CEILING, CONFIG)
    process_decided_height(pacer, machine)
    assert pacer.liveness.last_heard.get(ADDRS[0]) == 1
    assert set(pacer.liveness.member_since) == set(ADDRS)
