"""The table of every benchmark figure: where it is in its benchmark's JSON, its target and its baseline.

This module owns what `benchmarks/results/REPORT.md` judges. Each `Figure`
names a value by a dotted path into `benchmarks/results/<benchmark>.json`,
the comparison it must pass (a number, or another path in the same JSON when
the target is a baseline measured in the same run, e.g. the router's p99
against least-loaded), and the baselines printed beside it. A figure with no
target is reported as such ("no target"), never left out.

Targets come from the issues (replay ratio >= 5; verification/generation <=
0.35; audit share <= 15%; catch >= 99%; 0 false rejections; router fairness >=
0.95, p99 <= least-loaded, 0 breaches; finality p50 <= 0.5 s; >= 500 finalised
tx/s; network inference >= 90% of direct and <= 20 ms added; with 1 of 7
validators down, >= 80% of the all-up blocks/s; light client >= 2,000
headers/s sequential and skipping) or the benchmark's own stated target
(p2p signed gossip; the economy's, derived in benchmarks/economy.py: pool <= 10%
of supply and <= 1.1x its bound I(1-F)/(F d), a newcomer doing 25% of the work
at 10% of the weight within 2,000 blocks).
"""
from __future__ import annotations

import operator
from typing import Any, NamedTuple

BENCHMARKS = ("replay", "inference", "router", "economy", "consensus", "p2p", "network", "models", "light",
              "rpc_flood")

# A benchmark may take this long (seconds) before it is killed and reported as timed out.
TIMEOUTS_S = {"full": 3_600, "quick": 300}

OPERATORS = {">=": operator.ge, "<=": operator.le, "==": operator.eq}

ROUTER_LOADS = ("30", "60", "90")
ROUTER_BASELINES = ("least_loaded", "round_robin", "random")
CONSENSUS_SIZES = ("4", "7", "16", "64")
ECONOMY_LOADS = ("busy", "light")
ECONOMY_SHARES = ("10pct", "25pct", "50pct")


class Figure(NamedTuple):
    benchmark: str
    name: str
    path: str  # dotted path into the benchmark's JSON
    unit: str = ""
    op: str | None = None  # one of OPERATORS, or None: reported without a target
    target: float | str | None = None  # a number, or a dotted path (a baseline of the same run)
    baselines: tuple[tuple[str, str], ...] = ()  # (label, dotted path) measured in the same run


class Judgement(NamedTuple):
    figure: Figure
    value: Any  # None when missing
    target: Any  # the resolved target value (None when there is none or it is missing)
    status: str  # "met", "missed", "no target", or why there is no value
    baselines: tuple[tuple[str, Any], ...]


class MissingKey(LookupError):
    """A figure's path is not in its benchmark's JSON."""

    def __init__(self, path: str, missing: str) -> None:
        super().__init__(f"{path}: no key {missing!r}")
        self.path, self.missing = path, missing


def get_path(data: Any, path: str) -> Any:
    """The value at a dotted path ("a.b.0"), raising MissingKey naming the first absent part."""
    node = data
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise MissingKey(path, part)
    return node


def get_optional(data: Any, path: str) -> Any:
    try:
        return get_path(data, path)
    except MissingKey:
        return None


def _router_figures() -> list[Figure]:
    figures = []
    for load in ROUTER_LOADS:
        ours = f"results.{load}.whoever_needs_most"

        def others(key: str) -> tuple[tuple[str, str], ...]:
            return tuple((policy.replace("_", "-"), f"results.{load}.{policy}.{key}") for policy in ROUTER_BASELINES)

        figures += [
            Figure("router", f"{load}% load: Jain fairness of utilisation", f"{ours}.fairness_jain", "", ">=", 0.95,
                   others("fairness_jain")),
            Figure("router", f"{load}% load: job latency p99", f"{ours}.latency_p99_s", "s", "<=",
                   f"results.{load}.least_loaded.latency_p99_s", others("latency_p99_s")),
            Figure("router", f"{load}% load: job latency p50", f"{ours}.latency_p50_s", "s", None, None,
                   others("latency_p50_s")),
            Figure("router", f"{load}% load: sacred-space breaches", f"{ours}.sacred_space_breaches", "", "==", 0,
                   others("sacred_space_breaches")),
        ]
    return figures


