"""The deterministic discrete-event simulator that drives `consensus.bft` machines.

It owns simulated time (a heap of events), the network model (seeded delays,
drops and partitions before GST, bounded delays after), the node driver that
turns machine outputs into messages and timers, crash/restart with the state a
real node persists, catch-up of lagging nodes, and the checks:

- agreement: no two honest nodes decide different blocks at one height;
- validity: an honest node only decides blocks its application accepts;
- liveness: with honest weight over 2/3, every honest node reaches the target
  height after GST (reported as `finalized_heights`);
- the ledger invariant after every committed block.

Everything random comes from one `random.Random(scenario.seed)`, and nothing
iterates a set of bytes, so a seed replays the same run exactly.
"""
from __future__ import annotations

import heapq
import random
import time
from dataclasses import dataclass, field
from typing import NamedTuple

from eth_utils import keccak

from consensus.bft import (
    BlockVerdict,
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
    TimeoutFired,
    ValueReady,
    VoteReceived,
)
from consensus.pacing import Pacer, compute_paced_timeout, process_decided_height
from consensus.proposer import ProposerSchedule
from consensus.sim.app import ApplicationAPI, InvalidProposerApp, LedgerApp
from consensus.sim.scenario import INVALID, Scenario
from consensus.validators import ValidatorSet, compute_validators_hash, get_epoch_start
from consensus.votes import EMPTY_COMMIT, Commit, ConsensusError, Proposal, Vote, get_address, get_commit_votes


SYNC_BATCH = 8


class ProposalMsg(NamedTuple):
    proposal: Proposal
    block: bytes


class VoteMsg(NamedTuple):
    vote: Vote


class DecisionMsg(NamedTuple):
    """Catch-up for a lagging node: the decided proposal, its block and the commit."""

    proposal: Proposal
    block: bytes
    commit: Commit


Message = ProposalMsg | VoteMsg | DecisionMsg


def get_message_height(msg: Message) -> int:
    if isinstance(msg, VoteMsg):
        return msg.vote.height
    return msg.proposal.height


def compute_private_key(seed: int, validator: int) -> bytes:
    return keccak(b"magicoin/sim/key" + seed.to_bytes(8, "big") + validator.to_bytes(4, "big"))


@dataclass
class Decision:
    height: int
    round: int
    block_hash: bytes


@dataclass
class SimNode:
    node_id: int
    validator: int
    private_key: bytes
    honest: bool
    app: ApplicationAPI
    machine: TendermintMachine
    alive: bool = True
    incarnation: int = 0
    persisted: PersistedState | None = None
    blocks: dict[bytes, bytes] = field(default_factory=dict)
    decided: dict[int, DecisionMsg] = field(default_factory=dict)
    decisions: list[Decision] = field(default_factory=list)
    last_progress: tuple[int, int, int] = (0, 0, 0)
    synced_to: dict[tuple[int, int], int] = field(default_factory=dict)  # (peer, height) -> time sent
    pending_decisions: dict[int, DecisionMsg] = field(default_factory=dict)  # catch-up ahead of our height
    pacer: Pacer | None = None  # adaptive timeouts (scenario.pacing); lost on a crash, like a real node's


@dataclass
class SimResult:
    finalized_heights: int
    safety_violations: int
    invariant_violations: int
    rounds_max: int
    messages: int
    validity_violations: int = 0
    agreement_violations: int = 0
    evidence_offenders: tuple[str, ...] = ()
    decided_heights_by_node: tuple[int, ...] = ()
    simulated_ms: int = 0
    events: int = 0
    machine_cpu_s: float = 0.0
    machine_calls: int = 0
    rejected_messages: int = 0
    liveness_ok: bool = False

    def get_summary(self) -> dict:
        """The CLI's contract: exactly these keys, in this order."""
        return {
            "finalized_heights": self.finalized_heights,
            "safety_violations": self.safety_violations,
            "invariant_violations": self.invariant_violations,
            "rounds_max": self.rounds_max,
            "messages": self.messages,
        }


