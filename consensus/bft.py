"""Tendermint BFT finality as a pure state machine (Buchman, Kwon, Milosevic 2018, Algorithm 1).

One `TendermintMachine` is one validator's view of consensus. Events go in
(`ProposalReceived`, `VoteReceived`, `TimeoutFired`, `ValueReady`,
`BlockVerdict`); outputs come out (`BroadcastProposal`, `BroadcastVote`,
`ScheduleTimeout`, `RequestValue`, `RequestValidation`, `Decide`,
`RecordEvidence`). There is no clock and no I/O: a timeout is a request the
driver fulfils by feeding `TimeoutFired` back, block contents stay with the
driver (the machine sees block hashes and the application's validity verdict),
and the driver persists `get_persisted_state()` before sending what a call
returned, so a restarted validator never signs two different votes for one
(height, round, type).

Weights are recognition: "2f+1" is more than 2/3 of the set's weight and
"f+1" is more than 1/3. The machine signs its own messages (signing is
deterministic), checks the signatures of everything it is given, and feeds
its own messages back into its own tallies.

After `Decide`, the driver applies the block and calls `start_height` for the
next height with that height's validator set. Messages for the next height
that arrive early are buffered and replayed then.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple, Union

from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet, is_one_third_plus, is_quorum
from consensus.votes import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Commit,
    ConsensusError,
    InvalidMessage,
    InvalidSignature,
    Proposal,
    Vote,
    compute_commit,
    get_address,
    make_proposal,
    make_vote,
    sign_proposal,
    sign_vote,
    validate_proposal_signature,
    validate_vote_signature,
)

MAX_ROUNDS_AHEAD = 1000  # messages further ahead are dropped so a byzantine peer cannot grow memory
MAX_BUFFERED_PER_HEIGHT = 10_000
MAX_VALUES_PER_VALIDATOR = 4  # distinct values counted per validator per (round, type)


class Step(IntEnum):
    PROPOSE = 0
    PREVOTE = 1
    PRECOMMIT = 2
    DECIDED = 3


class NotAValidator(ConsensusError):
    def __init__(self, got: bytes, height: int) -> None:
        super().__init__(f"{got.hex()} is not a validator at height {height}")
        self.got = got
        self.expected = "a member of the height's validator set"


class WrongProposer(ConsensusError):
    def __init__(self, got: bytes, expected: bytes, height: int, round: int) -> None:
        super().__init__(f"proposal at {height}/{round} by {got.hex()}, expected {expected.hex()}")
        self.got = got
        self.expected = expected


class MachineNotStarted(ConsensusError):
    def __init__(self) -> None:
        super().__init__("start_height or restore must be called first")


# --- events (in) -------------------------------------------------------------

class ProposalReceived(NamedTuple):
    proposal: Proposal


class VoteReceived(NamedTuple):
    vote: Vote


class TimeoutFired(NamedTuple):
    height: int
    round: int
    step: Step


class ValueReady(NamedTuple):
    """The application built the block this validator proposes at (height, round)."""

    height: int
    round: int
    block_hash: bytes


class BlockVerdict(NamedTuple):
    """The application's valid(v) for a proposed block."""

    height: int
    block_hash: bytes
    valid: bool


Event = Union[ProposalReceived, VoteReceived, TimeoutFired, ValueReady, BlockVerdict]


# --- outputs -----------------------------------------------------------------

class BroadcastProposal(NamedTuple):
    proposal: Proposal


class BroadcastVote(NamedTuple):
    vote: Vote


class ScheduleTimeout(NamedTuple):
    height: int
    round: int
    step: Step
    duration_ms: int


class RequestValue(NamedTuple):
    """Build a block for (height, round) and answer with ValueReady."""

    height: int
    round: int


class RequestValidation(NamedTuple):
    """Judge the block with this hash and answer with BlockVerdict."""

    height: int
    block_hash: bytes


class Decide(NamedTuple):
    height: int
    round: int
    block_hash: bytes
    commit: Commit


