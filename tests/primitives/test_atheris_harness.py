"""Runs the optional atheris harness (`atheris_harness.py`) for a few thousand inputs when atheris is
importable; skipped otherwise (it is not a project dependency, see the harness's docstring)."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("atheris_harness.py")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed (optional)")
def test_the_atheris_harness_finds_nothing_in_a_short_run(tmp_path):
    result = subprocess.run(
        [sys.executable, str(HARNESS), "-runs=5000", "-timeout=10", "-rss_limit_mb=2048", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 5000 runs" in result.stderr, result.stderr[-2000:]