class Simulation:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.rng = random.Random(scenario.seed)
        self.now = 0
        self._queue: list[tuple[int, int, str, tuple]] = []
        self._seq = 0
        self.messages = 0
        self.events = 0
        self.rejected = 0
        self.invariant_violations: list[str] = []
        self.validity_violations: list[str] = []
        self.evidence_offenders: dict[bytes, int] = {}
        self.machine_cpu_s = 0.0
        self.machine_calls = 0
        self.keys = [compute_private_key(scenario.seed, v) for v in range(len(scenario.weights))]
        self.addresses = [get_address(k) for k in self.keys]
        self.validator_set = ValidatorSet(zip(self.addresses, scenario.weights))
        self._schedules: dict[tuple[int, bytes], ProposerSchedule] = {}
        self.group_of = self._compute_groups()
        self.nodes = [self._create_node(i, v) for i, v in enumerate(scenario.get_node_validators())]

    # --- setup -----------------------------------------------------------------------

    def _compute_groups(self) -> dict[int, int]:
        return {node: g for g, group in enumerate(self.scenario.network.partitions) for node in group}

    def _create_node(self, node_id: int, validator: int) -> SimNode:
        kind = self.scenario.get_fault(validator)
        app_class = InvalidProposerApp if kind == INVALID else LedgerApp
        app = app_class(
            self.validator_set,
            self.scenario.chain_id,
            accounts=sorted(self.addresses),
            mempool_seed=self.scenario.seed * 1_000_003 + node_id,
            epoch_length=self.scenario.epoch_length,
        )
        machine = TendermintMachine(self.keys[validator], self.scenario.chain_id, self.scenario.timeouts)
        return SimNode(node_id, validator, self.keys[validator], kind is None, app, machine, pacer=self._make_pacer())

    def _make_pacer(self) -> Pacer | None:
        if self.scenario.pacing is None:
            return None
        return Pacer(self.scenario.timeouts, self.scenario.pacing)

    # --- the event loop -------------------------------------------------------------------

    def _push(self, at: int, kind: str, payload: tuple) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def run(self) -> SimResult:
        for node in self.nodes:
            self._start_node(node)
            self._push(self.scenario.gossip_interval_ms, "gossip", (node.node_id, node.incarnation))
        for crash in self.scenario.crashes:
            if crash.node < len(self.nodes):
                self._push(crash.at_ms, "crash", (crash.node,))
                if crash.restart_ms is not None:
                    self._push(crash.restart_ms, "restart", (crash.node,))
        limit = self.scenario.get_time_limit()
        while self._queue and not self._is_done():
            at, _, kind, payload = heapq.heappop(self._queue)
            if at > limit:
                break
            self.now = at
            self.events += 1
            getattr(self, f"_on_{kind}")(*payload)
        return self._compute_result()

    def _is_done(self) -> bool:
        return all(n.app.get_height() >= self.scenario.heights for n in self._get_live_honest_nodes())

    def _get_live_honest_nodes(self) -> list[SimNode]:
        # A node that crashes for good is not held to liveness; one that restarts is.
        final_down = {c.node for c in self.scenario.crashes if c.restart_ms is None}
        return [n for n in self.nodes if n.honest and n.node_id not in final_down]

    # --- network ----------------------------------------------------------------------

    def _is_partitioned(self, a: int, b: int) -> bool:
        net = self.scenario.network
        if not net.partitions or (net.heal_partitions and self.now >= net.gst_ms):
            return False
        return self.group_of.get(a, -1) != self.group_of.get(b, -2)

    def _send(self, sender: SimNode, to: int, msg: Message) -> None:
        net = self.scenario.network
        self.messages += 1
        if self._is_partitioned(sender.node_id, to):
            return
        if self.now < net.gst_ms:
            if self.rng.random() < net.drop_rate:
                return
            delay = self.rng.randint(net.min_delay_ms, net.pre_gst_max_delay_ms)
        else:
            delay = self.rng.randint(net.min_delay_ms, net.max_delay_ms)
        # Like CometBFT's round-step announcements, every message tells the peer our height.
        self._push(self.now + delay, "deliver", (to, sender.node_id, sender.app.get_height() + 1, msg))

    def _broadcast(self, sender: SimNode, msg: Message) -> None:
        for node in self.nodes:
            if node.node_id != sender.node_id:
                self._send(sender, node.node_id, msg)

    # --- node lifecycle -------------------------------------------------------------------

    def _get_height_params(self, node: SimNode, height: int) -> tuple[ValidatorSet, ProposerSchedule]:
        """The node's own view (from its committed state) of who votes at `height` and who proposes."""
        validator_set = node.app.get_validator_set(height)
        epoch_start = get_epoch_start(height, self.scenario.epoch_length or 1 << 62)
        key = (epoch_start, compute_validators_hash(validator_set))
        if key not in self._schedules:
            self._schedules[key] = ProposerSchedule(validator_set, epoch_start)
        return validator_set, self._schedules[key]

    def _start_node(self, node: SimNode) -> None:
        height = node.app.get_height() + 1
        persisted = node.persisted
        params = self._get_height_params(node, height)
        if persisted is not None and persisted.height == height and persisted.step != Step.DECIDED:
            outputs = self._call(node, node.machine.restore, persisted, *params)
        else:
            outputs = self._call(node, node.machine.start_height, height, *params)
        self._handle_outputs(node, outputs)

    def _on_crash(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.alive = False
        node.incarnation += 1  # timers and gossip of the dead incarnation never fire

    def _on_restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.alive:
            return
        node.alive = True
        # Memory is lost; the ledger (committed blocks) and the persisted consensus state survive.
        node.machine = TendermintMachine(node.private_key, self.scenario.chain_id, self.scenario.timeouts)
        node.pacer = self._make_pacer()
        self._start_node(node)
        self._push(self.now + self.scenario.gossip_interval_ms, "gossip", (node.node_id, node.incarnation))

    # --- event handlers --------------------------------------------------------------------

    def _call(self, node: SimNode, fn, *args) -> list:
        started = time.process_time()
        try:
            return fn(*args)
        finally:
            self.machine_cpu_s += time.process_time() - started
            self.machine_calls += 1
            node.persisted = node.machine.get_persisted_state()

    def _on_deliver(self, to: int, sender_id: int, sender_height: int, msg: Message) -> None:
        node = self.nodes[to]
        if not node.alive:
            return
        if sender_height < node.app.get_height() + 1:
            self._answer_lagging_peer(node, sender_id, sender_height)
        height = get_message_height(msg)
        if height < node.app.get_height() + 1:
            return  # a late message for a height we already decided
        if isinstance(msg, DecisionMsg) and height > node.app.get_height() + 1:
            node.pending_decisions[height] = msg  # used once we reach that height
            return
        try:
            if isinstance(msg, VoteMsg):
                outputs = self._call(node, node.machine.process, VoteReceived(msg.vote))
            elif isinstance(msg, ProposalMsg):
                node.blocks[msg.proposal.block_hash] = msg.block
                if node.pacer is not None and msg.proposal.height == node.machine.height:
                    node.pacer.on_proposal(msg.proposal.height, msg.proposal.round, self.now)
                outputs = self._call(node, node.machine.process, ProposalReceived(msg.proposal))
            else:
                outputs = self._on_decision_msg(node, msg)
        except ConsensusError:
            self.rejected += 1  # a real node scores the peer down; here we only count
            return
        self._handle_outputs(node, outputs)

    def _on_decision_msg(self, node: SimNode, msg: DecisionMsg) -> list:
        node.blocks[msg.proposal.block_hash] = msg.block
        outputs = self._call(node, node.machine.process, ProposalReceived(msg.proposal))
        for vote in get_commit_votes(msg.commit):
            outputs += self._call(node, node.machine.process, VoteReceived(vote))
        return outputs

    def _answer_lagging_peer(self, node: SimNode, peer: int, height: int) -> None:
        """Send a peer that is behind the decisions it misses (a few heights at a time)."""
        if not node.honest:
            return
        last = node.synced_to.get((peer, height))
        if last is not None and self.now - last < self.scenario.gossip_interval_ms:
            return
        node.synced_to[(peer, height)] = self.now
        for h in range(height, height + SYNC_BATCH):
            decision = node.decided.get(h)
            if decision is None:
                break
            self._send(node, peer, decision)

    def _on_timeout(self, node_id: int, incarnation: int, height: int, round: int, step: int,
                    absent_proposer: bool = False) -> None:
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation:
            return
        m = node.machine
        still_waiting = (m.height, m.round, m.step) == (height, round, Step.PROPOSE)
        if node.pacer is not None and step == Step.PROPOSE and still_waiting:
            node.pacer.on_propose_missed(height, round, absent_proposer)
        outputs = self._call(node, node.machine.process, TimeoutFired(height, round, Step(step)))
        self._handle_outputs(node, outputs)

    def _on_gossip(self, node_id: int, incarnation: int) -> None:
        """A node that made no progress since the last tick re-sends what it holds for its height.

        This stands in for CometBFT's gossip routines: after GST, every honest
        node's messages, and the proof-of-lock of every valid value, reach every
        honest node, which is what Algorithm 1's liveness argument uses.
        """
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation:
            return
        m = node.machine
        progress = (m.height, m.round, int(m.step))
        if progress == node.last_progress and node.honest:
            # Our own messages and the proof-of-lock behind our valid value are all that
            # liveness after GST needs; relaying every vote of the round would cost O(n^3).
            for item in m.get_own_messages() + m.get_pol_messages():
                self._broadcast(node, self._wrap(node, item))
        node.last_progress = progress
        self._push(self.now + self.scenario.gossip_interval_ms, "gossip", (node_id, incarnation))

    def _wrap(self, node: SimNode, item: Proposal | Vote) -> Message:
        if isinstance(item, Vote):
            return VoteMsg(item)
        return ProposalMsg(item, node.blocks.get(item.block_hash, b""))

    # --- machine outputs ---------------------------------------------------------------------

    def _handle_outputs(self, node: SimNode, outputs: list) -> None:
        pending = list(outputs)
        while pending:
            output = pending.pop(0)
            pending.extend(self._handle_output(node, output))

    def _handle_output(self, node: SimNode, output) -> list:
        machine = node.machine
        if isinstance(output, BroadcastVote):
            self._broadcast(node, VoteMsg(output.vote))
        elif isinstance(output, BroadcastProposal):
            self._broadcast(node, ProposalMsg(output.proposal, node.blocks.get(output.proposal.block_hash, b"")))
        elif isinstance(output, ScheduleTimeout):
            duration, absent = output.duration_ms, False
            if node.pacer is not None:
                if output.step == Step.PROPOSE:
                    node.pacer.on_round_started(output.height, output.round, self.now)
                duration, absent = compute_paced_timeout(node.pacer, machine, output)
            self._push(
                self.now + duration,
                "timeout",
                (node.node_id, node.incarnation, output.height, output.round, int(output.step), absent),
            )
        elif isinstance(output, RequestValue):
            parent = node.decided.get(output.height - 1)
            last_commit = parent.commit if parent is not None else EMPTY_COMMIT
            block = node.app.propose(output.height, self.addresses[node.validator], last_commit)
            block_hash = node.app.compute_block_hash(block)
            node.blocks[block_hash] = block
            return self._call(node, machine.process, ValueReady(output.height, output.round, block_hash))
        elif isinstance(output, RequestValidation):
            valid = self._get_verdict(node, output.block_hash)
            return self._call(node, machine.process, BlockVerdict(output.height, output.block_hash, valid))
        elif isinstance(output, Decide):
            return self._on_decide(node, output)
        elif isinstance(output, RecordEvidence):
            offender = output.vote_a.validator
            self.evidence_offenders[offender] = self.evidence_offenders.get(offender, 0) + 1
        return []

    def _get_verdict(self, node: SimNode, block_hash: bytes) -> bool:
        """The application's valid(v) as the machine hears it (a test can make it lie)."""
        return self._is_valid_block(node, block_hash)

    def _is_valid_block(self, node: SimNode, block_hash: bytes) -> bool:
        block = node.blocks.get(block_hash)
        if block is None or node.app.compute_block_hash(block) != block_hash:
            return False
        try:
            node.app.validate(block)
        except ConsensusError:
            return False
        return True

    def _on_decide(self, node: SimNode, decide: Decide) -> list:
        block = node.blocks[decide.block_hash]
        if node.honest and not self._is_valid_block(node, decide.block_hash):
            self.validity_violations.append(f"node {node.node_id} decided an invalid block at {decide.height}")
            return []
        try:
            violations = node.app.commit(block, decide.commit)
        except ConsensusError:
            # Only a byzantine node's machine can get here (it trusts its own invalid block).
            return []
        if node.honest:
            self.invariant_violations.extend(f"node {node.node_id} height {decide.height}: {v}" for v in violations)
        proposal = node.machine.get_proposal(decide.round, decide.block_hash)
        node.decided[decide.height] = DecisionMsg(proposal, block, decide.commit)
        node.decisions.append(Decision(decide.height, decide.round, decide.block_hash))
        if node.pacer is not None:
            process_decided_height(node.pacer, node.machine)
        next_height = decide.height + 1
        params = self._get_height_params(node, next_height)
        outputs = self._call(node, node.machine.start_height, next_height, *params)
        waiting = node.pending_decisions.pop(next_height, None)
        if waiting is not None:
            try:
                outputs += self._on_decision_msg(node, waiting)
            except ConsensusError:
                self.rejected += 1
        node.pending_decisions = {h: m for h, m in node.pending_decisions.items() if h > next_height}
        return outputs

    # --- checks -----------------------------------------------------------------------------

    def _compute_result(self) -> SimResult:
        by_height: dict[int, list[bytes]] = {}
        rounds_max = 0
        for node in self.nodes:
            if not node.honest:
                continue
            for d in node.decisions:
                hashes = by_height.setdefault(d.height, [])
                if d.block_hash not in hashes:
                    hashes.append(d.block_hash)
                rounds_max = max(rounds_max, d.round + 1)
        agreement = sum(1 for hashes in by_height.values() if len(hashes) > 1)
        live = self._get_live_honest_nodes()
        heights = tuple(n.app.get_height() for n in self.nodes)
        finalized = min((min(n.app.get_height(), self.scenario.heights) for n in live), default=0)
        return SimResult(
            finalized_heights=finalized,
            safety_violations=agreement + len(self.validity_violations),
            invariant_violations=len(self.invariant_violations),
            rounds_max=rounds_max,
            messages=self.messages,
            validity_violations=len(self.validity_violations),
            agreement_violations=agreement,
            evidence_offenders=tuple(sorted(a.hex() for a in self.evidence_offenders)),
            decided_heights_by_node=heights,
            simulated_ms=self.now,
            events=self.events,
            machine_cpu_s=self.machine_cpu_s,
            machine_calls=self.machine_calls,
            rejected_messages=self.rejected,
            liveness_ok=finalized >= self.scenario.heights,
        )


def run_scenario(scenario: Scenario) -> SimResult:
    return Simulation(scenario).run()
