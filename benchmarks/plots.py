"""The report's PNG plots (matplotlib, Agg backend), drawn from one run's results.

Each `plot_*` takes the run's results and the output path and returns the path,
or raises `NoData` naming what it lacked; `draw_all` turns that into a "not
drawn" entry of the report, so a missing plot is said, not hidden.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.targets import ROUTER_BASELINES, ROUTER_LOADS, get_optional  # noqa: E402

POLICY_STYLE = {"whoever_needs_most": ("whoever-needs-most", "tab:green", "o"),
                "least_loaded": ("least-loaded", "tab:blue", "s"),
                "round_robin": ("round-robin", "tab:orange", "^"),
                "random": ("random", "tab:gray", "x")}


class NoData(Exception):
    """A plot's input is absent from this run."""


class Plot(NamedTuple):
    name: str
    title: str
    path: Path | None
    missing: str | None  # why it was not drawn


def require(results: dict, benchmark: str) -> dict:
    data = results.get(benchmark)
    if not data:
        raise NoData(f"no {benchmark} result in this run")
    return data


def save(figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_router(results: dict, path: Path) -> Path:
    """Fairness, p50/p99 latency and sacred-space breaches at each load level, for the four policies."""
    data = require(results, "router")
    loads = [int(load) for load in ROUTER_LOADS]
    figure, (fair, latency, breaches) = plt.subplots(1, 3, figsize=(15, 4.6))
    for policy in ("whoever_needs_most", *ROUTER_BASELINES):
        label, colour, marker = POLICY_STYLE[policy]
        rows = [get_optional(data, f"results.{load}.{policy}") or {} for load in ROUTER_LOADS]
        fair.plot(loads, [r.get("fairness_jain") for r in rows], marker=marker, color=colour, label=label)
        latency.plot(loads, [r.get("latency_p99_s") for r in rows], marker=marker, color=colour, label=f"{label} p99")
        latency.plot(loads, [r.get("latency_p50_s") for r in rows], marker=marker, color=colour, linestyle=":",
                     label=f"{label} p50")
        breaches.plot(loads, [r.get("sacred_space_breaches") for r in rows], marker=marker, color=colour, label=label)
    fair.axhline(0.95, color="red", linestyle="--", linewidth=1, label="target 0.95")
    fair.set(title="Jain fairness of worker utilisation", xlabel="offered load, % of schedulable capacity",
             ylabel="Jain index", ylim=(0, 1.05), xticks=loads)
    latency.set(title="job latency (completion - arrival)", xlabel="offered load, % of schedulable capacity",
                ylabel="seconds (log)", yscale="log", xticks=loads)
    breaches.set(title="sacred-space breaches (jobs above 70% cap)", xlabel="offered load, % of schedulable capacity",
                 ylabel="jobs", xticks=loads)
    fair.legend(fontsize=8)
    latency.legend(fontsize=7, ncol=2, loc="upper left")
    breaches.legend(fontsize=8)
    figure.suptitle(f"router: {data.get('workers')} workers, {data.get('jobs_per_run'):,} Poisson jobs per run"
                    f"{' (quick)' if data.get('quick') else ''}")
    return save(figure, path)


def plot_finality(results: dict, path: Path) -> Path:
    """Finality latency on the 4-node devnet: the distribution's p50, mean and p99 for both measures."""
    data = require(results, "network")
    finality = data.get("finality")
    if not finality:
        raise NoData("network result has no 'finality'")
    measures = [("first proposal -> decided\n(node-reported)", finality),
                ("tx submitted -> final\n(receipt polled)", finality.get("submit_to_final") or {})]
    figure, axis = plt.subplots(figsize=(8, 4))
    for row, (label, stats) in enumerate(measures):
        p50, mean, p99 = stats.get("p50_s"), stats.get("mean_s"), stats.get("p99_s")
        if p50 is None or p99 is None:
            continue
        axis.plot([p50, p99], [row, row], color="tab:blue", linewidth=6, alpha=0.35, solid_capstyle="butt")
        axis.plot([p50], [row], "o", color="tab:blue", label="p50" if row == 0 else None)
        axis.plot([p99], [row], "|", color="tab:red", markersize=18, markeredgewidth=2,
                  label="p99" if row == 0 else None)
        if mean is not None:
            axis.plot([mean], [row], "D", color="black", markersize=5, label="mean" if row == 0 else None)
        samples = stats.get("samples_s")
        if isinstance(samples, list) and samples:
            offsets = [row - 0.25 + 0.5 * (i % 11) / 10 for i in range(len(samples))]
            axis.scatter(samples, offsets, s=6, color="tab:gray", alpha=0.5,
                         label="samples" if row == 0 else None)
        count = stats.get("samples", stats.get("transactions"))
        count = len(count) if isinstance(count, list) else count
        axis.annotate(f"p50 {p50} s, p99 {p99} s, n={count}", (p99, row), xytext=(8, 8), textcoords="offset points",
                      fontsize=8)
    axis.axvline(0.5, color="red", linestyle="--", linewidth=1, label="target p50 <= 0.5 s")
    axis.set_yticks(range(len(measures)), [label for label, _ in measures])
    raw = any(isinstance(stats.get("samples_s"), list) for _, stats in measures)
    axis.set(xlabel="seconds", title="finality latency, 4-validator devnet" + (
        "" if raw else " (percentiles only: the network benchmark stores no raw samples)"),
        xlim=(0, None), ylim=(-0.7, len(measures) - 0.3))
    axis.title.set_fontsize(9)
    axis.legend(fontsize=8, loc="lower right")
    return save(figure, path)


def plot_replay(results: dict, path: Path) -> Path:
    """Cumulative tx/s after each block of the replay, magicoin and py-evm, with the ratio reached."""
    series = require(results, "replay_series")
    figure, (rate, ratio) = plt.subplots(1, 2, figsize=(12, 4.4))
    finals = {}
    for key, label, colour in (("magicoin", "magicoin replay (LevelDB, full validation)", "tab:green"),
                               ("pyevm", "py-evm import (memory DB)", "tab:blue")):
        points = [p for p in series.get(key, []) if p[2] > 0]
        if not points:
            raise NoData(f"replay_series has no {key} points")
        rate.plot([p[0] for p in points], [p[1] / p[2] for p in points], color=colour, label=label)
        finals[key] = points
    rate.set(title="replay throughput over chain length (cumulative)", xlabel="blocks replayed", ylabel="tx/s")
    rate.legend(fontsize=8)
    # Windowed rates: the throughput of each stretch of the chain, to show any slowdown as the state grows.
    window = max(5, len(finals["magicoin"]) // 20)
    for key, colour in (("magicoin", "tab:green"), ("pyevm", "tab:blue")):
        points = finals[key]
        xs, ys = [], []
        for i in range(window, len(points), window):
            (b0, t0, s0), (b1, t1, s1) = points[i - window], points[i]
            if s1 > s0:
                xs.append(b1)
                ys.append((t1 - t0) / (s1 - s0))
        rate.plot(xs, ys, color=colour, alpha=0.35, linewidth=1)
    rate.set_ylim(0, None)  # after every line, so the windowed rates are not clipped
    m, p = finals["magicoin"], finals["pyevm"]
    n = min(len(m), len(p))
    ratio.plot([m[i][0] for i in range(n)], [(m[i][1] / m[i][2]) / (p[i][1] / p[i][2]) for i in range(n)],
               color="black")
    ratio.axhline(5, color="red", linestyle="--", linewidth=1, label="target 5x")
    ratio.set(title="magicoin / py-evm (cumulative tx/s)", xlabel="blocks", ylabel="ratio", ylim=(0, None))
    ratio.legend(fontsize=8)
    figure.suptitle(f"replay, {series.get('txs_per_block')} tx/block, {series.get('accounts'):,} accounts "
                    f"(faint lines: rate over each {window}-block window)", fontsize=10)
    return save(figure, path)


def plot_verification(results: dict, path: Path) -> Path:
    """Verification time against generation time: per job (the series) and in total (the inference benchmark)."""
    series, data = results.get("inference_series"), results.get("inference")
    jobs = (series or {}).get("jobs") or []
    if not jobs and not data:
        raise NoData("no inference result and no inference_series in this run")
    panels = (2 if jobs else 0) + (1 if data else 0)
    figure, axes = plt.subplots(1, panels, figsize=(max(8.0, 5.2 * panels), 4.4))
    axes = list(axes) if panels > 1 else [axes]
    if jobs:
        draw_verification_jobs(axes.pop(0), axes.pop(0), series)
    if data:
        draw_verification_totals(axes.pop(0), data)
    figure.suptitle("verification cost against generation cost\n(teacher-forced batch vs greedy decoding, "
                    "default model; red bars miss their target)", fontsize=10)
    return save(figure, path)


def draw_verification_jobs(scatter, by_tokens, series: dict) -> None:
    columns = series["columns"]
    rows = [dict(zip(columns, job)) for job in series["jobs"]]
    generation = [r["generation_s"] for r in rows]
    verification = [r["verification_s"] for r in rows]
    colours = ["tab:green" if r["accepted"] else "tab:red" for r in rows]
    scatter.scatter(generation, verification, c=colours, s=18)
    scatter.annotate("green: output accepted, red: rejected", (0.02, 0.97), xycoords="axes fraction", va="top",
                     fontsize=7)
    top = max(generation) * 1.05
    scatter.plot([0, top], [0, 0.35 * top], color="red", linestyle="--", linewidth=1, label="target: 0.35 x generation")
    total = sum(verification) / sum(generation)
    scatter.plot([0, top], [0, total * top], color="black", linewidth=1, label=f"all jobs: {total:.3f} x")
    scatter.set(title=f"per job ({len(rows)} jobs, up to {series.get('max_tokens')} tokens, "
                      f"{series.get('threads')} thread(s))", xlabel="generation s", ylabel="verification s",
                xlim=(0, None), ylim=(0, None))
    scatter.title.set_fontsize(9)
    scatter.legend(fontsize=8, loc="lower right")
    by_tokens.scatter([r["output_tokens"] for r in rows], [v / g for v, g in zip(verification, generation)],
                      c=colours, s=18)
    by_tokens.axhline(0.35, color="red", linestyle="--", linewidth=1, label="target <= 0.35")
    by_tokens.set(title="verification / generation per job", xlabel="output tokens", ylabel="ratio", ylim=(0, None))
    by_tokens.title.set_fontsize(9)
    by_tokens.legend(fontsize=8)


def draw_verification_totals(ratios, data: dict) -> None:
    labels = ["all jobs", "median job", "jobs >= 32\ntokens", "audit compute\nshare"]
    values = [data.get("verification_over_generation"), data.get("verification_over_generation_median_job"),
              data.get("verification_over_generation_jobs_32plus_tokens"), data.get("audit_compute_share")]
    targets = [0.35, 0.35, 0.35, 0.15]
    kept = [(l, v, t) for l, v, t in zip(labels, values, targets) if v is not None]
    bars = ratios.bar([k[0] for k in kept], [k[1] for k in kept],
                      color=["tab:green" if v <= t else "tab:red" for _, v, t in kept])
    if kept and kept[-1][2] == 0.15:
        bars[-1].set_hatch("//")
    ratios.axhline(0.35, color="red", linestyle="--", linewidth=1, label="verification target <= 0.35")
    ratios.axhline(0.15, color="purple", linestyle=":", linewidth=1, label="audit share target <= 0.15")
    for i, (_, value, _) in enumerate(kept):
        ratios.annotate(f"{value:.3f}", (i, value), ha="center", va="bottom", fontsize=8)
    ratios.set(title=f"inference benchmark: {data.get('jobs')} jobs, {data.get('generation_tokens')} tokens",
               ylabel="ratio", ylim=(0, 1.35 * max([0.35, *(k[1] for k in kept)])))
    ratios.title.set_fontsize(9)
    ratios.legend(fontsize=7)


def plot_light(results: dict, path: Path) -> Path:
    """Light-client verified headers/s, sequential and skipping, against the 2,000 target."""
    data = require(results, "light")
    labels, values = [], []
    for key, where in (("http", "HTTP"), ("in_process", "in-process")):
        for mode in ("sequential", "skipping"):
            value = get_optional(data, f"{key}.{mode}.headers_per_second")
            if value is not None:
                labels.append(f"{mode}\n{where}")
                values.append(value)
    if not values:
        raise NoData("light result has no http/in_process sequential/skipping headers_per_second")
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(labels, values, color=["tab:green" if v >= 2000 else "tab:red" for v in values])
    axis.set_yscale("log")
    axis.axhline(2000, color="red", linestyle="--", linewidth=1, label="target >= 2,000")
    for i, value in enumerate(values):
        axis.annotate(f"{value:,.0f}", (i, value), ha="center", va="bottom", fontsize=8)
    axis.set(title=f"light client: verified headers/s, {get_optional(data, 'chain.blocks')} blocks", ylabel="headers/s (log)")
    axis.legend(fontsize=8)
    return save(figure, path)


RULE_STYLE = {"before": ("before issue 11", "tab:gray", "--"), "after": ("after", "tab:green", "-")}


def plot_economy(results: dict, path: Path) -> Path:
    """Pool share of supply, Gini of recognition and the newcomer's weight over the simulated blocks."""
    data = require(results, "economy")
    series = data.get("series") or {}
    if not series:
        raise NoData("no series in the economy result")
    figure, (pool, gini, newcomer) = plt.subplots(1, 3, figsize=(16, 4.6))
    for rule, by_load in series.items():
        label, colour, style = RULE_STYLE.get(rule, (rule, "tab:blue", "-"))
        for load, rows in by_load.items():
            blocks = [row[0] for row in rows]
            line = dict(color=colour, linestyle=style, alpha=1.0 if load == data.get("plotted_load") else 0.5,
                        linewidth=1.8 if load == data.get("plotted_load") else 1.0, label=f"{label}, {load} load")
            pool.plot(blocks, [row[1] for row in rows], **line)
            gini.plot(blocks, [row[2] for row in rows], **line)
            newcomer.plot(blocks, [row[4] for row in rows], **line)
    for weight in (0.01, 0.10, 0.33):
        newcomer.axhline(weight, color="red", linestyle=":", linewidth=0.8)
    newcomer.axvline(data.get("join_block", 0), color="black", linestyle=":", linewidth=0.8, label="newcomer joins")
    share = f"{round(100 * data.get('plotted_newcomer_share', 0))}%"
    pool.set(title="pool share of supply", xlabel="block", ylabel="pool / supply", ylim=(0, 1))
    gini.set(title="Gini of recognition (all accounts)", xlabel="block", ylabel="Gini", ylim=(0, 1))
    newcomer.set(title=f"newcomer doing {share} of the work: its weight", xlabel="block",
                 ylabel="newcomer / total recognition", ylim=(0, 0.5))
    for axis in (pool, gini, newcomer):
        axis.legend(fontsize=7)
    figure.suptitle(f"economy: {data.get('blocks'):,} simulated blocks on the real payout code, "
                    f"seed {data.get('seed')}")
    return save(figure, path)


PLOTS = (
    ("router", "router fairness and latency across load levels and policies", plot_router),
    ("finality", "finality latency distribution (devnet)", plot_finality),
    ("replay", "replay throughput over chain length", plot_replay),
    ("verification", "verification cost against generation cost", plot_verification),
    ("light", "light client verified headers/s", plot_light),
    ("economy", "economy: pool share, Gini and a newcomer's weight over time, before and after issue 11", plot_economy),
)


def draw_all(run: dict, out_dir: Path) -> list[Plot]:
    drawn = []
    for name, title, draw in PLOTS:
        path = out_dir / f"{name}.png"
        try:
            drawn.append(Plot(name, title, draw(run["results"], path), None))
        except NoData as missing:
            path.unlink(missing_ok=True)  # a plot from an earlier run must not pass for this one's
            drawn.append(Plot(name, title, None, str(missing)))
    return drawn
