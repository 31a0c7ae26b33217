"""What a simulation run is made of: validators, faults, network schedule, crashes.

A `Scenario` is plain data, so a Hypothesis strategy or the CLI can build one
and a failing run can be printed and replayed exactly.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from consensus.bft import TimeoutConfig
from consensus.pacing import PacingConfig

# Pacing scaled to the simulated network (5-50 ms hops, no block interval): what the tests switch on.
SIM_PACING = PacingConfig(propose_floor_ms=60, propose_margin_ms=30, vote_floor_ms=50, vote_margin_ms=20,
                          absent_propose_ms=40, round_delta_ms=20)

TWINS = "twins"  # two instances with the same key: equivocation, Twins-style
SILENT = "silent"  # never sends anything
INVALID = "invalid"  # proposes blocks that break the ledger rules
MIXED = "mixed"  # for build_random_scenario: the byzantine keys take turns at the kinds above
FAULT_KINDS = (TWINS, SILENT, INVALID)


@dataclass(frozen=True)
class NetworkConfig:
    """Partial synchrony: before GST messages may be late, dropped or cut by a partition.

    After GST every message between live nodes arrives within max_delay_ms.
    """

    min_delay_ms: int = 5
    max_delay_ms: int = 50
    pre_gst_max_delay_ms: int = 1500
    drop_rate: float = 0.0
    gst_ms: int = 0
    # Node ids grouped; before GST, messages between different groups are lost.
    partitions: tuple[tuple[int, ...], ...] = ()
    heal_partitions: bool = True  # False keeps the partition forever (for the >1/3 demonstration)


@dataclass(frozen=True)
class Crash:
    node: int
    at_ms: int
    restart_ms: int | None  # None: stays down


@dataclass(frozen=True)
class Scenario:
    weights: tuple[int, ...]  # one per validator key, in key order
    faults: tuple[tuple[int, str], ...] = ()  # (validator index, kind)
    network: NetworkConfig = NetworkConfig()
    crashes: tuple[Crash, ...] = ()
    heights: int = 5
    seed: int = 0
    timeouts: TimeoutConfig = TimeoutConfig(propose_ms=300, prevote_ms=200, precommit_ms=200, delta_ms=100)
    gossip_interval_ms: int = 400
    max_time_ms: int | None = None  # default: GST plus a generous allowance per height
    chain_id: int = 1337
    epoch_length: int | None = None  # None: the genesis set forever
    # Adaptive timeouts (consensus.pacing) on every node, with `timeouts` as their ceiling; None: static timeouts.
    pacing: PacingConfig | None = None

    def get_fault(self, validator: int) -> str | None:
        return dict(self.faults).get(validator)

    def get_node_validators(self) -> list[int]:
        """Node id -> validator index: one node per honest key, two per twin, none when silent."""
        nodes: list[int] = []
        for v in range(len(self.weights)):
            kind = self.get_fault(v)
            if kind == SILENT:
                continue
            nodes.append(v)
            if kind == TWINS:
                nodes.append(v)
        return nodes

    def get_byzantine_weight(self) -> int:
        return sum(self.weights[v] for v, _ in self.faults)

    def get_time_limit(self) -> int:
        if self.max_time_ms is not None:
            return self.max_time_ms
        per_height = 40 * (self.timeouts.propose_ms + self.timeouts.prevote_ms + self.timeouts.precommit_ms)
        restarts = max([c.restart_ms or 0 for c in self.crashes], default=0)
        return max(self.network.gst_ms, restarts) + self.heights * per_height


def build_random_scenario(
    validators: int,
    byzantine: int,
    seed: int,
    heights: int,
    fault_kind: str = TWINS,
    partition: bool = True,
    drop_rate: float = 0.1,
    gst_ms: int = 3000,
    crashes: int = 0,
) -> Scenario:
    """A seeded adversarial schedule: the byzantine keys get `fault_kind`, the network splits
    (twins on both sides) until GST, drops messages before it, and honest nodes may crash and restart."""
    rng = random.Random(seed)
    weights = tuple(rng.randint(1, 4) for _ in range(validators))
    # The byzantine keys are the lightest ones, so f < n/3 keys also means under 1/3 of the weight.
    by_weight = sorted(range(validators), key=lambda v: (weights[v], rng.random()))
    faulty = sorted(by_weight[:byzantine])
    if fault_kind == MIXED:
        faults = tuple((v, FAULT_KINDS[i % len(FAULT_KINDS)]) for i, v in enumerate(faulty))
    else:
        faults = tuple((v, fault_kind) for v in faulty)
    probe = Scenario(weights=weights, faults=faults)
    node_validators = probe.get_node_validators()
    partitions: tuple[tuple[int, ...], ...] = ()
    if partition and len(node_validators) >= 2:
        sides: list[list[int]] = [[], []]
        seen: set[int] = set()
        for node, v in enumerate(node_validators):
            # The second instance of a twin goes to the other side, so the twins see different worlds.
            side = 1 if v in seen else (0 if probe.get_fault(v) == TWINS else rng.randint(0, 1))
            seen.add(v)
            sides[side].append(node)
        partitions = tuple(tuple(s) for s in sides if s)
    honest_nodes = [n for n, v in enumerate(node_validators) if probe.get_fault(v) is None]
    crash_list = []
    for node in rng.sample(honest_nodes, min(crashes, len(honest_nodes))):
        at = rng.randint(0, gst_ms + 2000)
        crash_list.append(Crash(node, at, at + rng.randint(200, 3000)))
    network = NetworkConfig(drop_rate=drop_rate, gst_ms=gst_ms, partitions=partitions)
    return Scenario(
        weights=weights,
        faults=faults,
        network=network,
        crashes=tuple(crash_list),
        heights=heights,
        seed=seed,
    )
