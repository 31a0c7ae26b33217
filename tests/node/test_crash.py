"""Crashes are loud: a real `magicoin node` process that segfaults leaves every thread's stack in crash.log,
and one that dies of an exception says so in one JSON line with its datadir and height.

The crashes come from the MAGICOIN_TEST_CRASH test hook (node.logs.trigger_test_crash), inert without it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

from genesis import DEVNET_GENESIS_PATH
from node.devnet import find_free_port_range, get_magicoin_command
from node.logs import CRASH_FILE, TEST_CRASH_VARIABLE


def run_crashing_node(datadir, crash: str) -> subprocess.CompletedProcess:
    command = get_magicoin_command() + [
        "node", "--datadir", str(datadir), "--genesis", str(DEVNET_GENESIS_PATH), "--no-http",
        "--p2p.port", str(find_free_port_range(1)), "--log.format", "json",
    ]
    env = {**os.environ, TEST_CRASH_VARIABLE: crash}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def parse_json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue  # click's "Error:" line and tracebacks are not JSON
    return lines


def test_segfault_leaves_all_stacks_in_crash_log_and_the_next_run_says_so(tmp_path):
    crashed = run_crashing_node(tmp_path, "segv")
    assert crashed.returncode == -signal.SIGSEGV, crashed.stderr
    trace = (tmp_path / CRASH_FILE).read_text()
    assert "Fatal Python error: Segmentation fault" in trace, trace
    assert 'File "' in trace and "trigger_test_crash" in trace and "run_node" in trace, trace

    ended = run_crashing_node(tmp_path, "raise")
    assert ended.returncode == 1, ended.stderr
    lines = parse_json_lines(ended.stderr)
    assert any("previous run crashed" in line["msg"] and "Segmentation fault" in line.get("crash", "")
               for line in lines), ended.stderr
    fatal = [line for line in lines if line.get("fatal")]
    assert len(fatal) == 1, ended.stderr
    assert fatal[0]["level"] == "critical" and fatal[0]["error_type"] == "CrashHookError"
    assert fatal[0]["height"] == 0 and fatal[0]["datadir"] == str(tmp_path)
    assert "Traceback" in fatal[0]["exc"]  # not one of the expected errors: a bug keeps its traceback