class RecordEvidence(NamedTuple):
    vote_a: Vote
    vote_b: Vote


Output = Union[BroadcastProposal, BroadcastVote, ScheduleTimeout, RequestValue, RequestValidation, Decide, RecordEvidence]


@dataclass(frozen=True)
class TimeoutConfig:
    """timeout(step, round) = base + round x delta: later rounds wait longer, so after GST they succeed.

    With `adaptive`, a node's round driver shortens each timeout the machine asks
    for from what it observes (`consensus.pacing`); these values are then the
    ceilings. The machine itself always asks for exactly these values.
    """

    propose_ms: int = 3000
    prevote_ms: int = 1000
    precommit_ms: int = 1000
    delta_ms: int = 500
    adaptive: bool = True

    def get_duration(self, step: Step, round: int) -> int:
        base = {Step.PROPOSE: self.propose_ms, Step.PREVOTE: self.prevote_ms, Step.PRECOMMIT: self.precommit_ms}[step]
        return base + round * self.delta_ms


@dataclass(frozen=True)
class PersistedState:
    """What a validator must keep across a crash so it cannot contradict itself."""

    height: int
    round: int
    step: Step
    locked_value: bytes | None
    locked_round: int
    valid_value: bytes | None
    valid_round: int
    own_votes: tuple[Vote, ...]
    own_proposals: tuple[Proposal, ...]


class VoteTally:
    """Votes of one (height, round, type), counted as the paper counts messages.

    "2f+1 PREVOTE(h, r, id(v))" is the weight of distinct validators that sent
    a prevote for v, so an equivocator counts towards each value it signed
    (otherwise which of its votes arrived first would decide whether an
    honest node sees a proof-of-lock, and the network could stall).
    "2f+1 PREVOTE(h, r, *)" counts every validator once. Safety does not
    suffer: quorum intersection already allows the f byzantine to be in both
    quorums.
    """

    __slots__ = ("by_hash", "first", "values", "weight_by_hash", "total_weight")

    def __init__(self) -> None:
        self.by_hash: dict[bytes, dict[bytes, Vote]] = {}
        self.first: dict[bytes, Vote] = {}
        self.values: dict[bytes, int] = {}
        self.weight_by_hash: dict[bytes, int] = {}
        self.total_weight = 0

    def add(self, vote: Vote, weight: int) -> Vote | None:
        """Count the vote; return the validator's earlier vote if this one conflicts with it."""
        voters = self.by_hash.setdefault(vote.block_hash, {})
        if vote.validator in voters:
            return None  # the same vote again
        first = self.first.get(vote.validator)
        if first is None:
            self.first[vote.validator] = vote
            self.total_weight += weight
        elif self.values[vote.validator] >= MAX_VALUES_PER_VALIDATOR:
            return first  # still evidence, but an equivocator cannot grow memory without bound
        self.values[vote.validator] = self.values.get(vote.validator, 0) + 1
        voters[vote.validator] = vote
        self.weight_by_hash[vote.block_hash] = self.weight_by_hash.get(vote.block_hash, 0) + weight
        return first

    def get_weight(self, block_hash: bytes) -> int:
        return self.weight_by_hash.get(block_hash, 0)

    def get_votes_for(self, block_hash: bytes) -> list[Vote]:
        return list(self.by_hash.get(block_hash, {}).values())

    def get_votes(self) -> list[Vote]:
        return [vote for voters in self.by_hash.values() for vote in voters.values()]