def _economy_figures() -> list[Figure]:
    """After the issue-11 payout rule, with the rule before it (same job stream) as the baseline."""
    def before(path: str) -> tuple[tuple[str, str], ...]:
        return (("before issue 11", f"results.before.{path}"),)

    figures = [
        Figure("economy", "busy: newcomer at 25% of the work, blocks to 10% of the weight",
               "results.after.busy.25pct.blocks_to_weight.10pct", "blocks", "<=", 2_000,
               before("busy.25pct.blocks_to_weight.10pct")),
        Figure("economy", "busy: pool share of supply after 10,000 blocks",
               "results.after.busy.25pct.pool_share_final", "", "<=", 0.10, before("busy.25pct.pool_share_final")),
    ]
    for load in ECONOMY_LOADS:
        figures.append(Figure("economy", f"{load}: pool (last fifth, mean) / its bound I(1-F)/(F d)",
                              f"results.after.{load}.25pct.pool_tail_over_bound", "", "<=", 1.10))
    for load in ECONOMY_LOADS:
        for share in ECONOMY_SHARES if load == "busy" else ("25pct",):  # the light load's other rows: economy.json
            for weight in ("1pct", "10pct", "33pct"):
                if (load, share, weight) == ("busy", "25pct", "10pct"):
                    continue  # the targeted figure above
                path = f"{load}.{share}.blocks_to_weight.{weight}"
                figures.append(Figure("economy", f"{load}: newcomer at {share.replace('pct', '%')} of the work, "
                                      f"blocks to {weight.replace('pct', '%')}", f"results.after.{path}", "blocks",
                                      baselines=before(path)))
        for key, name in (("newcomer_share_after_1000_blocks",
                           "newcomer (25% of the work) weight after 1,000 blocks"),
                          ("pool_share_final", "pool share of supply after 10,000 blocks"),
                          ("gini_final", "Gini of recognition after 10,000 blocks"),
                          ("genesis_validators_share_final", "genesis validators' weight after 10,000 blocks")):
            if (load, key) == ("busy", "pool_share_final"):
                continue  # targeted above
            figures.append(Figure("economy", f"{load}: {name}", f"results.after.{load}.25pct.{key}",
                                  baselines=before(f"{load}.25pct.{key}")))
    return figures


def _consensus_figures() -> list[Figure]:
    figures = [Figure("consensus", "safety violations (all sizes, healthy and adversarial)",
                      "safety_violations_total", "", "==", 0)]
    for n in CONSENSUS_SIZES:
        figures += [
            Figure("consensus", f"n={n}: rounds to finality (mean, healthy)", f"network.healthy.{n}.rounds_mean",
                   "rounds", baselines=(("adversarial", f"network.adversarial.{n}.rounds_mean"),)),
            Figure("consensus", f"n={n}: messages per height (healthy)", f"network.healthy.{n}.messages_per_height",
                   "msgs", baselines=(("adversarial", f"network.adversarial.{n}.messages_per_height"),)),
            Figure("consensus", f"n={n}: state-machine CPU per height (one node)",
                   f"machine_cpu.{n}.cpu_ms_per_height_mean", "ms"),
        ]
    return figures


