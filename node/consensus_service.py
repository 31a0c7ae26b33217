"""The consensus service: the trio driver of `consensus.bft.TendermintMachine`.

Owns what the pure machine leaves to its driver: real timers for
`ScheduleTimeout`, gossip of proposals (which carry their block) and votes on
the p2p topics, building the block this validator proposes (`chain.builder`
over the mempool), judging proposed blocks by executing them on a scratch
state, persisting `get_persisted_state()` to the datadir *before* sending
anything the machine signed (so a restart never double-signs), importing the
decided block with its commit and moving to the next height with that
height's validator set and proposer schedule.

Every machine call and the handling of its outputs is synchronous, so in
trio's single thread they are atomic: no lock is needed between gossip,
timers and block sync (which imports through the same `ChainImporter`).

Liveness helpers: a validator that waits past a timeout pulls the current
height's messages from its peers (`consensus_messages`), and a peer that
reports a higher height makes the node run block sync.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import rlp
import trio

from chain.blocks import Block
from chain.builder import build_block
from chain.chain import Chain, KnownBlock
from chain.exceptions import ChainError
from chain.transition import execute_block
from consensus.bft import (
    BroadcastProposal,
    BroadcastVote,
    Decide,
    PersistedState,
    ProposalReceived,
    RecordEvidence,
    RequestValidation,
    RequestValue,
    ScheduleTimeout,
    Step,
    TendermintMachine,
    TimeoutConfig,
    TimeoutFired,
    ValueReady,
    VoteReceived,
    BlockVerdict,
)
from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet, get_epoch_start
from consensus.votes import (
    EMPTY_COMMIT,
    Commit,
    ConsensusError,
    Proposal,
    Vote,
    validate_commit,
    validate_proposal_signature,
    validate_vote_signature,
)
from node.exceptions import CorruptConsensusState
from p2p import BadRequest, GossipMessage, P2PError, Topic, ValidationResult

logger = logging.getLogger("node.consensus")

METHOD_CONSENSUS_MESSAGES = "consensus_messages"
METHOD_GET_COMMIT = "get_commit"
METHOD_GET_CANDIDATE = "get_candidate"
KIND_PROPOSAL = 1
KIND_VOTE = 2
PERSISTED_STATE_FILE = "consensus_state.rlp"
FUTURE_HEIGHTS_ACCEPTED = 2
MAX_CLOCK_DRIFT_MS = 15_000
PULL_TIMEOUT = 2.0  # seconds a peer has to answer consensus_messages  # how far ahead of our clock a proposed block's timestamp may be  # gossip this far ahead is forwarded (peers may be a block ahead of us)


# --- importing blocks (shared with block sync) ----------------------------------------------

class ChainImporter:
    """The one writer of the chain: imports a block and tells everyone who follows the head."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.listeners: list[Callable[[Block], None]] = []

    def add_listener(self, listener: Callable[[Block], None]) -> None:
        self.listeners.append(listener)

    def import_block(self, block: Block, commit: Commit | None = None) -> bool:
        """Import on top of the head; False if already known. Raises a ChainError for an invalid block."""
        try:
            self.chain.import_block(block, commit)
        except KnownBlock:
            return False
        for listener in self.listeners:
            try:
                listener(block)
            except Exception:
                # The block is committed; one follower's bug must not stop the others (or consensus).
                logger.exception("block listener failed height=%d listener=%r", block.header.number, listener)
        return True


# --- the persisted machine state ------------------------------------------------------------

def encode_persisted_state(state: PersistedState) -> bytes:
    # RLP has no negatives or None: rounds are stored +1, a missing value as b"".
    return rlp.encode([
        state.height, state.round, int(state.step),
        state.locked_value or b"", state.locked_round + 1,
        state.valid_value or b"", state.valid_round + 1,
        [rlp.encode(vote) for vote in state.own_votes],
        [rlp.encode(proposal) for proposal in state.own_proposals],
    ])


