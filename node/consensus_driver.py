"""The round driver: runs `consensus.bft.TendermintMachine` on real time, real gossip and this node's chain.

Owns the machine's inputs and the handling of its outputs: proposals and votes
from the p2p topics (and from peers pulled after a timeout), timers for
`ScheduleTimeout`, a block to propose for `RequestValue`, a verdict for
`RequestValidation`, gossip for `BroadcastProposal`/`BroadcastVote`, and for
`Decide` the import and the move to the next height with that height's
validator set and proposer schedule. It also keeps the finality timings the
node reports.

Timers are paced (`consensus.pacing`, unless the timeouts are static): each
timeout the machine asks for is shortened from what this node observed, namely
when proposals arrive after the block interval and which validators were heard
from lately, so a round whose proposer is down gives up in a fraction of a
second. The machine's values are the ceilings; safety does not depend on them.

The machine's state is persisted before any output that carries a signature
leaves this process, and before a decided block is imported: after a crash
the machine resumes from exactly that, so it never signs twice.

Every machine call and the handling of its outputs is synchronous, so in
trio's single thread they are atomic: no lock is needed between gossip,
timers and block sync (which imports through the same `ChainImporter` and
moves this driver on through `on_block_imported`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import trio

from chain.blocks import Block
from chain.chain import Chain
from consensus.bft import (
    BlockVerdict,
    BroadcastProposal,
    BroadcastVote,
    Decide,
    ProposalReceived,
    RecordEvidence,
    RequestValidation,
    RequestValue,
    ScheduleTimeout,
    Step,
    TendermintMachine,
    TimeoutFired,
    ValueReady,
    VoteReceived,
)
from consensus.pacing import (
    PacedTimeout,
    Pacer,
    compute_paced_timeout,
    process_decided_height,
)
from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet, get_epoch_start
from consensus.votes import ConsensusError, Proposal, Vote
from node.chain_importer import ChainImporter
from node.consensus_blocks import CandidateBlocks, build_candidate, is_valid_block
from node.consensus_persistence import DecisionOutcome, PersistedStateFile, apply_decision
from node.consensus_serving import ConsensusFetcher
from node.consensus_wire import (
    KIND_PROPOSAL,
    KIND_VOTE,
    compute_proposal_verdict,
    compute_vote_verdict,
    decode_proposal_message,
    decode_vote_message,
    encode_proposal_message,
    encode_vote_message,
    iter_pulled_messages,
)
from p2p import GossipMessage, Topic, ValidationResult

logger = logging.getLogger("node.consensus")

MAX_DECISIONS_KEPT = 1000
# Seconds after a height began that a proposer holding a newly arrived inference request builds, instead of
# the block interval: the request's client waits for the block that assigns its worker (node.gateway).
REQUEST_BUILD_DELAY = 0.05
# Outputs that may happen only once the machine's state is on disk.
SIGNED_OUTPUTS = (BroadcastProposal, BroadcastVote, Decide)


class RoundDriver:
    """Feeds the machine and carries out what it asks for, on the node's trio thread."""

    def __init__(
        self,
        chain: Chain,
        importer: ChainImporter,
        mempool,
        p2p,
        machine: TendermintMachine,
        candidates: CandidateBlocks,
        persisted: PersistedStateFile,
        fetcher: ConsensusFetcher,
        *,
        block_interval: float,
        on_behind: Callable[[], None],
        on_evidence: Callable[[Vote, Vote], None],
        pacer: Pacer | None = None,
    ) -> None:
        self.chain = chain
        self.importer = importer
        self.mempool = mempool
        self.p2p = p2p
        self.machine = machine
        self.candidates = candidates
        self.persisted = persisted
        self.saved = persisted.load()  # read now: a corrupt file stops the node before it starts
        self.fetcher = fetcher
        self.block_interval = block_interval
        self.on_behind = on_behind
        self.on_evidence = on_evidence
        self.pacer = pacer
        self.reported_absent: set[bytes] = set()  # proposers whose turns we time out fast, as last logged
        self.schedules: dict[tuple[bytes, int], ProposerSchedule] = {}
        # (height, round, seconds from the first proposal of the height to its decision): finality latency,
        # not counting the block interval a proposer waits before building.
        self.decisions: list[tuple[int, int, float]] = []
        self.height_started_at = 0.0
        self.previous_height_started_at = 0.0
        self.proposal_seen_at: float | None = None
        self._nursery: trio.Nursery | None = None
        # An inference request entered the mempool since this height began: a client waits for its block.
        self.request_waiting = False
        self.request_arrived = trio.Event()
        mempool.request_listeners.append(self.on_request_arrived)

    @property
    def address(self) -> bytes:
        return self.machine.address

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        proposals = self.p2p.subscribe(Topic.PROPOSALS, self.get_proposal_verdict)
        votes = self.p2p.subscribe(Topic.VOTES, self.get_vote_verdict)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.enter_height(self.chain.height + 1, restore=True)
            nursery.start_soon(self.consume_proposals, proposals)
            nursery.start_soon(self.consume_votes, votes)
            task_status.started()

    def get_schedule(self, height: int, validator_set: ValidatorSet, validators_hash: bytes) -> ProposerSchedule:
        # Kept per (set, epoch start): a schedule remembers the priorities it has walked, so a new one
        # each height would walk again from the epoch start.
        epoch_start = get_epoch_start(height, self.chain.genesis.params.epoch_length)
        key = (validators_hash, epoch_start)
        schedule = self.schedules.get(key)
        if schedule is None:
            schedule = self.schedules[key] = ProposerSchedule(validator_set, epoch_start)
        return schedule

    def enter_height(self, height: int, *, restore: bool = False) -> None:
        """Start (or, after a restart, resume) consensus on `height` = head + 1."""
        validators_hash = self.chain.head.next_validators_hash
        validator_set = self.chain.get_validator_set(validators_hash)
        schedule = self.get_schedule(height, validator_set, validators_hash)
        self.candidates.drop_below(height)
        self.previous_height_started_at, self.height_started_at = self.height_started_at, trio.current_time()
        self.proposal_seen_at = None
        self.request_waiting = False
        saved, self.saved = (self.saved if restore else None), None
        if saved is not None and saved.height == height:
            logger.info("consensus resumes height=%d round=%d step=%s", height, saved.round, saved.step.name)
            self.process_outputs(self.machine.restore(saved, validator_set, schedule))
        else:
            self.process_outputs(self.machine.start_height(height, validator_set, schedule))

    def on_block_imported(self, block: Block) -> None:
        """The head moved (a decision of ours, or block sync): follow it if consensus was behind."""
        if self.pacer is not None and block.header.number > 1:
            # The parent's commit names validators that were up then (the chain checked the signatures).
            self.pacer.on_heard((sig.validator for sig in block.last_commit.signatures), block.header.number - 1)
        if self._nursery is not None and block.header.number >= self.machine.height:
            self.enter_height(block.header.number + 1)

    # --- events in ------------------------------------------------------------------------

    def process_event(self, event, sender: bytes | None = None) -> None:
        try:
            outputs = self.machine.process(event)
        except ConsensusError as error:
            logger.info("consensus message refused sender=%s error=%s", sender.hex()[:16] if sender else "-", error)
            if sender is not None:
                self.p2p.apply_penalty(sender, 10, f"bad consensus message: {error}")
            return
        self.process_outputs(outputs)

    def get_proposal_verdict(self, message: GossipMessage) -> ValidationResult:
        return compute_proposal_verdict(message.payload, self.chain.genesis.chain_id, self.chain.height,
                                        self.machine.height, self.get_known_validators)

    def get_vote_verdict(self, message: GossipMessage) -> ValidationResult:
        return compute_vote_verdict(message.payload, self.chain.genesis.chain_id, self.chain.height,
                                    self.machine.height, self.get_known_validators)

    def get_known_validators(self, height: int) -> ValidatorSet | None:
        """The set signing `height` if it is the one consensus runs on now (sets change only at epoch starts)."""
        current = self.machine.validator_set
        epoch_length = self.chain.genesis.params.epoch_length
        if current is None or get_epoch_start(height, epoch_length) != get_epoch_start(self.machine.height,
                                                                                        epoch_length):
            return None
        return current

    async def consume_proposals(self, channel) -> None:
        async for message in channel:
            self.on_proposal_payload(message.payload, message.sender)

    async def consume_votes(self, channel) -> None:
        async for message in channel:
            self.on_vote_payload(message.payload, message.sender)

    def on_proposal_payload(self, payload: bytes, sender: bytes | None) -> None:
        try:
            proposal, block = decode_proposal_message(payload)
        except Exception:
            return
        self.on_height_seen(proposal.height)
        self.on_proposal_seen(proposal.height)
        if self.pacer is not None and self.is_expected_proposal(proposal):
            self.pacer.on_proposal(proposal.height, proposal.round, get_now_ms())
        self.candidates.add(block)
        self.process_event(ProposalReceived(proposal), sender)

    def on_vote_payload(self, payload: bytes, sender: bytes | None) -> None:
        try:
            vote = decode_vote_message(payload)
        except Exception:
            return
        self.on_height_seen(vote.height)
        self.process_event(VoteReceived(vote), sender)

    def on_pulled_messages(self, messages: list, sender: bytes) -> None:
        for kind, payload in iter_pulled_messages(messages):
            if kind == KIND_PROPOSAL:
                self.on_proposal_payload(payload, sender)
            elif kind == KIND_VOTE:
                self.on_vote_payload(payload, sender)

    def is_expected_proposal(self, proposal: Proposal) -> bool:
        """From the round's proposer at our height (gossip checked its signature): a delay worth sampling."""
        machine = self.machine
        # Rounds ahead of ours are never sampled (and the schedule's cost grows with the round a peer names).
        if proposal.height != machine.height or proposal.round > machine.round or machine.schedule is None:
            return False
        return proposal.proposer == machine.schedule.get_proposer(proposal.height, proposal.round)

    def on_proposal_seen(self, height: int) -> None:
        if height == self.machine.height and self.proposal_seen_at is None:
            self.proposal_seen_at = trio.current_time()

    def on_height_seen(self, height: int) -> None:
        # The machine buffers only the next height; anything beyond means we missed a decision.
        if height > self.machine.height + 1:
            self.on_behind()

    # --- outputs --------------------------------------------------------------------------

    def process_outputs(self, outputs: Sequence[Any]) -> None:
        if any(isinstance(o, SIGNED_OUTPUTS) for o in outputs):
            # Before anything signed leaves this process, and before the decided block is
            # imported: after a crash the machine resumes from exactly this.
            self.persisted.save(self.machine.get_persisted_state())
        for output in outputs:
            if isinstance(output, BroadcastProposal):
                self.broadcast_proposal(output.proposal)
            elif isinstance(output, BroadcastVote):
                self.p2p.publish(Topic.VOTES, encode_vote_message(output.vote))
            elif isinstance(output, ScheduleTimeout):
                self._nursery.start_soon(self.run_timer, output, self.get_timer(output))
            elif isinstance(output, RequestValue):
                self._nursery.start_soon(self.on_value_requested, output.height, output.round)
            elif isinstance(output, RequestValidation):
                self.on_validation_requested(output.height, output.block_hash)
            elif isinstance(output, Decide):
                self.on_decide(output)
            elif isinstance(output, RecordEvidence):
                logger.warning("double sign seen validator=%s", output.vote_a.validator.hex())
                self.on_evidence(output.vote_a, output.vote_b)

    def broadcast_proposal(self, proposal: Proposal) -> None:
        block = self.candidates.get(proposal.block_hash)
        if block is None:
            # Restored from disk without its block: the proposal alone helps nobody judge it.
            logger.info("no block for own proposal height=%d round=%d", proposal.height, proposal.round)
            return
        self.p2p.publish(Topic.PROPOSALS, encode_proposal_message(proposal, block))

    def get_build_at(self) -> float:
        """When a proposer may build at the current height: no sooner than the block interval after it began.

        An inference request that arrived during the height shortens the wait to
        `REQUEST_BUILD_DELAY`: its client's response waits for the block that
        assigns its worker (node.gateway). Only arrivals count, so a request that
        cannot be included (a nonce gap) speeds up one block, never all of them;
        and never sooner than an interval after the previous height began, so
        requests arriving all the time at most double the block rate.
        """
        normal = self.height_started_at + self.block_interval
        if not self.request_waiting:
            return normal
        # Never more than two blocks per interval, so deadlines counted in blocks (annotations) keep at least
        # half their time however many chat requests arrive.
        soon = max(self.height_started_at + REQUEST_BUILD_DELAY, self.previous_height_started_at + self.block_interval)
        return min(normal, soon)

    def on_request_arrived(self) -> None:
        self.request_waiting = True
        self.request_arrived.set()

    async def wait_to_build(self) -> None:
        """Until `get_build_at`, woken early when an inference request arrives."""
        while (wait := self.get_build_at() - trio.current_time()) > 0:
            if self.request_arrived.is_set():
                self.request_arrived = trio.Event()
            with trio.move_on_after(wait):
                await self.request_arrived.wait()

    def get_timer(self, timeout: ScheduleTimeout) -> PacedTimeout:
        """How long to wait for the machine's `timeout`: its own value, or the paced one."""
        if self.pacer is None or timeout.height != self.machine.height:
            return PacedTimeout(timeout.duration_ms, False)
        wait_ms = 0
        if timeout.step == Step.PROPOSE:
            # The proposer waits out the block interval before it builds; the propose timer counts from then.
            now = trio.current_time()
            build_at = max(now, self.get_build_at())
            self.pacer.on_round_started(timeout.height, timeout.round, to_ms(build_at))
            wait_ms = to_ms(build_at - now)
        timer = compute_paced_timeout(self.pacer, self.machine, timeout, wait_ms)
        if timeout.step == Step.PROPOSE:
            self.report_proposer(timeout, timer)
        return timer

    def report_proposer(self, timeout: ScheduleTimeout, timer: PacedTimeout) -> None:
        """One log line when a proposer starts being treated as down, and one when it is back."""
        proposer = self.machine.schedule.get_proposer(timeout.height, timeout.round)
        if timer.absent_proposer and proposer not in self.reported_absent:
            self.reported_absent.add(proposer)
            logger.info("proposer seems down, its turns time out fast proposer=%s height=%d round=%d timeout_ms=%d",
                        proposer.hex(), timeout.height, timeout.round, timer.duration_ms)
        elif not timer.absent_proposer and proposer in self.reported_absent:
            self.reported_absent.discard(proposer)
            logger.info("proposer heard from again proposer=%s height=%d", proposer.hex(), timeout.height)

    async def run_timer(self, timeout: ScheduleTimeout, timer: PacedTimeout) -> None:
        await trio.sleep(timer.duration_ms / 1000)
        machine = self.machine
        if (timeout.height, timeout.round) == (machine.height, machine.round):
            if self.pacer is not None and timeout.step == Step.PROPOSE and machine.step == Step.PROPOSE:
                self.pacer.on_propose_missed(timeout.height, timeout.round, timer.absent_proposer)
            if not timer.absent_proposer and timer.duration_ms > 0:
                # Still waiting where this timeout was set: maybe we missed messages; ask peers. (Not for
                # a proposer known to be down, nor for a round that a nil quorum closed: nothing is missing.)
                self._nursery.start_soon(self.fetcher.pull_height_messages, self.on_pulled_messages)
        self.process_event(TimeoutFired(timeout.height, timeout.round, timeout.step))

    # --- proposing and judging --------------------------------------------------------------

    async def on_value_requested(self, height: int, round: int) -> None:
        # Blocks no closer than block_interval: an empty chain should not spin as fast as the CPU allows.
        # In every round: a round whose proposer was down may end well within the interval.
        await self.wait_to_build()
        if (height, round) != (self.machine.height, self.machine.round) or height != self.chain.height + 1:
            return
        block = build_candidate(self.chain, self.mempool, self.address)
        if block is None:
            self.on_behind()  # block sync fetches the head's commit
            return
        self.candidates.add(block)
        self.on_proposal_seen(height)
        self.process_event(ValueReady(height, round, block.hash))

    def on_validation_requested(self, height: int, block_hash: bytes) -> None:
        block = self.candidates.get(block_hash)
        if block is None:
            self._nursery.start_soon(self.fetch_candidate, height, block_hash)
            return
        self.process_event(BlockVerdict(height, block_hash, is_valid_block(self.chain, block)))

    async def fetch_candidate(self, height: int, block_hash: bytes) -> None:
        block = await self.fetcher.fetch_candidate(block_hash)
        if block is None:
            return
        self.candidates.add(block)
        if height == self.machine.height:
            self.on_validation_requested(height, block_hash)

    # --- deciding -------------------------------------------------------------------------

    def on_decide(self, decision: Decide) -> None:
        since = self.proposal_seen_at if self.proposal_seen_at is not None else self.height_started_at
        self.decisions.append((decision.height, decision.round, trio.current_time() - since))
        del self.decisions[:-MAX_DECISIONS_KEPT]
        if self.pacer is not None and self.machine.height == decision.height:
            process_decided_height(self.pacer, self.machine)  # before the machine leaves the height
        outcome = apply_decision(self.chain, self.importer, decision, self.candidates.get(decision.block_hash))
        if outcome is DecisionOutcome.ALREADY_IMPORTED and self.machine.height == decision.height:
            self.enter_height(self.chain.height + 1)
        elif outcome in (DecisionOutcome.MISSING_BLOCK, DecisionOutcome.IMPORT_FAILED):
            self.on_behind()

    # --- status ---------------------------------------------------------------------------

    def is_validator(self) -> bool:
        return self.machine.validator_set is not None and self.address in self.machine.validator_set

    def is_proposer(self) -> bool:
        """Whether this node proposes the round consensus is in now."""
        machine = self.machine
        if machine.schedule is None:
            return False
        return machine.schedule.get_proposer(machine.height, machine.round) == self.address

    def get_status(self) -> dict:
        return {
            "consensusHeight": self.machine.height,
            "round": self.machine.round,
            "step": self.machine.step.name.lower(),
            "isValidator": self.is_validator(),
            "isProposer": self.is_proposer(),
            "validators": len(self.machine.validator_set) if self.machine.validator_set is not None else 0,
        }


def to_ms(seconds: float) -> int:
    return round(seconds * 1000)


def get_now_ms() -> int:
    return to_ms(trio.current_time())
