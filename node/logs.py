"""Structured logs: one JSON object per line on stderr (or a file), for people and for log pipelines.

Every record carries time (UTC, ISO 8601 with ms), level, logger and message,
plus `node` (a short id set once per process) and any `extra={...}` fields.
"""
from __future__ import annotations

import faulthandler
import json
import logging
import os
import sys
import time
from pathlib import Path

RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonLinesFormatter(logging.Formatter):
    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if self.node:
            entry["node"] = self.node
        for key, value in record.__dict__.items():
            if key not in RESERVED and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, str, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str = "info", *, node: str = "", json_lines: bool = True, stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLinesFormatter(node))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


# --- crashes: loud, with every thread's stack -------------------------------------------------------

CRASH_FILE = "crash.log"
MAX_CRASH_FILE_BYTES = 1 << 20  # a node crashing in a loop must not fill the disk: one rotation at start-up
TEST_CRASH_VARIABLE = "MAGICOIN_TEST_CRASH"
FATAL_MARKER = "Fatal Python error"
RUN_HEADER = "--- magicoin pid="

_crash_file = None  # faulthandler writes to the descriptor at crash time: the file must stay open
crash_logger = logging.getLogger("node.crash")


class CrashHookError(RuntimeError):
    """Raised by the MAGICOIN_TEST_CRASH=raise test hook: an exception that ends the node."""


def enable_crash_traces(datadir: Path | None = None) -> Path | None:
    """faulthandler on: a segfault, abort or fatal error prints every thread's Python stack.

    Without a datadir (the light client, or before the config is read) the trace goes to stderr,
    the process's log stream. With one it goes to `<datadir>/crash.log`, which survives the
    process and its terminal (faulthandler writes to a single file; stderr's log may be lost
    under a supervisor that rotates it, a file next to the chain is where one looks after a crash).
    """
    global _crash_file
    if datadir is None:
        faulthandler.enable(file=sys.stderr, all_threads=True)
        return None
    path = Path(datadir) / CRASH_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        report_previous_crash(path)
        rotate_if_large(path)
        handle = open(path, "a", encoding="utf-8")
    except OSError as error:
        crash_logger.warning("crash traces go to stderr: %s unwritable", path, extra={"error": str(error)})
        faulthandler.enable(file=sys.stderr, all_threads=True)
        return None
    handle.write(f"{RUN_HEADER}{os.getpid()} started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} ---\n")
    handle.flush()
    faulthandler.enable(file=handle, all_threads=True)
    previous, _crash_file = _crash_file, handle
    if previous is not None:
        previous.close()
    return path


def report_previous_crash(path: Path) -> None:
    """One warning line when the last run recorded in crash.log ended in a fatal error (read on the next start)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            tail = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return
    last_run = tail.rsplit(RUN_HEADER, 1)[-1]
    if FATAL_MARKER in last_run:
        first = next(line for line in last_run.splitlines() if FATAL_MARKER in line)
        crash_logger.warning("the previous run crashed; its stacks are in %s", path, extra={"crash": first.strip()})


def rotate_if_large(path: Path) -> None:
    if path.exists() and path.stat().st_size > MAX_CRASH_FILE_BYTES:
        path.replace(path.with_name(CRASH_FILE + ".1"))


def log_fatal(error: BaseException, *, datadir: Path | None, height: int | None, traceback: bool) -> None:
    """The one line that says why the node ended: what failed, where (datadir) and at which height."""
    crash_logger.critical(
        "fatal: %s: %s", type(error).__name__, error,
        extra={"fatal": True, "error_type": type(error).__name__, "error": str(error),
               "datadir": None if datadir is None else str(datadir), "height": height},
        exc_info=error if traceback else None,
    )


def trigger_test_crash() -> None:
    """Test hook, inert unless MAGICOIN_TEST_CRASH is set: `segv` crashes the interpreter (faulthandler's own
    deliberate segfault), `raise` raises CrashHookError. Used by tests/node/test_crash.py to prove crashes are loud."""
    kind = os.environ.get(TEST_CRASH_VARIABLE, "")
    if kind == "segv":
        faulthandler._sigsegv()
    elif kind == "raise":
        raise CrashHookError(f"{TEST_CRASH_VARIABLE}=raise")