class TendermintMachine:
    def __init__(self, private_key: bytes, chain_id: int, timeouts: TimeoutConfig = TimeoutConfig()) -> None:
        self.private_key = private_key
        self.address = get_address(private_key)
        self.chain_id = chain_id
        self.timeouts = timeouts
        self.height = 0
        self.validator_set: ValidatorSet | None = None
        self.schedule: ProposerSchedule | None = None
        self._buffer: list[Event] = []
        self._reset_height_state()

    # --- height lifecycle ------------------------------------------------------

    def _reset_height_state(self) -> None:
        self.round = 0
        self.step = Step.PROPOSE
        self.locked_value: bytes | None = None
        self.locked_round = -1
        self.valid_value: bytes | None = None
        self.valid_round = -1
        self.decision: Decide | None = None
        self.evidence: list[RecordEvidence] = []  # this height's; the driver keeps what it needs
        # round -> block hash -> proposal; more than one only if the proposer equivocated.
        self.proposals: dict[int, dict[bytes, Proposal]] = {}
        self.prevotes: dict[int, VoteTally] = {}
        self.precommits: dict[int, VoteTally] = {}
        self.round_senders: dict[int, set[bytes]] = {}
        self.round_sender_weight: dict[int, int] = {}
        self.verdicts: dict[bytes, bool] = {}
        self.validation_requested: set[bytes] = set()
        self.own_votes: dict[tuple[int, int], Vote] = {}
        self.own_proposals: dict[int, Proposal] = {}
        self.value_requested: set[int] = set()
        self._fired: set[tuple[str, int]] = set()

    def start_height(self, height: int, validator_set: ValidatorSet, schedule: ProposerSchedule) -> list[Output]:
        """Begin `height` at round 0 (the paper's StartRound(0) after a decision)."""
        if height <= self.height and self.validator_set is not None:
            raise InvalidMessage("height", height, f"> {self.height}")
        self._enter_height(height, validator_set, schedule)
        out: list[Output] = []
        self._start_round(0, out)
        self._replay_buffer(out)
        self._evaluate(out)
        return out

    def restore(self, state: PersistedState, validator_set: ValidatorSet, schedule: ProposerSchedule) -> list[Output]:
        """Resume after a crash from the persisted state, re-sending what was already signed."""
        self._enter_height(state.height, validator_set, schedule)
        self.round = state.round
        self.step = state.step
        self.locked_value, self.locked_round = state.locked_value, state.locked_round
        self.valid_value, self.valid_round = state.valid_value, state.valid_round
        out: list[Output] = []
        for proposal in state.own_proposals:
            self.own_proposals[proposal.round] = proposal
            self.verdicts[proposal.block_hash] = True
            self._accept_proposal(proposal, out)
            out.append(BroadcastProposal(proposal))
        for vote in state.own_votes:
            self.own_votes[(vote.round, vote.vote_type)] = vote
            self._accept_vote(vote, out)
            out.append(BroadcastVote(vote))
        if self.step < Step.DECIDED:
            # Whatever step we died in, its timeout gets us moving again; all its
            # actions are nil votes or a round change, which are always safe.
            out.append(self._timeout_request(self.step))
            if self.step == Step.PROPOSE and self._is_proposer(self.round) and self.round not in self.own_proposals:
                self._propose(out)
        self._evaluate(out)
        return out

    def _enter_height(self, height: int, validator_set: ValidatorSet, schedule: ProposerSchedule) -> None:
        if schedule.validator_set != validator_set:
            raise InvalidMessage("schedule", "a schedule for another set", "the height's validator set")
        self.height = height
        self.validator_set = validator_set
        self.schedule = schedule
        self._reset_height_state()

    def get_persisted_state(self) -> PersistedState:
        return PersistedState(
            height=self.height,
            round=self.round,
            step=self.step,
            locked_value=self.locked_value,
            locked_round=self.locked_round,
            valid_value=self.valid_value,
            valid_round=self.valid_round,
            own_votes=tuple(self.own_votes[k] for k in sorted(self.own_votes)),
            own_proposals=tuple(self.own_proposals[r] for r in sorted(self.own_proposals)),
        )

    # --- events ----------------------------------------------------------------

    def process(self, event: Event) -> list[Output]:
        if self.validator_set is None:
            raise MachineNotStarted()
        out: list[Output] = []
        if isinstance(event, ProposalReceived):
            self._on_proposal(event.proposal, out)
        elif isinstance(event, VoteReceived):
            self._on_vote(event.vote, out)
        elif isinstance(event, TimeoutFired):
            self._on_timeout(event, out)
        elif isinstance(event, ValueReady):
            self._on_value(event, out)
        elif isinstance(event, BlockVerdict):
            self._on_verdict(event, out)
        else:
            raise InvalidMessage("event", type(event).__name__, "a consensus.bft event")
        self._evaluate(out)
        return out

    def on_proposal(self, proposal: Proposal) -> list[Output]:
        return self.process(ProposalReceived(proposal))

    def on_vote(self, vote: Vote) -> list[Output]:
        return self.process(VoteReceived(vote))

    def on_timeout(self, height: int, round: int, step: Step) -> list[Output]:
        return self.process(TimeoutFired(height, round, step))

    def on_value(self, height: int, round: int, block_hash: bytes) -> list[Output]:
        return self.process(ValueReady(height, round, block_hash))

    def on_verdict(self, height: int, block_hash: bytes, valid: bool) -> list[Output]:
        return self.process(BlockVerdict(height, block_hash, valid))

    def _is_current_height(self, height: int, event: Event) -> bool:
        """Buffer the next height's messages; drop anything older or further ahead."""
        if height == self.height and self.step != Step.DECIDED:
            return True
        if height == self.height + 1 and len(self._buffer) < MAX_BUFFERED_PER_HEIGHT:
            self._buffer.append(event)
        return False

    def _replay_buffer(self, out: list[Output]) -> None:
        buffered, self._buffer = self._buffer, []
        for event in buffered:
            try:
                if isinstance(event, ProposalReceived):
                    self._on_proposal(event.proposal, out)
                elif isinstance(event, VoteReceived):
                    self._on_vote(event.vote, out)
            except ConsensusError:
                # The sender is long gone from this call; a bad buffered message is just dropped.
                continue

    def _on_proposal(self, proposal: Proposal, out: list[Output]) -> None:
        if not self._is_current_height(proposal.height, ProposalReceived(proposal)):
            return
        if proposal.round > self.round + MAX_ROUNDS_AHEAD:
            return
        expected = self.schedule.get_proposer(proposal.height, proposal.round)
        if proposal.proposer != expected:
            raise WrongProposer(proposal.proposer, expected, proposal.height, proposal.round)
        validate_proposal_signature(proposal, self.chain_id)
        self._accept_proposal(proposal, out)

    def _accept_proposal(self, proposal: Proposal, out: list[Output]) -> None:
        # A second proposal for a round is proposer equivocation. The first one is what we
        # prevote on, but the others are kept: a quorum may form on one of them elsewhere
        # and we must be able to decide it when its commit reaches us.
        in_round = self.proposals.setdefault(proposal.round, {})
        if proposal.block_hash in in_round or len(in_round) >= MAX_VALUES_PER_VALIDATOR:
            return
        in_round[proposal.block_hash] = proposal
        self._note_sender(proposal.round, proposal.proposer)
        if proposal.block_hash not in self.verdicts and proposal.block_hash not in self.validation_requested:
            self.validation_requested.add(proposal.block_hash)
            out.append(RequestValidation(self.height, proposal.block_hash))

    def _on_vote(self, vote: Vote, out: list[Output]) -> None:
        if not self._is_current_height(vote.height, VoteReceived(vote)):
            return
        if vote.round > self.round + MAX_ROUNDS_AHEAD:
            return
        if vote.validator not in self.validator_set:
            raise NotAValidator(vote.validator, vote.height)
        validate_vote_signature(vote, self.chain_id)
        self._accept_vote(vote, out)

    def _accept_vote(self, vote: Vote, out: list[Output]) -> None:
        tallies = self.prevotes if vote.vote_type == PREVOTE else self.precommits
        tally = tallies.get(vote.round)
        if tally is None:
            tally = tallies[vote.round] = VoteTally()
        earlier = tally.add(vote, self.validator_set.get_weight(vote.validator))
        if earlier is not None and earlier.block_hash != vote.block_hash:
            evidence = RecordEvidence(earlier, vote)
            self.evidence.append(evidence)
            out.append(evidence)
        self._note_sender(vote.round, vote.validator)

    def _note_sender(self, round: int, validator: bytes) -> None:
        senders = self.round_senders.setdefault(round, set())
        if validator not in senders:
            senders.add(validator)
            self.round_sender_weight[round] = self.round_sender_weight.get(round, 0) + self.validator_set.get_weight(validator)

    def _on_timeout(self, event: TimeoutFired, out: list[Output]) -> None:
        if event.height != self.height or event.round != self.round or self.step == Step.DECIDED:
            return
        # OnTimeoutPropose / OnTimeoutPrevote act only if we are still waiting in that step.
        if event.step == Step.PROPOSE and self.step == Step.PROPOSE:
            self._vote(PREVOTE, NIL, out)
            self.step = Step.PREVOTE
        elif event.step == Step.PREVOTE and self.step == Step.PREVOTE:
            self._vote(PRECOMMIT, NIL, out)
            self.step = Step.PRECOMMIT
        elif event.step == Step.PRECOMMIT:
            self._start_round(self.round + 1, out)

    def _on_value(self, event: ValueReady, out: list[Output]) -> None:
        if (event.height, event.round) != (self.height, self.round) or self.step != Step.PROPOSE:
            return
        if self.round in self.own_proposals or len(event.block_hash) != 32:
            return
        self.verdicts[event.block_hash] = True  # our own application built it
        self._sign_and_send_proposal(event.block_hash, -1, out)

    def _on_verdict(self, event: BlockVerdict, out: list[Output]) -> None:
        if event.height != self.height:
            return
        self.verdicts.setdefault(event.block_hash, bool(event.valid))

    # --- the paper's StartRound and its rules -----------------------------------

    def _is_proposer(self, round: int) -> bool:
        return self.schedule.get_proposer(self.height, round) == self.address

    def _start_round(self, round: int, out: list[Output]) -> None:
        self.round = round
        self.step = Step.PROPOSE
        if self._is_proposer(round):
            self._propose(out)
        else:
            out.append(self._timeout_request(Step.PROPOSE))

    def _propose(self, out: list[Output]) -> None:
        # A value that already gathered a prevote quorum is re-proposed with its round as proof.
        if self.valid_value is not None:
            self._sign_and_send_proposal(self.valid_value, self.valid_round, out)
        elif self.round not in self.value_requested:
            self.value_requested.add(self.round)
            out.append(RequestValue(self.height, self.round))

    def _timeout_request(self, step: Step) -> ScheduleTimeout:
        return ScheduleTimeout(self.height, self.round, step, self.timeouts.get_duration(step, self.round))

    def _sign_and_send_proposal(self, block_hash: bytes, pol_round: int, out: list[Output]) -> None:
        if self.round in self.own_proposals:
            return  # never sign two proposals for one round
        proposal = sign_proposal(
            make_proposal(self.height, self.round, pol_round, block_hash, self.address), self.private_key, self.chain_id
        )
        self.own_proposals[self.round] = proposal
        self._accept_proposal(proposal, out)
        out.append(BroadcastProposal(proposal))

    def _vote(self, vote_type: int, block_hash: bytes, out: list[Output]) -> None:
        key = (self.round, vote_type)
        if key in self.own_votes:
            return  # the double-sign guard: one vote per (height, round, type), ever
        if self.address not in self.validator_set:
            return  # a non-member follows consensus but has no vote
        vote = sign_vote(make_vote(vote_type, self.height, self.round, block_hash, self.address), self.private_key, self.chain_id)
        self.own_votes[key] = vote
        self._accept_vote(vote, out)
        out.append(BroadcastVote(vote))

    def _is_valid(self, block_hash: bytes) -> bool | None:
        return self.verdicts.get(block_hash)

    def _first_time(self, rule: str, round: int) -> bool:
        key = (rule, round)
        if key in self._fired:
            return False
        self._fired.add(key)
        return True

    def _evaluate(self, out: list[Output]) -> None:
        """Fire every enabled rule until none is; each rule changes state at most once per condition."""
        rules = (
            self._rule_decide,
            self._rule_round_skip,
            self._rule_prevote_on_proposal,
            self._rule_prevote_on_pol_proposal,
            self._rule_lock_on_prevote_quorum,
            self._rule_precommit_nil_on_nil_quorum,
            self._rule_timeout_on_any_prevote_quorum,
            self._rule_timeout_on_any_precommit_quorum,
        )
        while self.step != Step.DECIDED and any(rule(out) for rule in rules):
            pass

    def _rule_decide(self, out: list[Output]) -> bool:
        """upon PROPOSAL(h, r, v, *) and 2f+1 PRECOMMIT(h, r, id(v)) while valid(v): decide v."""
        total = self.validator_set.total_weight
        for round, tally in self.precommits.items():
            v = next((v for v in self.proposals.get(round, {}) if is_quorum(tally.get_weight(v), total)), None)
            if v is None or not self._is_valid(v):
                continue
            commit = compute_commit(self.height, round, v, tally.get_votes_for(v))
            self.decision = Decide(self.height, round, v, commit)
            self.step = Step.DECIDED
            out.append(self.decision)
            return True
        return False

    def _rule_round_skip(self, out: list[Output]) -> bool:
        """upon f+1 messages (h, r, *) with r > round_p: StartRound(r)."""
        total = self.validator_set.total_weight
        ahead = [r for r, w in self.round_sender_weight.items() if r > self.round and is_one_third_plus(w, total)]
        if not ahead:
            return False
        self._start_round(max(ahead), out)
        return True

    def _rule_prevote_on_proposal(self, out: list[Output]) -> bool:
        """upon PROPOSAL(h, r, v, -1) while step = propose: prevote v if valid and not locked elsewhere."""
        proposal = self.get_first_proposal(self.round)
        if self.step != Step.PROPOSE or proposal is None or proposal.pol_round != -1:
            return False
        valid = self._is_valid(proposal.block_hash)
        if valid is None:
            return False  # wait for the application's verdict (or the propose timeout)
        v = proposal.block_hash
        if valid and (self.locked_round == -1 or self.locked_value == v):
            self._vote(PREVOTE, v, out)
        else:
            self._vote(PREVOTE, NIL, out)
        self.step = Step.PREVOTE
        return True

    def _rule_prevote_on_pol_proposal(self, out: list[Output]) -> bool:
        """upon PROPOSAL(h, r, v, vr) and 2f+1 PREVOTE(h, vr, id(v)), 0 <= vr < r, while step = propose."""
        proposal = self.get_first_proposal(self.round)
        if self.step != Step.PROPOSE or proposal is None or proposal.pol_round < 0:
            return False
        vr, v = proposal.pol_round, proposal.block_hash
        tally = self.prevotes.get(vr)
        if vr >= self.round or tally is None or not is_quorum(tally.get_weight(v), self.validator_set.total_weight):
            return False
        valid = self._is_valid(v)
        if valid is None:
            return False
        # Unlock: a quorum prevoted v at vr, no earlier than our lock, so v is safe to prevote.
        if valid and (self.locked_round <= vr or self.locked_value == v):
            self._vote(PREVOTE, v, out)
        else:
            self._vote(PREVOTE, NIL, out)
        self.step = Step.PREVOTE
        return True

    def _rule_lock_on_prevote_quorum(self, out: list[Output]) -> bool:
        """upon PROPOSAL(h, r, v, *) and 2f+1 PREVOTE(h, r, id(v)) while valid(v), step >= prevote, first time."""
        if self.step < Step.PREVOTE or ("lock", self.round) in self._fired:
            return False
        tally = self.prevotes.get(self.round)
        if tally is None:
            return False
        total = self.validator_set.total_weight
        v = next((v for v in self.proposals.get(self.round, {}) if is_quorum(tally.get_weight(v), total)), None)
        if v is None or not self._is_valid(v):
            return False
        self._first_time("lock", self.round)
        if self.step == Step.PREVOTE:
            self.locked_value, self.locked_round = v, self.round
            self._vote(PRECOMMIT, v, out)
            self.step = Step.PRECOMMIT
        self.valid_value, self.valid_round = v, self.round
        return True

    def _rule_precommit_nil_on_nil_quorum(self, out: list[Output]) -> bool:
        """upon 2f+1 PREVOTE(h, r, nil) while step = prevote: precommit nil."""
        tally = self.prevotes.get(self.round)
        if self.step != Step.PREVOTE or tally is None:
            return False
        if not is_quorum(tally.get_weight(NIL), self.validator_set.total_weight):
            return False
        self._vote(PRECOMMIT, NIL, out)
        self.step = Step.PRECOMMIT
        return True

    def _rule_timeout_on_any_prevote_quorum(self, out: list[Output]) -> bool:
        """upon 2f+1 PREVOTE(h, r, *) while step = prevote for the first time: schedule OnTimeoutPrevote."""
        tally = self.prevotes.get(self.round)
        if self.step != Step.PREVOTE or tally is None or ("prevote-timeout", self.round) in self._fired:
            return False
        if not is_quorum(tally.total_weight, self.validator_set.total_weight):
            return False
        self._first_time("prevote-timeout", self.round)
        out.append(self._timeout_request(Step.PREVOTE))
        return True

    def _rule_timeout_on_any_precommit_quorum(self, out: list[Output]) -> bool:
        """upon 2f+1 PRECOMMIT(h, r, *) for the first time: schedule OnTimeoutPrecommit."""
        tally = self.precommits.get(self.round)
        if tally is None or ("precommit-timeout", self.round) in self._fired:
            return False
        if not is_quorum(tally.total_weight, self.validator_set.total_weight):
            return False
        self._first_time("precommit-timeout", self.round)
        out.append(self._timeout_request(Step.PRECOMMIT))
        return True

    def get_first_proposal(self, round: int) -> Proposal | None:
        """The proposal this validator acts on in `round` (the first one it received)."""
        return next(iter(self.proposals.get(round, {}).values()), None)

    def get_proposal(self, round: int, block_hash: bytes) -> Proposal | None:
        return self.proposals.get(round, {}).get(block_hash)

    # --- what a driver re-gossips -------------------------------------------------

    def get_own_messages(self) -> list[Proposal | Vote]:
        """Everything this validator signed at the current height, for re-gossip."""
        return [self.own_proposals[r] for r in sorted(self.own_proposals)] + [
            self.own_votes[k] for k in sorted(self.own_votes)
        ]

    def get_pol_messages(self) -> list[Proposal | Vote]:
        """The proof behind our valid value: its proposal and the prevote quorum at the valid round.

        Relaying it lets a validator locked in an earlier round unlock when the value
        is proposed again, even if some of the prevotes came from equivocators it
        never heard from directly.
        """
        if self.valid_value is None:
            return []
        messages: list[Proposal | Vote] = []
        proposal = self.get_proposal(self.valid_round, self.valid_value)
        if proposal is not None:
            messages.append(proposal)
        tally = self.prevotes.get(self.valid_round)
        if tally is not None:
            messages.extend(tally.get_votes_for(self.valid_value))
        return messages

    def get_round_messages(self, round: int) -> list[Proposal | Vote]:
        """The proposal and every vote held for `round` (relayed so all honest nodes see the same)."""
        messages: list[Proposal | Vote] = list(self.proposals.get(round, {}).values())
        for tallies in (self.prevotes, self.precommits):
            if round in tallies:
                messages.extend(tallies[round].get_votes())
        return messages


__all__ = [
    "Step",
    "TendermintMachine",
    "TimeoutConfig",
    "PersistedState",
    "VoteTally",
    "ProposalReceived",
    "VoteReceived",
    "TimeoutFired",
    "ValueReady",
    "BlockVerdict",
    "BroadcastProposal",
    "BroadcastVote",
    "ScheduleTimeout",
    "RequestValue",
    "RequestValidation",
    "Decide",
    "RecordEvidence",
    "NotAValidator",
    "WrongProposer",
    "InvalidSignature",
]
