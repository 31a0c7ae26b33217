"""Each rule of Tendermint's Algorithm 1, driven by hand on one `TendermintMachine`."""
import pytest
from eth_utils import keccak

from consensus.bft import (
    BroadcastProposal,
    BroadcastVote,
    Decide,
    MachineNotStarted,
    NotAValidator,
    PersistedState,
    RecordEvidence,
    RequestValidation,
    RequestValue,
    ScheduleTimeout,
    Step,
    TendermintMachine,
    TimeoutConfig,
    WrongProposer,
)
from consensus.evidence import validate_evidence
from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet
from consensus.votes import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    InvalidSignature,
    get_address,
    make_proposal,
    make_vote,
    sign_proposal,
    sign_vote,
    validate_commit,
)

CHAIN_ID = 1337
KEYS = [keccak(b"bft-test" + bytes([i])) for i in range(5)]
ADDRS = [get_address(k) for k in KEYS]
KEY_OF = dict(zip(ADDRS, KEYS))
VS = ValidatorSet(zip(ADDRS[:4], (1, 1, 1, 1)))
SCHED = ProposerSchedule(VS)
T = TimeoutConfig(propose_ms=300, prevote_ms=200, precommit_ms=100, delta_ms=50)
V, V2, V3 = keccak(b"v"), keccak(b"v2"), keccak(b"v3")


def proposer(h, r, schedule=SCHED):
    return schedule.get_proposer(h, r)


# A validator that proposes in none of the rounds 0..2 of height 1, so it only reacts.
ME = next(a for a in VS.addresses if a not in {proposer(1, r) for r in range(3)})
OTHERS = [a for a in VS.addresses if a != ME]


def vote(addr, vote_type, round, block_hash, height=1):
    return sign_vote(make_vote(vote_type, height, round, block_hash, addr), KEY_OF[addr], CHAIN_ID)


def proposal(round, block_hash, pol_round=-1, height=1, schedule=SCHED, by=None):
    by = by or proposer(height, round, schedule)
    return sign_proposal(make_proposal(height, round, pol_round, block_hash, by), KEY_OF[by], CHAIN_ID)


def of(out, cls):
    return [o for o in out if isinstance(o, cls)]


def votes_of(out, vote_type=None):
    return [o.vote for o in of(out, BroadcastVote) if vote_type is None or o.vote.vote_type == vote_type]


def start(addr=ME, vs=VS, schedule=SCHED):
    m = TendermintMachine(KEY_OF[addr], CHAIN_ID, T)
    return m, m.start_height(1, vs, schedule)


def deliver_valid_proposal(m, round, block_hash, pol_round=-1, valid=True):
    out = m.on_proposal(proposal(round, block_hash, pol_round))
    requests = of(out, RequestValidation)
    if requests:
        assert requests == [RequestValidation(1, block_hash)]
        out += m.on_verdict(1, block_hash, valid)
    return out


def deliver_votes(m, addrs, vote_type, round, block_hash):
    out = []
    for a in addrs:
        out += m.on_vote(vote(a, vote_type, round, block_hash))
    return out


def lock_on(m, round, block_hash):
    """Drive `m` to prevote, see a prevote quorum and lock on block_hash in `round`."""
    out = deliver_valid_proposal(m, round, block_hash)
    out += deliver_votes(m, OTHERS[:2], PREVOTE, round, block_hash)
    assert m.locked_value == block_hash and m.locked_round == round
    return out


def move_to_next_round(m):
    """Others precommit nil; the precommit timeout then starts the next round."""
    r = m.round
    out = deliver_votes(m, OTHERS, PRECOMMIT, r, NIL)
    timeouts = [t for t in of(out, ScheduleTimeout) if t.step == Step.PRECOMMIT]
    assert timeouts == [ScheduleTimeout(1, r, Step.PRECOMMIT, T.get_duration(Step.PRECOMMIT, r))]
    out += m.on_timeout(1, r, Step.PRECOMMIT)
    assert m.round == r + 1 and m.step == Step.PROPOSE
    return out


# --- StartRound ---------------------------------------------------------------

def test_non_proposer_starts_by_waiting_for_the_proposal():
    m, out = start()
    assert out == [ScheduleTimeout(1, 0, Step.PROPOSE, 300)]
    assert (m.height, m.round, m.step) == (1, 0, Step.PROPOSE)


def test_proposer_requests_a_value_then_proposes_and_prevotes_it():
    m, out = start(proposer(1, 0))
    assert out == [RequestValue(1, 0)]
    out = m.on_value(1, 0, V)
    sent = of(out, BroadcastProposal)
    assert len(sent) == 1 and sent[0].proposal.block_hash == V and sent[0].proposal.pol_round == -1
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PREVOTE, V)]
    # A late or repeated value is ignored: one proposal per round, ever.
    assert m.on_value(1, 0, V2) == []


