"""`make bench`: every benchmark in sequence, then one report with its plots.

    python -m benchmarks.all [--quick] [--only replay,router] [--report-only]

Each benchmark runs as its own subprocess (`python -m benchmarks.<name> --json
[--quick]`), so a crash, a timeout or a missing module is recorded as such and
the run goes on. A benchmark's result is the `benchmarks/results/<name>.json`
it wrote during this run (a file left by an earlier run is never used), or
failing that the JSON object on the last line of its stdout. While it runs, the
RSS of its process tree is sampled, and the machine's load average and cores
are recorded at the start and the end of the whole run, since the 2 cores are
shared.

Two series the plots need are measured here, also in subprocesses, by calling
the benchmarks' public functions: replay throughput against chain length for
magicoin and py-evm on the replay benchmark's cached workload
(`results/replay_series.json`), and each job's generation and verification
time on the inference benchmark's calibration prompts
(`results/inference_series.json`).

Then `benchmarks.report` writes `results/REPORT.md` and `benchmarks.plots`
draws `results/*.png`. `--report-only` redraws them from the stored run
(`results/run.json`) without running anything.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from benchmarks.targets import BENCHMARKS, TIMEOUTS_S
from economy import make_work_rules

RESULTS_DIR = Path(__file__).parent / "results"
RUN_PATH = RESULTS_DIR / "run.json"
SERIES = ("replay_series", "inference_series")
# Where replay and its series keep the built chain (default: the replay benchmark's own, shared by every run
# on the machine; LevelDB locks it, so a concurrent replay run elsewhere needs a cache of its own).
REPLAY_CACHE_ENV = "MAGICOIN_BENCH_REPLAY_CACHE"


class RunOutcome(NamedTuple):
    name: str
    status: str  # "ok", "crashed (exit N)", "timed out after N s", "missing module", "no fresh JSON"
    exit_code: int | None
    seconds: float
    cpu_s: float  # user + system CPU of the step's processes that were waited for
    peak_rss_mib: float | None  # the whole process tree, sampled
    peak_process_rss_mib: float | None  # the largest single process of the tree
    log: str
    tail: list[str]
    started_utc: str
    load_before: list[float]  # 1/5/15-minute load average when the step started
    load_after: list[float]
    data: dict | None

    def summary(self) -> dict:
        return {k: v for k, v in self._asdict().items() if k != "data"}


# --- machine ------------------------------------------------------------------------------------

def get_machine_state() -> dict:
    return {"time_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "cpu_count": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


class TreeRssSampler:
    """Samples the RSS of a process and its descendants until stopped; keeps the peaks."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.peak_total = self.peak_single = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> tuple[float | None, float | None]:
        self._stop.set()
        self._thread.join()
        mib = 2 ** 20
        return ((round(self.peak_total / mib, 1) if self.peak_total else None),
                (round(self.peak_single / mib, 1) if self.peak_single else None))

    def _run(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(self.interval):
            sizes = []
            try:
                for process in [root, *root.children(recursive=True)]:
                    try:
                        sizes.append(process.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                return
            if sizes:
                self.peak_total = max(self.peak_total, sum(sizes))
                self.peak_single = max(self.peak_single, max(sizes))


# --- one benchmark -------------------------------------------------------------------------------

def get_children_cpu_s() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def compute_command(module: str, quick: bool, extra: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", module, "--json", *(["--quick"] if quick else []), *extra]


def get_fresh_json(path: Path, since: float, stdout_text: str) -> dict | None:
    """The result written during this run: the results file if it is newer than `since`, else stdout's last line."""
    if path.exists() and path.stat().st_mtime >= since:
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    for line in reversed(stdout_text.strip().splitlines()[-1:]):
        try:
            data = json.loads(line)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    return None


def compute_status(exit_code: int | None, timed_out: bool, timeout: float, stderr_text: str, data) -> str:
    if timed_out:
        return f"timed out after {timeout:.0f} s"
    if exit_code != 0 and "No module named" in stderr_text:
        return "missing module"
    if exit_code != 0:
        return f"crashed (exit {exit_code})"
    if data is None:
        return "no fresh JSON"
    return "ok"


def run_one(name: str, module: str, result_path: Path, quick: bool, timeout: float, log_dir: Path,
            extra: tuple[str, ...] = ()) -> RunOutcome:
    """Run one benchmark module as a subprocess and collect its result."""
    command = compute_command(module, quick, extra)
    stdout_path, stderr_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    machine_before = get_machine_state()
    since = time.time() - 1  # file mtimes may be coarser than time.time()
    started = time.perf_counter()
    cpu_before = get_children_cpu_s()
    timed_out = False
    with open(stdout_path, "w") as out, open(stderr_path, "w") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=Path(__file__).parent.parent,
                                   env={**os.environ, "COLUMNS": "150"}, start_new_session=True)
        sampler = TreeRssSampler(process.pid)
        sampler.start()
        try:
            exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(process.pid, 15)  # the benchmark's own session: it and its children only
            try:
                exit_code = process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                exit_code = process.wait()
        peak_total, peak_single = sampler.stop()
    seconds = time.perf_counter() - started
    cpu_s = get_children_cpu_s() - cpu_before
    stdout_text, stderr_text = stdout_path.read_text(errors="replace"), stderr_path.read_text(errors="replace")
    data = None if timed_out or exit_code != 0 else get_fresh_json(result_path, since, stdout_text)
    status = compute_status(exit_code, timed_out, timeout, stderr_text, data)
    tail = stderr_text.strip().splitlines()[-12:] if status != "ok" else []
    return RunOutcome(name, status, exit_code, round(seconds, 1), round(cpu_s, 1), peak_total, peak_single, str(stderr_path), tail,
                      machine_before["time_utc"], machine_before["load_average"], get_machine_state()["load_average"],
                      data)


# --- series the plots need ------------------------------------------------------------------------

def get_replay_args(quick: bool) -> argparse.Namespace:
    """The replay benchmark's default workload (its cache key), as `benchmarks.replay.main` parses it."""
    return argparse.Namespace(blocks=30 if quick else 500, txs=100, accounts=1_200, seed=1, workers=1,
                              cache=os.environ.get(REPLAY_CACHE_ENV))


def measure_replay_series(quick: bool) -> dict:
    """Cumulative throughput after each block, magicoin replay and py-evm import, on the replay benchmark's cache."""
    import shutil

    from benchmarks import replay as bench
    from chain.chain import Chain
    from chain.db import LevelDB
    from chain.replay import TransactionPrefetcher, replay
    from chain.transactions import clear_sender_cache

    args = get_replay_args(quick)
    source_db, source, _ = bench.get_source_chain(args, None)
    target_dir = tempfile.mkdtemp(prefix="magicoin-bench-series-")
    target_db = LevelDB(target_dir)
    magicoin = []
    try:
        target = Chain.from_genesis(target_db, source.genesis, make_work_rules)
        clear_sender_cache()
        started = time.perf_counter()
        replay(source, target, prefetch=TransactionPrefetcher(workers=args.workers),
               progress=lambda blocks, txs: magicoin.append((blocks, txs, time.perf_counter() - started)))
    finally:
        target_db.close()
        source_db.close()
        shutil.rmtree(target_dir, ignore_errors=True)
    pyevm = measure_pyevm_series(bench, args)
    return {"benchmark": "replay_series", "quick": quick, "blocks": args.blocks, "txs_per_block": args.txs,
            "accounts": args.accounts,
            "columns": ["blocks", "transactions", "seconds"],
            "magicoin": [[b, t, round(s, 4)] for b, t, s in magicoin],
            "pyevm": [[b, t, round(s, 4)] for b, t, s in pyevm]}


def measure_pyevm_series(bench, args) -> list[tuple[int, int, float]]:
    """py-evm's `Chain.import_block` over the replay benchmark's cached blocks, timed after each block."""
    import rlp
    from eth.db.atomic import AtomicDB

    encoded_blocks = bench.get_pyevm_blocks(args)
    chain_class, vm = bench.make_pyevm_chain_class()
    _, params, state = bench.make_pyevm_genesis(args.accounts)
    importer = chain_class.from_genesis(AtomicDB(), params, state)
    block_class = vm.get_block_class()
    points, transactions = [], 0
    started = time.perf_counter()
    for number, encoded in enumerate(encoded_blocks, 1):
        block = rlp.decode(encoded, sedes=block_class)
        importer.import_block(block)
        transactions += len(block.transactions)
        points.append((number, transactions, time.perf_counter() - started))
    return points


def measure_inference_series(quick: bool) -> dict:
    """Per job: generation time and verification time on the default model (the inference benchmark's jobs).

    The inference benchmark keeps only sums and ratios; the plot of verification cost against generation
    cost needs each job, so its public `measure_jobs` is run here on the same calibration prompts.
    """
    from benchmarks.inference import make_auditor, measure_jobs
    from inference.calibration import make_calibration_jobs
    from inference.engine import load_model

    n_jobs, max_tokens = (4, 32) if quick else (24, 128)
    model = load_model()
    verifier = make_auditor(None)
    rows = measure_jobs(model, verifier, make_calibration_jobs(model.sha256, max_tokens, n_jobs))
    return {"benchmark": "inference_series", "quick": quick, "threads": model.n_threads, "max_tokens": max_tokens,
            "columns": ["prompt_tokens", "output_tokens", "generation_s", "verification_s", "accepted"],
            "jobs": [[r["prompt_tokens"], r["output_tokens"], round(r["generation_s"], 4),
                      round(r["verification_s"], 4), r["accepted"]] for r in rows]}


def run_series(name: str, quick: bool) -> None:
    measure = {"replay_series": measure_replay_series, "inference_series": measure_inference_series}[name]
    result = measure(quick)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


# --- the whole run --------------------------------------------------------------------------------

def get_plan(only: list[str] | None) -> list[tuple[str, str, Path, tuple[str, ...]]]:
    """(name, module, results file, extra args) for every step of the run, in order."""
    plan = []
    for name in BENCHMARKS:
        cache = os.environ.get(REPLAY_CACHE_ENV)
        extra = ("--cache", cache) if name == "replay" and cache else ()
        steps = [(name, f"benchmarks.{name}", RESULTS_DIR / f"{name}.json", extra)]
        if name in ("replay", "inference"):
            series = f"{name}_series"
            steps.append((series, "benchmarks.all", RESULTS_DIR / f"{series}.json", ("--series", series)))
        # `--only replay` runs replay and its series; `--only replay_series` the series alone.
        plan += [step for step in steps if not only or step[0] in only or name in only]
    return plan


def run_all(quick: bool, only: list[str] | None, run_path: Path = RUN_PATH) -> dict:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    plan = get_plan(only)
    timeout = TIMEOUTS_S["quick" if quick else "full"]
    log_dir = Path(tempfile.mkdtemp(prefix="magicoin-bench-logs-"))
    machine_start = get_machine_state()
    console.print(f"[bold]benchmarks[/] ({'quick' if quick else 'full'}) on {machine_start['cpu_count']} cores, "
                  f"load average {machine_start['load_average']}; logs in {log_dir}")
    outcomes: list[RunOutcome] = []
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        overall = progress.add_task("all benchmarks", total=len(plan))
        for name, module, path, extra in plan:
            current = progress.add_task(name, total=1)
            outcome = run_one(name, module, path, quick, timeout, log_dir, extra)
            progress.update(current, completed=1,
                            description=f"{name}: {outcome.status} ({outcome.seconds:.0f} s)")
            progress.advance(overall)
            outcomes.append(outcome)
    machine_end = get_machine_state()
    run = {"quick": quick, "wall_s": round(sum(o.seconds for o in outcomes), 1),
           "machine": {"start": machine_start, "end": machine_end}, "log_dir": str(log_dir),
           "runs": [o.summary() for o in outcomes],
           "results": {o.name: o.data for o in outcomes}}
    if only:
        run = merge_runs(get_stored_run(run_path, quick), run)
    run_path.write_text(json.dumps(run, indent=1) + "\n")
    return run


def get_stored_run(run_path: Path, quick: bool) -> dict | None:
    """The stored run of the same mode, to which an `--only` run adds its steps."""
    try:
        stored = json.loads(run_path.read_text())
    except (OSError, ValueError):
        return None
    return stored if stored.get("quick") == quick else None


def merge_runs(stored: dict | None, new: dict) -> dict:
    """`stored` with the steps of `new` replacing its own: each step keeps its own time and load average."""
    if stored is None:
        return new
    order = [name for name, *_ in get_plan(None)]
    runs = {o["name"]: o for o in stored["runs"]} | {o["name"]: o for o in new["runs"]}
    results = stored["results"] | new["results"]
    merged_runs = sorted(runs.values(), key=lambda o: order.index(o["name"]) if o["name"] in order else len(order))
    return {"quick": new["quick"], "wall_s": round(sum(o["seconds"] for o in merged_runs), 1),
            "machine": {"start": stored["machine"]["start"], "end": new["machine"]["end"]},
            "log_dir": new["log_dir"], "runs": merged_runs, "results": results, "merged": True}


def write_outputs(run: dict, out_dir: Path = RESULTS_DIR):
    from benchmarks import plots, report

    drawn = plots.draw_all(run, out_dir)
    report.write_report(run, out_dir / "REPORT.md", drawn)
    return drawn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each benchmark in --quick mode (under 5 minutes)")
    parser.add_argument("--only", default=None, help="comma-separated benchmarks or series to run (default: all); "
                        "merged into the stored run of the same mode")
    parser.add_argument("--report-only", action="store_true", help="rewrite REPORT.md and plots from results/run.json")
    parser.add_argument("--series", choices=SERIES, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # steps are always run with --json
    args = parser.parse_args(argv)
    if args.series:
        run_series(args.series, args.quick)
        return
    if args.report_only:
        run = json.loads(RUN_PATH.read_text())
    else:
        run = run_all(args.quick, args.only.split(",") if args.only else None)
    write_outputs(run)
    from benchmarks.report import print_summary

    print_summary(run)


if __name__ == "__main__":
    main()