FIGURES: tuple[Figure, ...] = (
    # replay: magicoin's full-validation replay on LevelDB, py-evm's import in the same run.
    Figure("replay", "replay throughput, full validation", "magicoin_tx_per_s", "tx/s", None, None,
           (("py-evm import", "pyevm_tx_per_s"),)),
    Figure("replay", "replay speed-up over py-evm", "ratio", "x", ">=", 5),
    Figure("replay", "replay blocks/s", "magicoin_blocks_per_s", "blocks/s"),
    # inference: on the default model; generation is the baseline of verification cost.
    Figure("inference", "generation tok/s (end to end)", "generation_tok_s", "tok/s"),
    Figure("inference", "decode tok/s", "decode_tok_s", "tok/s"),
    Figure("inference", "verification time / generation time", "verification_over_generation", "", "<=", 0.35,
           (("median job", "verification_over_generation_median_job"),
            ("jobs >= 32 tokens", "verification_over_generation_jobs_32plus_tokens"))),
    Figure("inference", "audit compute / generation compute", "audit_compute_share", "", "<=", 0.15),
    Figure("inference", "verification / generation, 2 threads (worker alone on the machine)",
           "two_threads.verification_over_generation", "", "<=", 0.35),
    Figure("inference", "audit compute / generation compute, 2 threads", "two_threads.audit_compute_share",
           "", "<=", 0.15),
    Figure("inference", "P(catch 10% cheater within 100 jobs), new worker",
           "catch_10pct_cheater_within_100_new_worker", "", ">=", 0.99),
    # The target is for a cheater under the policy; a worker that behaves first is audited at the
    # lower established rate by design (rates follow the record), so this one is reported without a target.
    Figure("inference", "P(catch 10% cheater within 100 jobs), after 1,000 clean jobs",
           "catch_10pct_cheater_within_100_after_1000_clean_jobs"),
    Figure("inference", "false rejections of honest outputs", "false_rejections", "", "==", 0),
    Figure("inference", "cheat detection rate", "cheat_detection_rate", "", ">=", 1.0),
    *_router_figures(),
    *_economy_figures(),
    *_consensus_figures(),
    # p2p: the benchmark's own target (what a plain trio protocol reached here).
    Figure("p2p", "signed gossip", "signed_gossip.msgs_per_s", "msg/s", ">=", "targets.signed_msgs_per_s",
           (("raw gossip (no signatures)", "raw_gossip.msgs_per_s"),)),
    Figure("p2p", "request round trip p50", "request_round_trip.p50_ms", "ms"),
    Figure("p2p", "request round trip p99", "request_round_trip.p99_ms", "ms"),
    # network: a 4-validator devnet of real node processes.
    Figure("network", "finality: tx submitted -> final, p50", "finality.submit_to_final.p50_s", "s", "<=", 0.5),
    Figure("network", "finality: tx submitted -> final, p99", "finality.submit_to_final.p99_s", "s"),
    Figure("network", "finality: first proposal -> decided, p50", "finality.p50_s", "s", "<=", 0.5),
    Figure("network", "finality: first proposal -> decided, p99", "finality.p99_s", "s"),
    Figure("network", "finalised tx/s through JSON-RPC", "throughput.finalised_tx_per_s", "tx/s", ">=", 500),
    Figure("network", "inference via network / direct llama.cpp (tok/s)", "inference.tok_s_ratio", "", ">=", 0.90,
           (("network tok/s", "inference.network_tok_per_s"), ("direct tok/s", "inference.direct_tok_per_s"))),
    Figure("network", "added latency to first token, p50", "inference.added_latency_p50_ms", "ms", "<=", 20,
           (("direct time to first token, p50", "inference.direct_ttft_p50_ms"),)),
    Figure("network", "peak RSS, node0", "peak_rss_mib.node0", "MiB"),
    # network, issue 14: a 7-validator devnet (no model duties) with 0, 1, then 2 nodes killed; the baseline is
    # the same run with static timeouts (`--down-baseline`), the behaviour before issue 14.
    *(Figure("network", f"blocks/s, 7 validators, {label}", f"validators_down.blocks_per_s_{key}", "blocks/s", None,
             None, (("static timeouts", f"validators_down.static_timeouts.blocks_per_s_{key}"),))
      for key, label in (("all_up", "all up"), ("1_down", "1 down"), ("2_down", "2 down"))),
    Figure("network", "blocks/s with 1 of 7 validators down / all up", "validators_down.one_down_over_all_up", "",
           ">=", 0.80, (("static timeouts", "validators_down.static_timeouts.one_down_over_all_up"),)),
    # models: two models on one devnet, node0 generating on a separately started llama_cpp.server.
    Figure("models", "honest outputs rejected (all workers honest)", "honest_rejected", "jobs", "==", 0),
    *(Figure("models", f"jobs accepted, model {index + 1}", f"per_model.{index}.accepted", "jobs", None, None,
             (("requests", f"per_model.{index}.requests"), ("audited", f"per_model.{index}.audited"),
              ("model", f"per_model.{index}.model")))
      for index in range(2)),
    # light: a light client verifying a chain served by the full node's JSON-RPC dispatcher.
    *(Figure("light", f"verified headers/s, {mode}, {where}", f"{key}.{mode}.headers_per_second", "headers/s",
             ">=", 2000)
      for key, where in (("http", "loopback HTTP"), ("in_process", "in-process")) for mode in ("sequential", "skipping")),
    Figure("light", "account proof check, per account", "http.proofs.check_ms", "ms", None, None,
           (("with fetch over HTTP", "http.proofs.fetch_and_check_ms"),)),
    Figure("light", "light client peak RSS (alone, HTTP mode)", "http.peak_rss_mb", "MiB"),
    # rpc_flood, issue 14: a 4-validator devnet, 2,000 eth_getProof/s offered to node0 (its own target: 2x,
    # set from the first runs here; node0's finality p99 idle is the baseline of the same run).
    Figure("rpc_flood", "node0 finality p99 during the flood / idle", "finality_p99_ratio", "", "<=",
           "targets.finality_p99_ratio", (("idle p99 ms", "idle.node0.finality.p99_ms"),
                                          ("flood p99 ms", "flood.node0.finality.p99_ms"),
                                          ("other nodes' p99 ms during the flood", "flood.others_finality.p99_ms"))),
    Figure("rpc_flood", "node0 finality p99 during the flood / the unflooded validators'", "flooded_vs_others_p99_ratio",
           "", "<=", "targets.flooded_vs_others_p99_ratio"),
    Figure("rpc_flood", "node0 finality p99 during the flood, same run with HTTP in a thread / idle",
           "baseline_thread.finality_p99_ratio"),
    Figure("rpc_flood", "node0 finality p99 during the flood, same run before issue 14 / idle",
           "baseline_on_loop.finality_p99_ratio"),
    Figure("rpc_flood", "node0 finality p50 during the flood", "flood.node0.finality.p50_ms", "ms", None, None,
           (("idle", "idle.node0.finality.p50_ms"),)),
    Figure("rpc_flood", "blocks/s during the flood", "flood.blocks_per_s", "blocks/s", None, None,
           (("idle", "idle.blocks_per_s"),)),
    Figure("rpc_flood", "node0 loop lag p99 during the flood", "flood.node0.loop_lag.p99Ms", "ms", None, None,
           (("idle", "idle.node0.loop_lag.p99Ms"),)),
    Figure("rpc_flood", "eth_getProof served during the flood", "flood.flood.served_per_s", "req/s", None, None,
           (("offered", "flood.flood.offered_per_s"), ("refused (429)", "flood.flood.limited_per_s"))),
)


def judge(figure: Figure, data: dict | None, absent: str = "no result") -> Judgement:
    """Compare one figure with its target; `absent` says why there is no data at all."""
    if data is None:
        return Judgement(figure, None, None, absent, ())
    baselines = tuple((label, get_optional(data, path)) for label, path in figure.baselines)
    try:
        value = get_path(data, figure.path)
    except MissingKey as error:
        return Judgement(figure, None, None, f"missing key {error.missing!r}", baselines)
    target = figure.target
    if isinstance(target, str):
        target = get_optional(data, target)
    if figure.op is None:
        return Judgement(figure, value, None, "no target", baselines)
    if value is None or target is None:
        return Judgement(figure, value, target, "no value" if value is None else "target missing", baselines)
    met = OPERATORS[figure.op](value, target)
    return Judgement(figure, value, target, "met" if met else "missed", baselines)