def test_machine_must_be_started():
    m = TendermintMachine(KEYS[0], CHAIN_ID, T)
    with pytest.raises(MachineNotStarted):
        m.on_vote(vote(ADDRS[1], PREVOTE, 0, V))


# --- prevote on a proposal --------------------------------------------------------

def test_prevote_waits_for_the_verdict_then_prevotes_a_valid_block():
    m, _ = start()
    out = m.on_proposal(proposal(0, V))
    assert of(out, RequestValidation) == [RequestValidation(1, V)] and votes_of(out) == []
    out = m.on_verdict(1, V, True)
    assert [(v.vote_type, v.block_hash, v.validator) for v in votes_of(out)] == [(PREVOTE, V, ME)]
    assert m.step == Step.PREVOTE


def test_invalid_proposal_gets_a_nil_prevote():
    m, _ = start()
    out = deliver_valid_proposal(m, 0, V, valid=False)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PREVOTE, NIL)]


def test_propose_timeout_prevotes_nil_and_stale_timeouts_do_nothing():
    m, _ = start()
    out = m.on_timeout(1, 0, Step.PROPOSE)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PREVOTE, NIL)]
    assert m.step == Step.PREVOTE
    assert m.on_timeout(1, 0, Step.PROPOSE) == []  # already past propose
    assert m.on_timeout(0, 0, Step.PRECOMMIT) == []  # another height


def test_timeouts_grow_with_the_round():
    m, out = start()
    durations = [out[0].duration_ms]
    for _ in range(3):
        out = m.on_timeout(1, m.round, Step.PROPOSE)
        out = move_to_next_round(m)
        proposes = [t for t in of(out, ScheduleTimeout) if t.step == Step.PROPOSE]
        if proposes:
            durations.append(proposes[0].duration_ms)
    assert durations == sorted(durations) and len(set(durations)) == len(durations) >= 2
    assert [T.get_duration(s, 3) > T.get_duration(s, 2) for s in (Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT)] == [True] * 3


# --- locking -------------------------------------------------------------------

def test_prevote_quorum_locks_and_precommits():
    m, _ = start()
    out = lock_on(m, 0, V)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out, PRECOMMIT)] == [(PRECOMMIT, V)]
    assert (m.locked_value, m.locked_round, m.valid_value, m.valid_round) == (V, 0, V, 0)
    assert m.step == Step.PRECOMMIT


def test_locked_validator_prevotes_nil_for_a_new_value():
    m, _ = start()
    lock_on(m, 0, V)
    move_to_next_round(m)
    out = deliver_valid_proposal(m, 1, V2)
    assert [(v.round, v.block_hash) for v in votes_of(out, PREVOTE)] == [(1, NIL)]
    assert m.locked_value == V


def test_locked_validator_prevotes_its_locked_value_again():
    m, _ = start()
    lock_on(m, 0, V)
    move_to_next_round(m)
    out = deliver_valid_proposal(m, 1, V, pol_round=0)
    assert [(v.round, v.block_hash) for v in votes_of(out, PREVOTE)] == [(1, V)]


def test_unlock_by_a_newer_proof_of_lock():
    m, _ = start()
    lock_on(m, 0, V)
    move_to_next_round(m)
    deliver_valid_proposal(m, 1, V2)  # prevotes nil: locked on V
    # Round 2's proposer and one more validator (over 1/3 of the weight) are already in round 2.
    p2 = proposer(1, 2)
    out = m.on_proposal(proposal(2, V2, pol_round=1))
    q = next(a for a in OTHERS if a != p2)
    out += m.on_vote(vote(q, PREVOTE, 2, V2))
    assert m.round == 2 and m.step == Step.PROPOSE and votes_of(out, PREVOTE) == []
    # The proof arrives: a quorum prevoted V2 in round 1, after our lock in round 0.
    out = deliver_votes(m, OTHERS, PREVOTE, 1, V2)
    assert [(v.round, v.block_hash) for v in votes_of(out, PREVOTE)] == [(2, V2)]


def test_proof_of_lock_older_than_the_lock_does_not_unlock():
    state = PersistedState(1, 2, Step.PROPOSE, V2, 1, V2, 1, (), ())
    m = TendermintMachine(KEY_OF[ME], CHAIN_ID, T)
    m.restore(state, VS, SCHED)
    deliver_votes(m, OTHERS, PREVOTE, 0, V)
    out = deliver_valid_proposal(m, 2, V, pol_round=0)
    assert [(v.round, v.block_hash) for v in votes_of(out, PREVOTE)] == [(2, NIL)]