def decode_persisted_state(encoded: bytes) -> PersistedState:
    fields = rlp.decode(encoded)
    height, round_, step, locked_round, valid_round = (int.from_bytes(fields[i], "big") for i in (0, 1, 2, 4, 6))
    return PersistedState(
        height=height, round=round_, step=Step(step),
        locked_value=fields[3] or None, locked_round=locked_round - 1,
        valid_value=fields[5] or None, valid_round=valid_round - 1,
        own_votes=tuple(rlp.decode(v, sedes=Vote) for v in fields[7]),
        own_proposals=tuple(rlp.decode(p, sedes=Proposal) for p in fields[8]),
    )


class PersistedStateFile:
    """The machine state in the datadir, replaced atomically and fsynced before any signed message leaves."""

    def __init__(self, datadir: Path) -> None:
        self.path = Path(datadir) / PERSISTED_STATE_FILE

    def load(self) -> PersistedState | None:
        if not self.path.exists():
            return None
        try:
            return decode_persisted_state(self.path.read_bytes())
        except (rlp.exceptions.RLPException, ValueError, IndexError, TypeError) as error:
            # Never guess: starting from nothing could sign a second vote where one was already signed.
            raise CorruptConsensusState(f"cannot read {self.path}: {error}", got=str(self.path),
                                        expected="the file this node wrote; move it away only if you are sure "
                                                 "this validator signs nowhere else") from None

    def save(self, state: PersistedState) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(encode_persisted_state(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


# --- gossip payloads --------------------------------------------------------------------------

def encode_proposal_message(proposal: Proposal, block: Block) -> bytes:
    return rlp.encode([rlp.encode(proposal), rlp.encode(block)])


def decode_proposal_message(payload: bytes) -> tuple[Proposal, Block]:
    """Raises rlp's errors (or ValueError) for junk; the caller rejects the sender's message."""
    encoded_proposal, encoded_block = rlp.decode(payload)
    proposal = rlp.decode(encoded_proposal, sedes=Proposal)
    block = rlp.decode(encoded_block, sedes=Block)
    if block.hash != proposal.block_hash:
        raise ValueError("proposal's block does not hash to its block_hash")
    return proposal, block


def now_ms() -> int:
    return int(time.time() * 1000)


class ConsensusService:
    def __init__(
        self,
        chain: Chain,
        importer: ChainImporter,
        mempool,
        p2p,
        private_key: bytes,
        datadir: Path,
        *,
        timeouts: TimeoutConfig = TimeoutConfig(),
        block_interval: float = 0.5,
        on_behind: Callable[[], None] = lambda: None,
        on_evidence: Callable[[Vote, Vote], None] = lambda a, b: None,
    ) -> None:
        self.chain = chain
        self.importer = importer
        self.mempool = mempool
        self.p2p = p2p
        self.machine = TendermintMachine(private_key, chain.genesis.chain_id, timeouts)
        self.persisted = PersistedStateFile(datadir)
        self.saved = self.persisted.load()  # read now: a corrupt file stops the node before it starts
        self.block_interval = block_interval
        self.on_behind = on_behind
        self.on_evidence = on_evidence
        self.candidates: dict[bytes, Block] = {}
        self.schedules: dict[tuple[bytes, int], ProposerSchedule] = {}
        # (height, round, seconds from the first proposal of the height to its decision): finality latency,
        # not counting the block interval a proposer waits before building.
        self.decisions: list[tuple[int, int, float]] = []
        self.height_started_at = 0.0
        self.proposal_seen_at: float | None = None
        self._nursery: trio.Nursery | None = None
        importer.add_listener(self.on_block_imported)

    @property
    def address(self) -> bytes:
        return self.machine.address

    @property
    def is_validator(self) -> bool:
        return self.machine.validator_set is not None and self.address in self.machine.validator_set

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        proposals = self.p2p.subscribe(Topic.PROPOSALS, self.validate_proposal_gossip)
        votes = self.p2p.subscribe(Topic.VOTES, self.validate_vote_gossip)
        self.p2p.register_handler(METHOD_CONSENSUS_MESSAGES, self.serve_consensus_messages)
        self.p2p.register_handler(METHOD_GET_COMMIT, self.serve_commit)
        self.p2p.register_handler(METHOD_GET_CANDIDATE, self.serve_candidate)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.enter_height(self.chain.height + 1, restore=True)
            nursery.start_soon(self.consume_proposals, proposals)
            nursery.start_soon(self.consume_votes, votes)
            task_status.started()

    def get_schedule(self, height: int, validator_set: ValidatorSet, validators_hash: bytes) -> ProposerSchedule:
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
        self.candidates = {h: b for h, b in self.candidates.items() if b.header.number >= height}
        self.height_started_at = trio.current_time()
        self.proposal_seen_at = None
        saved, self.saved = (self.saved if restore else None), None
        if saved is not None and saved.height == height:
            logger.info("consensus resumes height=%d round=%d step=%s", height, saved.round, saved.step.name)
            self.handle(self.machine.restore(saved, validator_set, schedule))
        else:
            self.handle(self.machine.start_height(height, validator_set, schedule))

    def on_block_imported(self, block: Block) -> None:
        """The head moved (a decision of ours, or block sync): follow it if consensus was behind."""
        if self._nursery is not None and block.header.number >= self.machine.height:
            self.enter_height(block.header.number + 1)

    # --- events in ------------------------------------------------------------------------

    def process(self, event, sender: bytes | None = None) -> None:
        try:
            outputs = self.machine.process(event)
        except ConsensusError as error:
            logger.info("consensus message refused sender=%s error=%s", sender.hex()[:16] if sender else "-", error)
            if sender is not None:
                self.p2p.apply_penalty(sender, 10, f"bad consensus message: {error}")
            return
        self.handle(outputs)

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
        self.note_height_seen(proposal.height)
        self.note_proposal_time(proposal.height)
        self.candidates.setdefault(block.hash, block)
        self.process(ProposalReceived(proposal), sender)

    def on_vote_payload(self, payload: bytes, sender: bytes | None) -> None:
        try:
            vote = rlp.decode(payload, sedes=Vote)
        except Exception:
            return
        self.note_height_seen(vote.height)
        self.process(VoteReceived(vote), sender)

    def note_proposal_time(self, height: int) -> None:
        if height == self.machine.height and self.proposal_seen_at is None:
            self.proposal_seen_at = trio.current_time()

    def note_height_seen(self, height: int) -> None:
        # The machine buffers only the next height; anything beyond means we missed a decision.
        if height > self.machine.height + 1:
            self.on_behind()

    def validate_proposal_gossip(self, message: GossipMessage) -> ValidationResult:
        try:
            proposal, _block = decode_proposal_message(message.payload)
            validate_proposal_signature(proposal, self.chain.genesis.chain_id)
        except Exception:
            return ValidationResult.REJECT
        return self.judge_height(proposal.height)

    def validate_vote_gossip(self, message: GossipMessage) -> ValidationResult:
        try:
            vote = rlp.decode(message.payload, sedes=Vote)
            validate_vote_signature(vote, self.chain.genesis.chain_id)
        except Exception:
            return ValidationResult.REJECT
        return self.judge_height(vote.height)

    def judge_height(self, height: int) -> ValidationResult:
        if height <= self.chain.height or height > self.machine.height + FUTURE_HEIGHTS_ACCEPTED:
            return ValidationResult.IGNORE
        return ValidationResult.ACCEPT

    # --- outputs --------------------------------------------------------------------------

    def handle(self, outputs: Sequence[Any]) -> None:
        if any(isinstance(o, (BroadcastProposal, BroadcastVote, Decide)) for o in outputs):
            # Before anything signed leaves this process, and before the decided block is
            # imported: after a crash the machine resumes from exactly this.
            self.persisted.save(self.machine.get_persisted_state())
        for output in outputs:
            if isinstance(output, BroadcastProposal):
                self.broadcast_proposal(output.proposal)
            elif isinstance(output, BroadcastVote):
                self.p2p.publish(Topic.VOTES, rlp.encode(output.vote))
            elif isinstance(output, ScheduleTimeout):
                self._nursery.start_soon(self.fire_timeout, output)
            elif isinstance(output, RequestValue):
                self._nursery.start_soon(self.propose_value, output.height, output.round)
            elif isinstance(output, RequestValidation):
                self.validate_candidate(output.height, output.block_hash)
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

    async def fire_timeout(self, timeout: ScheduleTimeout) -> None:
        await trio.sleep(timeout.duration_ms / 1000)
        if (timeout.height, timeout.round) == (self.machine.height, self.machine.round):
            # Still waiting where this timeout was set: maybe we missed messages; ask peers.
            self._nursery.start_soon(self.pull_consensus_messages)
        self.process(TimeoutFired(timeout.height, timeout.round, timeout.step))

    # --- proposing ------------------------------------------------------------------------

    async def propose_value(self, height: int, round: int) -> None:
        # Blocks no closer than block_interval: an empty chain should not spin as fast as the CPU allows.
        wait = self.height_started_at + self.block_interval - trio.current_time() if round == 0 else 0
        if wait > 0:
            await trio.sleep(wait)
        if (height, round) != (self.machine.height, self.machine.round) or height != self.chain.height + 1:
            return
        block = self.build_candidate()
        if block is None:
            return
        self.candidates[block.hash] = block
        self.note_proposal_time(height)
        self.process(ValueReady(height, round, block.hash))

    def build_candidate(self) -> Block | None:
        chain = self.chain
        parent = chain.head
        last_commit = EMPTY_COMMIT if parent.number == 0 else chain.get_commit(parent.hash)
        if last_commit is None:
            logger.info("cannot propose: no commit for head %d yet", parent.number)
            self.on_behind()
            return None
        state = chain.scratch_state(parent.state_root)
        raw_txs = self.mempool.select(chain.genesis.params.max_block_txs)
        timestamp = max(now_ms(), parent.timestamp_ms + 1)
        built = build_block(state, parent, raw_txs, timestamp, self.address, last_commit, chain.genesis, chain.rules)
        self.mempool.drop_invalid(built.skipped)
        logger.info("built block height=%d txs=%d skipped=%d", parent.number + 1, len(built.transactions),
                    len(built.skipped))
        return built.block

    # --- judging --------------------------------------------------------------------------

    def validate_candidate(self, height: int, block_hash: bytes) -> None:
        block = self.candidates.get(block_hash)
        if block is None:
            self._nursery.start_soon(self.fetch_candidate, height, block_hash)
            return
        self.process(BlockVerdict(height, block_hash, self.is_valid_block(block)))

    def is_valid_block(self, block: Block) -> bool:
        chain = self.chain
        parent = chain.head
        if block.header.number != parent.number + 1:
            return False  # judged later against the right parent, if we ever get there
        if block.header.timestamp_ms > now_ms() + MAX_CLOCK_DRIFT_MS:
            # A far-future timestamp would drag every later block's time with it.
            logger.warning("proposed block from the future height=%d timestamp_ms=%d", block.header.number,
                           block.header.timestamp_ms)
            return False
        try:
            chain.validate_parent_commit(block, parent)
            execute_block(chain.scratch_state(parent.state_root), parent, block, chain.genesis,
                          chain.rules)
        except ChainError as error:
            logger.warning("invalid proposed block height=%d error=%s", block.header.number, error)
            return False
        return True

    async def fetch_candidate(self, height: int, block_hash: bytes) -> None:
        for peer in self.p2p.get_peers():
            try:
                encoded = await self.p2p.request(peer.node_id, METHOD_GET_CANDIDATE, [block_hash])
                block = rlp.decode(encoded, sedes=Block) if encoded else None
            except (P2PError, rlp.exceptions.RLPException):
                continue
            if block is not None and block.hash == block_hash:
                self.candidates[block_hash] = block
                if height == self.machine.height:
                    self.validate_candidate(height, block_hash)
                return

    # --- deciding -------------------------------------------------------------------------

    def on_decide(self, decision: Decide) -> None:
        block = self.candidates.get(decision.block_hash)
        since = self.proposal_seen_at if self.proposal_seen_at is not None else self.height_started_at
        self.decisions.append((decision.height, decision.round, trio.current_time() - since))
        del self.decisions[:-1000]
        if self.chain.height >= decision.height:
            self.store_commit_if_head(decision)  # block sync got there first
            if self.machine.height == decision.height:
                self.enter_height(self.chain.height + 1)
            return
        if block is None:
            logger.warning("decided a block we do not hold height=%d; syncing", decision.height)
            self.on_behind()
            return
        try:
            self.importer.import_block(block, decision.commit)  # on_block_imported enters the next height
        except ChainError as error:
            # We judged this block valid before voting, so this is a local fault (disk, a bug): say so
            # loudly and let block sync fetch the chain's view rather than take the node down.
            logger.error("decided block failed to import height=%d error=%s", decision.height, error)
            self.on_behind()
            return
        logger.info("finalised height=%d round=%d txs=%d hash=%s", decision.height, decision.round,
                    len(block.transactions), block.hash.hex()[:16])

    def store_commit_if_head(self, decision: Decide) -> None:
        if self.chain.head.hash == decision.block_hash and self.chain.get_commit(decision.block_hash) is None:
            self.chain.store_commit(decision.block_hash, decision.commit)

    # --- serving peers and catching up ----------------------------------------------------

    def get_height_messages(self) -> list[list]:
        messages = []
        for round_ in range(self.machine.round + 1):
            for message in self.machine.get_round_messages(round_):
                if isinstance(message, Proposal):
                    block = self.candidates.get(message.block_hash)
                    if block is not None:
                        messages.append([KIND_PROPOSAL, encode_proposal_message(message, block)])
                else:
                    messages.append([KIND_VOTE, rlp.encode(message)])
        return messages

    async def serve_consensus_messages(self, node_id: bytes, params: Any) -> list:
        """[our height, messages of our current height] (our height alone tells a laggard to sync)."""
        return [self.machine.height, self.get_height_messages()]

    async def serve_commit(self, node_id: bytes, params: Any) -> bytes:
        if not (isinstance(params, list) and len(params) == 1 and isinstance(params[0], bytes)):
            raise BadRequest("get_commit params must be [block_hash]", got=params, expected="[bytes32]")
        try:
            commit = self.chain.get_commit(params[0])
        except ChainError:
            return b""
        return rlp.encode(commit) if commit is not None else b""

    async def serve_candidate(self, node_id: bytes, params: Any) -> bytes:
        block_hash = params[0] if isinstance(params, list) and params else None
        block = self.candidates.get(block_hash) if isinstance(block_hash, bytes) else None
        return rlp.encode(block) if block is not None else b""

    async def pull_consensus_messages(self) -> None:
        """Ask every peer at once (one slow peer must not delay the others) for its current height's messages."""
        async with trio.open_nursery() as nursery:
            for peer in self.p2p.get_peers():
                nursery.start_soon(self.pull_from_peer, peer.node_id)

    async def pull_from_peer(self, node_id: bytes) -> None:
        try:
            height, messages = await self.p2p.request(node_id, METHOD_CONSENSUS_MESSAGES, [], timeout=PULL_TIMEOUT)
        except (P2PError, TypeError, ValueError):
            return
        if not isinstance(height, int):
            return
        if height > self.machine.height:
            self.on_behind()
        elif height == self.machine.height and isinstance(messages, list):
            self.process_pulled(messages, node_id)

    def process_pulled(self, messages: list, sender: bytes) -> None:
        for item in messages[:1000]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes)):
                continue
            if item[0] == KIND_PROPOSAL:
                self.on_proposal_payload(item[1], sender)
            elif item[0] == KIND_VOTE:
                self.on_vote_payload(item[1], sender)

    async def fetch_head_commit(self) -> bool:
        """After block sync: the head's commit (needed to propose on it) from any peer that has it."""
        head = self.chain.head
        if head.number == 0 or self.chain.get_commit(head.hash) is not None:
            return True
        validator_set = self.chain.get_validator_set(head.validators_hash)
        for peer in self.p2p.get_peers():
            try:
                encoded = await self.p2p.request(peer.node_id, METHOD_GET_COMMIT, [head.hash])
                if not encoded:
                    continue
                commit = rlp.decode(encoded, sedes=Commit)
                validate_commit(commit, validator_set, self.chain.genesis.chain_id, head.number, head.hash)
            except (P2PError, ConsensusError, rlp.exceptions.RLPException):
                continue
            if self.chain.head.hash == head.hash:
                self.chain.store_commit(head.hash, commit)
            return True
        return False

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
            "isValidator": self.is_validator,
            "isProposer": self.is_proposer(),
            "validators": len(self.machine.validator_set) if self.machine.validator_set is not None else 0,
        }
