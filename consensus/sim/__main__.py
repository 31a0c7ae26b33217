"""`python -m consensus.sim`: run one seeded adversarial schedule and report the checks.

With --json the last line printed is exactly
{"finalized_heights": int, "safety_violations": int, "invariant_violations": int,
 "rounds_max": int, "messages": int}.
"""
from __future__ import annotations

import dataclasses
import json
import sys

import click

from consensus.sim.scenario import (
    FAULT_KINDS,
    MIXED,
    SIM_PACING,
    TWINS,
    build_random_scenario,
)
from consensus.sim.simulation import run_scenario


@click.command()
@click.option("--validators", "-n", type=click.IntRange(1, 512), default=4, show_default=True)
@click.option("--byzantine", "-f", type=click.IntRange(0, 512), default=1, show_default=True,
              help="how many validator keys are byzantine (the lightest ones)")
@click.option("--seed", "-s", type=int, default=0, show_default=True)
@click.option("--heights", type=click.IntRange(1, 100_000), default=10, show_default=True)
@click.option("--fault", type=click.Choice(FAULT_KINDS + (MIXED,)), default=TWINS, show_default=True,
              help="what the byzantine keys do")
@click.option("--partition/--no-partition", default=True, show_default=True,
              help="split the network in two (twins on both sides) until GST")
@click.option("--drop-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="message loss before GST")
@click.option("--gst-ms", type=click.IntRange(0), default=3000, show_default=True)
@click.option("--crashes", type=click.IntRange(0), default=0, show_default=True,
              help="honest nodes that crash and restart")
@click.option("--epoch-length", type=click.IntRange(1), default=None,
              help="re-derive the validator set from recognition every this many heights")
@click.option("--pacing/--no-pacing", default=False, show_default=True,
              help="adaptive timeouts (consensus.pacing) on every node, the node's default, scaled to the simulation")
@click.option("--strict", is_flag=True, help="exit with status 1 on any safety or invariant violation")
@click.option("--json", "as_json", is_flag=True, help="print the result object as the last line")
def main(validators, byzantine, seed, heights, fault, partition, drop_rate, gst_ms, crashes, epoch_length, pacing, strict,
         as_json) -> None:
    if byzantine > validators:
        raise click.BadParameter(f"{byzantine} byzantine of {validators} validators", param_hint="--byzantine")
    scenario = build_random_scenario(
        validators, byzantine, seed, heights,
        fault_kind=fault, partition=partition, drop_rate=drop_rate, gst_ms=gst_ms, crashes=crashes,
    )
    if epoch_length is not None:
        scenario = dataclasses.replace(scenario, epoch_length=epoch_length)
    if pacing:
        scenario = dataclasses.replace(scenario, pacing=SIM_PACING)
    result = run_scenario(scenario)
    if not as_json:
        byz = scenario.get_byzantine_weight()
        total = sum(scenario.weights)
        click.echo(f"weights {list(scenario.weights)}; byzantine {fault} {list(dict(scenario.faults))} "
                   f"weight {byz}/{total}; partitions {list(scenario.network.partitions)}; "
                   f"crashes {len(scenario.crashes)}; GST {scenario.network.gst_ms} ms")
        click.echo(f"heights per node {list(result.decided_heights_by_node)}; simulated {result.simulated_ms} ms; "
                   f"events {result.events}; evidence against {len(result.evidence_offenders)} validator(s); "
                   f"liveness {'ok' if result.liveness_ok else 'NOT reached'}")
    click.echo(json.dumps(result.get_summary()))
    if strict and (result.safety_violations or result.invariant_violations):
        sys.exit(1)


if __name__ == "__main__":
    main()