def test_quorum_seen_after_precommitting_nil_updates_only_the_valid_value():
    m, _ = start()
    deliver_valid_proposal(m, 0, V)  # ME prevotes V
    m.on_vote(vote(OTHERS[0], PREVOTE, 0, NIL))
    out = m.on_vote(vote(OTHERS[1], PREVOTE, 0, V2))
    assert of(out, ScheduleTimeout) == [ScheduleTimeout(1, 0, Step.PREVOTE, 200)]
    out = m.on_timeout(1, 0, Step.PREVOTE)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PRECOMMIT, NIL)]
    # V's quorum completes after we precommitted nil (OTHERS[0] equivocates, which counts
    # towards each value it signed): remember V as the valid value, but do not lock on it.
    m.on_vote(vote(OTHERS[2], PREVOTE, 0, V))
    out = m.on_vote(vote(OTHERS[0], PREVOTE, 0, V))
    assert (m.valid_value, m.valid_round) == (V, 0)
    assert (m.locked_value, m.locked_round) == (None, -1)
    assert votes_of(out) == [] and m.step == Step.PRECOMMIT


# --- nil and timeouts ------------------------------------------------------------------

def test_nil_prevote_quorum_precommits_nil():
    m, _ = start()
    deliver_valid_proposal(m, 0, V, valid=False)
    out = deliver_votes(m, OTHERS[:2], PREVOTE, 0, NIL)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PRECOMMIT, NIL)]


def test_mixed_prevotes_schedule_the_prevote_timeout_once_then_precommit_nil():
    m, _ = start()
    deliver_valid_proposal(m, 0, V)
    out = m.on_vote(vote(OTHERS[0], PREVOTE, 0, NIL))
    out += m.on_vote(vote(OTHERS[1], PREVOTE, 0, V2))
    assert of(out, ScheduleTimeout) == [ScheduleTimeout(1, 0, Step.PREVOTE, 200)]
    assert of(m.on_vote(vote(OTHERS[2], PREVOTE, 0, V3)), ScheduleTimeout) == []
    out = m.on_timeout(1, 0, Step.PREVOTE)
    assert [(v.vote_type, v.block_hash) for v in votes_of(out)] == [(PRECOMMIT, NIL)]


def test_precommit_quorum_of_anything_times_out_into_the_next_round():
    m, _ = start()
    m.on_timeout(1, 0, Step.PROPOSE)
    out = move_to_next_round(m)
    # Round 1 is someone else's: wait for it, a little longer than in round 0.
    assert [t for t in of(out, ScheduleTimeout) if t.step == Step.PROPOSE] == [
        ScheduleTimeout(1, 1, Step.PROPOSE, T.get_duration(Step.PROPOSE, 1))
    ]


# --- deciding ----------------------------------------------------------------------

def test_precommit_quorum_decides_with_a_valid_commit():
    m, _ = start()
    lock_on(m, 0, V)
    out = deliver_votes(m, OTHERS[:2], PRECOMMIT, 0, V)
    decisions = of(out, Decide)
    assert len(decisions) == 1 and decisions[0].block_hash == V and decisions[0].height == 1
    validate_commit(decisions[0].commit, VS, CHAIN_ID, 1, V)
    assert m.step == Step.DECIDED
    assert m.on_vote(vote(OTHERS[2], PRECOMMIT, 0, V)) == []  # the height is over


def test_decides_a_value_from_an_earlier_round():
    m, _ = start()
    m.on_timeout(1, 0, Step.PROPOSE)
    move_to_next_round(m)
    move_to_next_round(m)
    assert m.round == 2
    # A commit for round 0 reaches us late (e.g. from a peer that caught us up).
    out = deliver_valid_proposal(m, 0, V)
    out += deliver_votes(m, OTHERS, PRECOMMIT, 0, V)
    assert of(out, Decide)[0][:3] == (1, 0, V)


def test_no_decision_without_the_verdict():
    m, _ = start()
    m.on_proposal(proposal(0, V))
    out = deliver_votes(m, OTHERS, PRECOMMIT, 0, V)
    assert of(out, Decide) == []
    assert of(m.on_verdict(1, V, False), Decide) == []


def test_quorum_is_weighted_by_recognition():
    heavy = ValidatorSet(zip(ADDRS[:4], (1, 1, 1, 3)))
    schedule = ProposerSchedule(heavy)
    me = next(a for a in ADDRS[:3] if a != proposer(1, 0, schedule))
    m, _ = start(me, heavy, schedule)
    m.on_proposal(proposal(0, V, schedule=schedule))
    m.on_verdict(1, V, True)
    light = next(a for a in ADDRS[:3] if a != me)
    out = m.on_vote(vote(ADDRS[3], PRECOMMIT, 0, V))
    out += m.on_vote(vote(light, PRECOMMIT, 0, V))
    assert of(out, Decide) == []  # 4 of 6 is not more than 2/3
    last = next(a for a in ADDRS[:3] if a not in (me, light))
    assert of(m.on_vote(vote(last, PRECOMMIT, 0, V)), Decide)  # 5 of 6 is


