"""Consensus benchmark: rounds and simulated time to finality, messages per height, state-machine CPU.

Two measurements per validator count n = 4, 7, 16, 64 (equal weights):

- Simulated network (`consensus.sim`): one node per validator, message delays
  uniform in 5..50 ms, no faults (the "healthy" row), and an adversarial row
  with floor((n-1)/3) equivocating twins, a partition and 10% message loss
  until GST = 3 s. Reported: rounds to finality (decision round + 1, mean and
  max over heights and nodes), simulated time over finalised heights (in the
  adversarial row it includes waiting for GST), messages sent per height
  (point-to-point sends, including re-gossip and catch-up).
- CPU of the pure state machine per height, for one validator, measured
  outside the simulator: a fresh height fed the proposal, n prevotes and n
  precommits (all pre-signed, none seen before, so every signature is really
  recovered) until it decides. This is what one node pays per block for
  consensus, signature checks included (coincurve backend). The simulator's
  own machine time is also reported, but there all nodes share one signature
  cache, so it is a lower bound.

Run: ``python -m benchmarks.consensus [--json] [--quick]``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from eth_utils import keccak

from consensus.bft import Decide, RequestValidation, TendermintMachine
from consensus.proposer import ProposerSchedule
from consensus.sim import TWINS, build_random_scenario
from consensus.sim.scenario import NetworkConfig, Scenario
from consensus.sim.simulation import Simulation
from consensus.validators import ValidatorSet
from consensus.votes import (
    PRECOMMIT,
    PREVOTE,
    get_address,
    make_proposal,
    make_vote,
    sign_proposal,
    sign_vote,
)
from benchmarks.results_io import finish_benchmark

RESULTS_PATH = Path(__file__).parent / "results" / "consensus.json"
SIZES = (4, 7, 16, 64)
CHAIN_ID = 1337


def run_network(n: int, heights: int, adversarial: bool, seed: int) -> dict:
    if adversarial:
        scenario = build_random_scenario(n, (n - 1) // 3, seed, heights, fault_kind=TWINS, partition=True,
                                         drop_rate=0.1, gst_ms=3000)
    else:
        scenario = Scenario(weights=(1,) * n, network=NetworkConfig(), heights=heights, seed=seed)
    sim = Simulation(scenario)
    started = time.process_time()
    result = sim.run()
    wall_cpu = time.process_time() - started
    rounds = [d.round + 1 for node in sim.nodes if node.honest for d in node.decisions if d.height <= heights]
    return {
        "validators": n,
        "byzantine": len(scenario.faults),
        "heights": heights,
        "finalized_heights": result.finalized_heights,
        "safety_violations": result.safety_violations,
        "invariant_violations": result.invariant_violations,
        "rounds_mean": round(statistics.fmean(rounds), 3) if rounds else None,
        "rounds_max": result.rounds_max,
        "simulated_ms_per_height": round(result.simulated_ms / max(1, result.finalized_heights), 1),
        "messages_per_height": round(result.messages / max(1, result.finalized_heights), 1),
        "sim_machine_cpu_ms_per_node_height": round(
            1000 * result.machine_cpu_s / max(1, len(sim.nodes) * result.finalized_heights), 3
        ),
        "sim_cpu_s_total": round(wall_cpu, 2),
    }


def measure_machine_cpu(n: int, heights: int) -> dict:
    """CPU one validator's machine spends per height, every signature recovered for real."""
    keys = [keccak(b"bench-consensus" + i.to_bytes(4, "big")) for i in range(n)]
    addrs = [get_address(k) for k in keys]
    vs = ValidatorSet((a, 1) for a in addrs)
    schedule = ProposerSchedule(vs)
    key_of = dict(zip(addrs, keys))
    me = next(a for a in addrs if a != schedule.get_proposer(1, 0))
    machine = TendermintMachine(key_of[me], CHAIN_ID)
    samples, messages = [], []
    for h in range(1, heights + 1):
        block = keccak(b"block" + h.to_bytes(8, "big"))
        proposer = schedule.get_proposer(h, 0)
        proposal = sign_proposal(make_proposal(h, 0, -1, block, proposer), key_of[proposer], CHAIN_ID)
        others = [a for a in addrs if a != me]
        prevotes = [sign_vote(make_vote(PREVOTE, h, 0, block, a), key_of[a], CHAIN_ID) for a in others]
        precommits = [sign_vote(make_vote(PRECOMMIT, h, 0, block, a), key_of[a], CHAIN_ID) for a in others]
        started = time.process_time()
        machine.start_height(h, vs, schedule)
        out = machine.on_proposal(proposal)
        if any(isinstance(o, RequestValidation) for o in out):
            machine.on_verdict(h, block, True)
        decided = False
        fed = 1
        for vote in prevotes + precommits:
            fed += 1
            if any(isinstance(o, Decide) for o in machine.on_vote(vote)):
                decided = True
                break
        samples.append(time.process_time() - started)
        messages.append(fed)
        assert decided, "the benchmark's height must decide"
    return {
        "validators": n,
        "heights": heights,
        "cpu_ms_per_height_mean": round(1000 * statistics.fmean(samples), 3),
        "cpu_ms_per_height_p50": round(1000 * statistics.median(samples), 3),
        "messages_to_decide": round(statistics.fmean(messages), 1),
        "cpu_us_per_message": round(1e6 * sum(samples) / sum(messages), 1),
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="consensus: Tendermint over recognition weight (simulated network, 5..50 ms delays)")
    for column in ("n", "scenario", "final", "safety", "rounds mean", "rounds max", "sim ms/height",
                   "msgs/height", "machine CPU ms/height (1 node)", "us/msg"):
        table.add_column(column, justify="right")
    for n in report["sizes"]:
        cpu = report["machine_cpu"][str(n)]
        for label in ("healthy", "adversarial"):
            r = report["network"][label].get(str(n))
            if r is None:
                continue
            table.add_row(
                str(n), f"{label} (f={r['byzantine']})", f"{r['finalized_heights']}/{r['heights']}",
                str(r["safety_violations"]), str(r["rounds_mean"]), str(r["rounds_max"]),
                str(r["simulated_ms_per_height"]), str(r["messages_per_height"]),
                f"{cpu['cpu_ms_per_height_mean']:.2f}" if label == "healthy" else "",
                f"{cpu['cpu_us_per_message']:.0f}" if label == "healthy" else "",
            )
        table.add_section()
    console = Console(stderr=True, width=150)
    console.print(table)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result object as the last line")
    parser.add_argument("--quick", action="store_true", help="fewer heights (for CI)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    heights = 3 if args.quick else 10
    cpu_heights = 5 if args.quick else 20
    network: dict[str, dict[str, dict]] = {"healthy": {}, "adversarial": {}}
    machine_cpu = {}
    for n in SIZES:
        network["healthy"][str(n)] = run_network(n, heights, False, args.seed)
        # 64 validators under partition and loss is slow to simulate; keep it to the full run.
        if n < 64 or not args.quick:
            network["adversarial"][str(n)] = run_network(n, heights, True, args.seed)
        machine_cpu[str(n)] = measure_machine_cpu(n, cpu_heights)
    report = {
        "benchmark": "consensus",
        "sizes": list(SIZES),
        "heights": heights,
        "seed": args.seed,
        "quick": args.quick,
        "delays_ms": [5, 50],
        "network": network,
        "machine_cpu": machine_cpu,
        "safety_violations_total": sum(r["safety_violations"] for rows in network.values() for r in rows.values()),
    }
    return finish_benchmark(report, RESULTS_PATH, print_table, args.json)


if __name__ == "__main__":
    main()
