"""The benchmark report and plots, from a real quick run's stored results, and the runner's failure statuses.

These test the benchmarks' own plumbing, so they live in the benchmarks
package (the product's tests under `tests/` never import it); pytest collects
them through `testpaths`.

`data/quick_run.json` is the `benchmarks/results/run.json` of a real
`python -m benchmarks.all --quick` on the shared 2-core machine; in it the
inference benchmark timed out, so the report's handling of a failed step is
checked on real data too. The economy step (issue 11) was added later from a real
`benchmarks.all --quick --only economy` run, merged in as `--only` merges.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import matplotlib.image
import pytest

from benchmarks import all as bench_all
from benchmarks.report import compute_judgements, format_value
from benchmarks.targets import FIGURES, Figure, get_path, judge

QUICK_RUN = Path(__file__).with_name("data") / "quick_run.json"


@pytest.fixture(scope="module")
def run() -> dict:
    return json.loads(QUICK_RUN.read_text())


@pytest.fixture(scope="module")
def outputs(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    drawn = bench_all.write_outputs(run, out)
    return out, drawn, (out / "REPORT.md").read_text()


def table_rows(report: str) -> list[list[str]]:
    start = report.index("## Figures against targets")
    section = report[start:report.index("## Memory")]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows[1:]]  # without the header


def test_every_figure_has_a_row_in_order(outputs):
    _, _, report = outputs
    rows = table_rows(report)
    assert [(r[0], r[1]) for r in rows] == [(f.benchmark, f.name) for f in FIGURES]


def test_statuses_follow_the_numbers(run, outputs):
    _, _, report = outputs
    rows = {(r[0], r[1]): r for r in table_rows(report)}
    results = run["results"]
    ratio = results["replay"]["ratio"]
    assert rows[("replay", "replay speed-up over py-evm")][4] == ("**met**" if ratio >= 5 else "**MISSED**")
    for load in ("30", "60", "90"):
        ours = results["router"]["results"][load]
        row = rows[("router", f"{load}% load: job latency p99")]
        expected = ours["whoever_needs_most"]["latency_p99_s"] <= ours["least_loaded"]["latency_p99_s"]
        assert row[4] == ("**met**" if expected else "**MISSED**")
        assert format_value(ours["least_loaded"]["latency_p99_s"], "s") in row[5]  # the same-run baseline
    decided = results["network"]["finality"]["p50_s"]
    assert rows[("network", "finality: first proposal -> decided, p50")][2] == format_value(decided, "s")


def test_a_failed_step_is_reported_not_dropped(run, outputs):
    _, drawn, report = outputs
    failed = {o["name"]: o["status"] for o in run["runs"] if o["status"] != "ok"}
    assert failed == {"inference": "timed out after 150 s"}
    inference_rows = [r for r in table_rows(report) if r[0] == "inference"]
    assert inference_rows and all(r[4] == failed["inference"] for r in inference_rows)
    assert f"**inference: {failed['inference']}**" in report
    verification = next(p for p in drawn if p.name == "verification")
    assert verification.path is None and "inference" in verification.missing
    assert "verification cost against generation cost: **not drawn**" in report


def test_plots_are_real_images(outputs):
    out, drawn, report = outputs
    for plot in drawn:
        if plot.path is None:
            continue
        image = matplotlib.image.imread(plot.path)
        assert image.shape[0] > 300 and image.shape[1] > 500
        assert image.std() > 0.05, f"{plot.name} looks blank"
        assert f"]({plot.path.name})" in report
    assert {p.name for p in drawn if p.path} == {"router", "finality", "replay", "light", "economy"}


def test_machine_and_memory_sections(run, outputs):
    _, _, report = outputs
    assert str(run["machine"]["start"]["load_average"]) in report
    assert str(run["machine"]["end"]["load_average"]) in report
    for node, mib in run["results"]["network"]["peak_rss_mib"].items():
        assert f"| devnet {node} " in report and f"{mib} MiB" in report
    assert f"{run['results']['light']['http']['peak_rss_mb']} MiB" in report


def test_judge_targets_from_the_same_run():
    data = {"ours": 3.0, "base": 4.0, "nested": {"list": [1, 2]}}
    assert judge(Figure("x", "p99", "ours", "s", "<=", "base"), data).status == "met"
    assert judge(Figure("x", "p99", "base", "s", "<=", "ours"), data).status == "missed"
    assert judge(Figure("x", "f", "nested.list.1", "", "==", 2), data).status == "met"
    assert judge(Figure("x", "f", "nested.gone", "", "==", 2), data).status == "missing key 'gone'"
    assert judge(Figure("x", "f", "ours"), data).status == "no target"
    assert judge(Figure("x", "f", "ours", "", ">=", 1), None, "crashed (exit 1)").status == "crashed (exit 1)"
    assert get_path(data, "nested.list.0") == 1


def test_stale_results_file_is_not_used(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"from": "file"}))
    old = time.time() - 3600
    os.utime(path, (old, old))
    assert bench_all.get_fresh_json(path, time.time() - 1, "table\n") is None
    assert bench_all.get_fresh_json(path, time.time() - 1, 'table\n{"from": "stdout"}\n') == {"from": "stdout"}
    path.write_text(json.dumps({"from": "file"}))
    assert bench_all.get_fresh_json(path, old, "") == {"from": "file"}


def test_missing_module_and_crash_are_reported(tmp_path):
    missing = bench_all.run_one("ghost", "benchmarks.ghost_does_not_exist", tmp_path / "ghost.json", True, 60,
                                tmp_path)
    assert missing.status == "missing module" and missing.data is None
    assert any("No module named" in line for line in missing.tail)
    # benchmarks.all refuses an unknown series: a real non-zero exit of a real module.
    crashed = bench_all.run_one("bad", "benchmarks.all", tmp_path / "bad.json", True, 60, tmp_path,
                                ("--series", "no_such_series"))
    assert crashed.status == "crashed (exit 2)" and crashed.exit_code == 2


def test_judgements_cover_the_stored_run(run):
    judgements = compute_judgements(run)
    assert len(judgements) == len(FIGURES)
    assert all(j.status != "no result" for j in judgements if j.figure.benchmark != "inference")


def test_only_run_merges_into_the_stored_run_of_its_mode(run, tmp_path):
    run_path = tmp_path / "run.json"
    run_path.write_text(json.dumps(run))
    rerun = {"quick": True, "wall_s": 1.0, "machine": {"start": {}, "end": {"load_average": [1.0, 1.0, 1.0]}},
             "log_dir": "x", "runs": [{"name": "inference", "status": "ok", "seconds": 1.0}],
             "results": {"inference": {"false_rejections": 0}}}
    merged = bench_all.merge_runs(bench_all.get_stored_run(run_path, True), rerun)
    assert [o["name"] for o in merged["runs"]] == [o["name"] for o in run["runs"]]
    assert next(o for o in merged["runs"] if o["name"] == "inference")["status"] == "ok"
    assert merged["results"]["router"] == run["results"]["router"] and merged["merged"]
    assert bench_all.get_stored_run(run_path, False) is None  # a full re-run never mixes with a quick run


def test_economy_rows_judge_the_rule_after_against_the_rule_before(run, outputs):
    _, _, report = outputs
    rows = {(r[0], r[1]): r for r in table_rows(report)}
    after = run["results"]["economy"]["results"]["after"]["busy"]["25pct"]
    before = run["results"]["economy"]["results"]["before"]["busy"]["25pct"]
    row = rows[("economy", "busy: newcomer at 25% of the work, blocks to 10% of the weight")]
    blocks = after["blocks_to_weight"]["10pct"]
    assert row[2] == format_value(blocks, "blocks")
    assert row[4] == ("**met**" if blocks is not None and blocks <= 2_000 else "**MISSED**")
    assert format_value(before["blocks_to_weight"]["10pct"], "blocks") in row[5]
    pool = rows[("economy", "busy: pool share of supply after 10,000 blocks")]
    assert pool[4] == ("**met**" if after["pool_share_final"] <= 0.10 else "**MISSED**")
