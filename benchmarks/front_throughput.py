"""Batched eth_sendRawTransaction through the HTTP front process against the same through the thread server.

The front process (`node.rpc_front`, the default since issue 14) adds a hop: a
body is parsed there, then sent to the node over a unix socket. This measures
what that hop costs where it matters most, the network benchmark's throughput
phase (`benchmarks.network.measure_tx_throughput`: 4,000 pre-signed offerings
from 400 accounts, sent as batches over the four nodes): on a 4-validator devnet
without worker duties, once with `--http.front process` and once with
`--http.front thread`, alternating, `--rounds` times each. Signing time (in this
process) is reported beside each run: it tells how busy the machine was.

Run: ``python -m benchmarks.front_throughput [--json] [--rounds 2]``; writes
benchmarks/results/front_throughput.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.network import measure_tx_throughput
from benchmarks.results_io import finish_benchmark
from node.devnet import Devnet, make_free_config

RESULTS_PATH = Path(__file__).parent / "results" / "front_throughput.json"
FRONTS = ("process", "thread")
FIGURES = ("signing_s", "rpc_submit_s", "rpc_accept_per_s", "finalised_tx_per_s")


def measure_front(front: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="magicoin-bench-front-") as datadir:
        devnet = Devnet(make_free_config(Path(datadir), 4, worker=False, extra_args=("--http.front", front)))
        devnet.start()
        try:
            devnet.wait_until_serving(timeout=180)
            time.sleep(3)  # consensus settles
            result = measure_tx_throughput(devnet, 400, 10, 120)
        finally:
            devnet.stop()
    return {"front": front, **{key: result[key] for key in FIGURES}, "included": result["included"]}


def compute_medians(runs: list[dict]) -> dict:
    return {front: {key: round(statistics.median(r[key] for r in runs if r["front"] == front), 2) for key in FIGURES}
            for front in FRONTS}


def run_benchmark(rounds: int) -> dict:
    load_before = os.getloadavg()
    runs = [measure_front(front) for _ in range(rounds) for front in FRONTS]
    medians = compute_medians(runs)
    return {
        "benchmark": "front_throughput",
        "setup": "4 `magicoin node` processes on 127.0.0.1, no worker duties; 4,000 offerings from 400 accounts "
                 "as batched eth_sendRawTransaction over the four nodes (benchmarks.network's throughput phase)",
        "rounds": rounds,
        "cpu_count": os.cpu_count(),
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
        "runs": runs,
        "medians": medians,
        "process_vs_thread_finalised": round(medians["process"]["finalised_tx_per_s"]
                                             / medians["thread"]["finalised_tx_per_s"], 3),
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="batched eth_sendRawTransaction: HTTP front process vs thread (4 validators)")
    for column in ("run", "front", "signing s", "RPC submit s", "RPC accepted /s", "finalised tx/s"):
        table.add_column(column)
    for index, run in enumerate(report["runs"]):
        table.add_row(str(index + 1), run["front"], f"{run['signing_s']}", f"{run['rpc_submit_s']}",
                      f"{run['rpc_accept_per_s']}", f"{run['finalised_tx_per_s']}")
    for front, median in report["medians"].items():
        table.add_row("median", front, f"{median['signing_s']}", f"{median['rpc_submit_s']}",
                      f"{median['rpc_accept_per_s']}", f"{median['finalised_tx_per_s']}")
    console = Console(stderr=True, width=140)
    console.print(table)
    console.print(f"finalised tx/s, process / thread: {report['process_vs_thread_finalised']}; load average "
                  f"{report['load_average']['before']} -> {report['load_average']['after']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report last on stdout")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each front, alternating")
    args = parser.parse_args(argv)
    return finish_benchmark(run_benchmark(args.rounds), RESULTS_PATH, print_table, args.json)


if __name__ == "__main__":
    main()
