"""How every benchmark hands over its result: the results file, and the object as stdout's last line."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def write_result(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def print_result_line(result: dict) -> None:
    # One line, printed last: `--json` callers (benchmarks.all, scripts) read stdout's last line.
    print(json.dumps(result), flush=True)


def finish_benchmark(report: dict, path: Path, print_table: Callable[[dict], None], as_json: bool) -> dict:
    """Every benchmark's last steps: the results file, the table (stderr), and with --json the object last."""
    write_result(report, path)
    print_table(report)
    if as_json:
        print_result_line(report)
    return report