# --- round skip -----------------------------------------------------------------------

def test_one_third_plus_of_weight_in_a_higher_round_skips_to_it():
    m, _ = start()
    m.on_vote(vote(OTHERS[0], PREVOTE, 5, NIL))
    assert m.round == 0  # 1 of 4 is not more than 1/3
    out = m.on_vote(vote(OTHERS[1], PRECOMMIT, 5, NIL))
    assert m.round == 5 and m.step == Step.PROPOSE
    assert ScheduleTimeout(1, 5, Step.PROPOSE, T.get_duration(Step.PROPOSE, 5)) in out or of(out, RequestValue)


# --- proposing the valid value ----------------------------------------------------------

def test_proposer_reproposes_its_valid_value_with_its_round():
    p1 = proposer(1, 1)
    state = PersistedState(1, 1, Step.PROPOSE, V, 0, V, 0, (), ())
    m = TendermintMachine(KEY_OF[p1], CHAIN_ID, T)
    out = m.restore(state, VS, SCHED)
    sent = of(out, BroadcastProposal)
    assert len(sent) == 1
    assert (sent[0].proposal.round, sent[0].proposal.block_hash, sent[0].proposal.pol_round) == (1, V, 0)
    assert of(out, RequestValue) == []


# --- crash safety -------------------------------------------------------------------------

def test_restart_resends_the_same_vote_and_never_signs_a_conflicting_one():
    m, _ = start()
    out = deliver_valid_proposal(m, 0, V)
    [prevote] = votes_of(out)
    persisted = m.get_persisted_state()
    restarted = TendermintMachine(KEY_OF[ME], CHAIN_ID, T)
    out = restarted.restore(persisted, VS, SCHED)
    assert votes_of(out) == [prevote]
    # Whatever fires now, no second prevote for round 0 is ever signed.
    out = restarted.on_timeout(1, 0, Step.PROPOSE)
    out += deliver_votes(restarted, OTHERS, PREVOTE, 0, NIL)
    out += restarted.on_timeout(1, 0, Step.PREVOTE)
    assert [v for v in votes_of(out) if v.vote_type == PREVOTE and v.round == 0] == []


def test_double_sign_guard_holds_even_if_the_step_was_lost():
    # A persisted state claiming "propose" although a prevote was already signed.
    m, _ = start()
    [prevote] = votes_of(deliver_valid_proposal(m, 0, V))
    state = m.get_persisted_state()
    state = PersistedState(1, 0, Step.PROPOSE, None, -1, None, -1, state.own_votes, ())
    restarted = TendermintMachine(KEY_OF[ME], CHAIN_ID, T)
    restarted.restore(state, VS, SCHED)
    out = restarted.on_timeout(1, 0, Step.PROPOSE)
    assert votes_of(out) == []
    assert restarted.own_votes[(0, PREVOTE)] == prevote


# --- bad input and evidence ------------------------------------------------------------------

def test_bad_messages_raise_typed_errors():
    m, _ = start()
    forged = sign_vote(make_vote(PREVOTE, 1, 0, V, OTHERS[0]), KEY_OF[OTHERS[1]], CHAIN_ID)
    with pytest.raises(InvalidSignature):
        m.on_vote(forged)
    with pytest.raises(NotAValidator):
        m.on_vote(vote(ADDRS[4], PREVOTE, 0, V))
    wrong = next(a for a in OTHERS if a != proposer(1, 0))
    with pytest.raises(WrongProposer) as info:
        m.on_proposal(proposal(0, V, by=wrong))
    assert info.value.expected == proposer(1, 0)


def test_equivocation_is_recorded_as_valid_evidence():
    m, _ = start()
    m.on_vote(vote(OTHERS[0], PREVOTE, 0, V))
    out = m.on_vote(vote(OTHERS[0], PREVOTE, 0, V2))
    [evidence] = of(out, RecordEvidence)
    assert validate_evidence(evidence.vote_a, evidence.vote_b, CHAIN_ID, VS) == OTHERS[0]
    assert m.evidence == [evidence]
    assert of(m.on_vote(vote(OTHERS[0], PREVOTE, 0, V)), RecordEvidence) == []  # a repeat is not new


def test_next_height_messages_wait_for_that_height():
    m, _ = start()
    lock_on(m, 0, V)
    early = proposal(0, V2, height=2)
    assert m.on_proposal(early) == []
    deliver_votes(m, OTHERS[:2], PRECOMMIT, 0, V)
    assert m.step == Step.DECIDED
    out = m.start_height(2, VS, SCHED)
    assert of(out, RequestValidation) == [RequestValidation(2, V2)]
    assert m.get_first_proposal(0) == early
