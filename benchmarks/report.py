"""REPORT.md: every figure of one benchmark run against its target and its same-run baseline.

Owns the report's wording. The figures, targets and baselines are in
`benchmarks.targets`; the run (results, exit statuses, machine load) is what
`benchmarks.all` collected. A figure whose benchmark crashed, timed out or
lacks the key is listed with that reason instead of a number.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.targets import FIGURES, Judgement, get_optional, judge


def format_value(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        text = f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit and unit != "x" else (f"{text}x" if unit == "x" else text)


def format_target(judgement: Judgement) -> str:
    figure = judgement.figure
    if figure.op is None:
        return "–"
    if isinstance(figure.target, str):
        return f"{figure.op} {format_value(judgement.target, figure.unit)} (`{figure.target}`)"
    return f"{figure.op} {format_value(figure.target, figure.unit)}"


def format_status(status: str) -> str:
    return {"met": "**met**", "missed": "**MISSED**"}.get(status, status)


def get_absent_reason(run: dict, benchmark: str) -> str:
    for outcome in run["runs"]:
        if outcome["name"] == benchmark:
            return outcome["status"] if outcome["status"] != "ok" else "no result"
    return "not run"


def compute_judgements(run: dict) -> list[Judgement]:
    results = run["results"]
    return [judge(figure, results.get(figure.benchmark), get_absent_reason(run, figure.benchmark))
            for figure in FIGURES]


def render_figures_table(judgements: list[Judgement]) -> list[str]:
    lines = ["| benchmark | figure | measured | target | status | baseline (same run) |",
             "|---|---|---|---|---|---|"]
    for j in judgements:
        baselines = "; ".join(f"{label}: {format_value(value, j.figure.unit)}" for label, value in j.baselines)
        lines.append(f"| {j.figure.benchmark} | {j.figure.name} | {format_value(j.value, j.figure.unit)} | "
                     f"{format_target(j)} | {format_status(j.status)} | {baselines or '–'} |")
    return lines


def render_runs_table(run: dict) -> list[str]:
    lines = ["| step | started (UTC) | status | exit | wall s | CPU s | peak RSS of its processes (MiB, sum / largest) "
             "| load average before -> after |",
             "|---|---|---|---|---|---|---|---|"]
    for o in run["runs"]:
        rss = f"{format_value(o['peak_rss_mib'])} / {format_value(o['peak_process_rss_mib'])}"
        lines.append(f"| {o['name']} | {o.get('started_utc', '–')} | {o['status']} | {o['exit_code']} | {o['seconds']} | "
                     f"{o.get('cpu_s', '–')} | {rss} | {o.get('load_before', '–')} -> {o.get('load_after', '–')} |")
    total_cpu = sum(o.get("cpu_s") or 0 for o in run["runs"])
    lines.append(f"| total | | | | {run.get('wall_s', '–')} | {total_cpu:.1f} | | |")
    if run.get("merged"):
        lines += ["", "Some steps were re-run on their own (`--only`) and merged into this run; each keeps its own start "
                      "time and load average above."]
    return lines


def render_failures(run: dict) -> list[str]:
    lines = []
    for o in run["runs"]:
        if o["status"] != "ok":
            lines += ["", f"**{o['name']}: {o['status']}** (log `{o['log']}`), last lines of stderr:", "", "```",
                      *(o["tail"] or ["(empty)"]), "```"]
    return lines


def render_memory(run: dict) -> list[str]:
    results = run["results"]
    network, light = results.get("network"), results.get("light")
    lines = ["| process | peak RSS | source |", "|---|---|---|"]
    for node, mib in (get_optional(network, "peak_rss_mib") or {}).items() if network else ():
        lines.append(f"| devnet {node} (validator + worker, model loaded) | {mib} MiB | network benchmark (psutil) |")
    if not network:
        lines.append(f"| devnet node | – | network benchmark: {get_absent_reason(run, 'network')} |")
    light_rss = get_optional(light, "http.peak_rss_mb") if light else None
    lines.append(f"| light client alone (HTTP mode, its own process) | {format_value(light_rss, 'MiB')} | light benchmark"
                 f"{'' if light else ': ' + get_absent_reason(run, 'light')} |")
    for o in run["runs"]:
        lines.append(f"| `benchmarks.{o['name']}` process tree (sum / largest process) | "
                     f"{format_value(o['peak_rss_mib'])} / {format_value(o['peak_process_rss_mib'])} MiB | "
                     f"sampled by benchmarks.all every 0.25 s |")
    return lines


def render_machine(run: dict) -> list[str]:
    start, end = run["machine"]["start"], run["machine"]["end"]
    return [f"- wall time of all steps: {run.get('wall_s', '–')} s (CPU seconds per step in the Runs table: "
            f"with a load average above the core count, wall time is mostly waiting for a core)",
            f"- cores: {start['cpu_count']} (shared with other users' processes; wall-clock rates fall with load)",
            f"- load average (1/5/15 min) at the start, {start['time_utc']} UTC: {start['load_average']}",
            f"- load average at the end, {end['time_utc']} UTC: {end['load_average']}"]


def count_statuses(judgements: list[Judgement]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for j in judgements:
        key = j.status if j.status in ("met", "missed", "no target") else "no value"
        counts[key] = counts.get(key, 0) + 1
    return counts


def render_plots(plots) -> list[str]:
    lines = []
    for plot in plots:
        if plot.path is None:
            lines += [f"- {plot.title}: **not drawn**, {plot.missing}"]
        else:
            lines += [f"### {plot.title}", "", f"![{plot.title}]({plot.path.name})", ""]
    return lines


def render_report(run: dict, plots) -> str:
    judgements = compute_judgements(run)
    counts = count_statuses(judgements)
    mode = "quick (`make bench-quick`, every benchmark with --quick)" if run["quick"] else "full (`make bench`)"
    lines = [
        "# magicoin benchmark report", "",
        f"Mode: {mode}. Generated by `python -m benchmarks.all`; every number below comes from this run's "
        f"`benchmarks/results/<benchmark>.json` (stale files from earlier runs are not used).", "",
        "## Machine", "", *render_machine(run), "",
        "## Figures against targets", "",
        f"{counts.get('met', 0)} met, {counts.get('missed', 0)} missed, {counts.get('no target', 0)} reported "
        f"without a target, {counts.get('no value', 0)} without a value (reason in the status column).", "",
        *render_figures_table(judgements), "",
        "Baselines measured in the same run: py-evm's `Chain.import_block` for replay; least-loaded, round-robin and "
        "random for the router; direct llama.cpp in the benchmark's process for network inference; generation time "
        "for verification cost; for the economy, the payout rule before issue 11 (claims at units x 10^9 wei, scaled "
        "down only beyond the budget) on the same simulated job stream.", "",
        "## Memory", "", *render_memory(run), "",
        "## Runs", "", *render_runs_table(run), *render_failures(run), "",
        "## Plots", "",
        *render_plots(plots),
    ]
    return "\n".join(lines) + "\n"


def write_report(run: dict, path: Path, plots) -> None:
    path.write_text(render_report(run, plots))


def print_summary(run: dict) -> None:
    """The figures table on the terminal, coloured by status."""
    from rich.console import Console
    from rich.table import Table

    colours = {"met": "green", "missed": "red", "no target": "dim"}
    table = Table(title=f"benchmarks ({'quick' if run['quick'] else 'full'}): figures against targets")
    for column in ("benchmark", "figure", "measured", "target", "status", "baseline"):
        table.add_column(column)
    for j in compute_judgements(run):
        colour = colours.get(j.status, "yellow")
        baselines = "; ".join(f"{label}: {format_value(value, j.figure.unit)}" for label, value in j.baselines)
        table.add_row(j.figure.benchmark, j.figure.name, format_value(j.value, j.figure.unit), format_target(j),
                      f"[{colour}]{j.status}[/]", baselines)
    console = Console(width=200)
    console.print(table)
    start, end = run["machine"]["start"], run["machine"]["end"]
    console.print(f"load average {start['load_average']} -> {end['load_average']} on {start['cpu_count']} cores; "
                  f"report: benchmarks/results/REPORT.md")

