"""contrib/systemd: the example node.toml is a valid node configuration, and the unit runs what it documents."""
from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from node.config import build_config

CONTRIB = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def test_example_toml_loads_as_a_node_configuration():
    config = build_config(CONTRIB / "node.toml", {})
    assert config.datadir == Path("/var/lib/magicoin/chain")
    assert config.genesis == Path("/etc/magicoin/genesis.json")
    assert config.http_enabled and config.http_port == 8545 and config.p2p_port == 30303
    assert config.metrics and not config.worker and config.log_format == "json"


def read_unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(CONTRIB / "magicoin-node.service")
    return unit


def test_unit_restarts_on_failure_with_the_documented_command_and_a_writable_datadir():
    service = read_unit()["Service"]
    assert service["ExecStart"] == "/opt/magicoin/.venv/bin/magicoin node --config /etc/magicoin/node.toml"
    assert service["Restart"] == "on-failure" and service["User"] == "magicoin"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    datadir = build_config(CONTRIB / "node.toml", {}).datadir
    assert any(datadir.is_relative_to(path) for path in map(Path, service["ReadWritePaths"].split()))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_finds_no_error_in_the_unit():
    result = subprocess.run(["systemd-analyze", "verify", str(CONTRIB / "magicoin-node.service")],
                            capture_output=True, text=True, timeout=60)
    # The unit names a binary that exists only once installed; everything else must be clean.
    problems = [line for line in result.stderr.splitlines() if line.strip() and "/opt/magicoin" not in line]
    assert not problems, result.stderr
