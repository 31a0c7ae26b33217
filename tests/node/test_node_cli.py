"""`magicoin node` as a real OS process: TOML config + flags, blocks on a one-validator genesis, SIGTERM."""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
from eth_utils import keccak

from chain.chain import Chain
from chain.db import LevelDB
from genesis import make_genesis, save_genesis
from genesis.keys import get_address
from node.config import build_config
from node.exceptions import ConfigError

import pytest
from economy import make_work_rules


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rpc(url: str, method: str, params=()) -> object:
    response = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}, timeout=5)
    return response.json()["result"]


def test_node_process_makes_blocks_and_stops_cleanly_on_sigterm(tmp_path):
    key = keccak(b"cli-test-validator")
    (tmp_path / "validator.hex").write_text("0x" + key.hex() + "\n")
    save_genesis(make_genesis(5151, [get_address(key)], timestamp_ms=1_700_000_000_000), tmp_path / "genesis.json")
    http_port = free_port()
    (tmp_path / "node.toml").write_text(
        f'datadir = "{tmp_path / "data"}"\ngenesis = "{tmp_path / "genesis.json"}"\n'
        f'[http]\nport = {http_port}\n[p2p]\nport = 0\n'
    )
    command = [sys.executable, "-c", "from node.cli import main; main()", "node", "--config", str(tmp_path / "node.toml"),
               "--validator-key", str(tmp_path / "validator.hex"), "--block-interval", "0.1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.monotonic() + 60
        height = 0
        while height < 3:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no blocks within 60 s"
            try:
                height = int(rpc(url, "eth_blockNumber"), 16)
            except (httpx.HTTPError, KeyError):
                pass
            time.sleep(0.2)
        status = rpc(url, "muagic_status")
        assert status["role"] == "validator" and status["address"] == "0x" + get_address(key).hex()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    logs = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert any(entry["msg"] == "shutting down on SIGTERM" for entry in logs)
    stopped = [entry for entry in logs if entry["msg"].startswith("node stopped height=")]
    assert stopped, stderr
    final_height = int(stopped[-1]["msg"].rsplit("=", 1)[1])
    assert final_height >= 3
    db = LevelDB(tmp_path / "data" / "chaindata")
    try:
        chain = Chain.open(db, make_work_rules)
        assert chain.height == final_height
        assert chain.get_commit(chain.head.hash) is not None  # the head's own commit was kept
    finally:
        db.close()


def test_config_file_and_flags(tmp_path):
    (tmp_path / "a.toml").write_text('"http.port" = 9000\nbootnodes = ["x@127.0.0.1:1"]\n[metrics]\nenabled = true\n'
                                     'port = 7000\n[consensus]\ntimeouts-ms = [100, 50, 50, 10]\n')
    config = build_config(tmp_path / "a.toml", {"http.port": 9100, "p2p.port": None})
    assert config.http_port == 9100 and config.metrics and config.metrics_port == 7000
    assert config.bootnodes == ("x@127.0.0.1:1",) and config.timeouts_ms == (100, 50, 50, 10)
    assert config.p2p_port == 30303
    (tmp_path / "b.toml").write_text('unknown = 1\n')
    with pytest.raises(ConfigError):
        build_config(tmp_path / "b.toml", {})
    with pytest.raises(ConfigError):
        build_config(None, {"http.port": "many"})


def test_http_front_server_budget_and_ban_exemptions_are_configurable(tmp_path):
    from node.cli_node import make_node
    from node.config import get_rpc_limits

    (tmp_path / "h.toml").write_text('[http]\nfront = "thread"\nserver-rate-limit = 500\n'
                                     '[p2p]\nban-exempt = ["10.0.0.7"]\n')
    config = build_config(tmp_path / "h.toml", {"datadir": str(tmp_path / "d"), "p2p.port": 0})
    limits = get_rpc_limits(config)
    assert not limits.front_process and limits.server_rate_limit == 500
    assert get_rpc_limits(build_config(None, {})).front_process  # the front process is the default
    node = make_node(config)
    try:
        assert node.p2p.config.ip_ban_exempt == ("10.0.0.7",)
    finally:
        node.db.close()
    assert build_config(None, {"p2p.ban-exempt": "10.0.0.1, 10.0.0.2"}).p2p_ban_exempt == ("10.0.0.1", "10.0.0.2")
    with pytest.raises(ConfigError, match="http.front"):
        build_config(None, {"http.front": "fork"})


def test_worker_capacity_and_threads_from_file_or_flags(tmp_path):
    (tmp_path / "w.toml").write_text('[worker]\nenabled = true\ncapacity = 40\nthreads = 2\n')
    config = build_config(tmp_path / "w.toml", {"worker.threads": 1})
    assert config.worker and config.worker_capacity == 40 and config.worker_threads == 1
    assert build_config(None, {}).worker_capacity == 0  # measured at start-up
    with pytest.raises(ConfigError, match="worker.capacity"):
        build_config(None, {"worker.capacity": -5})


def test_validator_key_from_keystore_or_raw_hex(tmp_path):
    from genesis.keys import write_keystore
    from node.config import read_validator_key
    from node.exceptions import KeyFileError

    key = keccak(b"keystore-test")
    path = write_keystore(tmp_path / "keystore.json", key, "s3cret")
    (tmp_path / "password").write_text("s3cret\n")
    assert read_validator_key(path, tmp_path / "password") == key
    (tmp_path / "wrong").write_text("nope\n")
    with pytest.raises(KeyFileError):
        read_validator_key(path, tmp_path / "wrong")
    with pytest.raises(KeyFileError):
        read_validator_key(path, None)  # a keystore needs its password file
    (tmp_path / "raw").write_text(key.hex())
    assert read_validator_key(tmp_path / "raw", None) == key
    (tmp_path / "short").write_text("abcd")
    with pytest.raises(KeyFileError):
        read_validator_key(tmp_path / "short", None)


async def test_metrics_are_served_over_http(tmp_path):
    import trio

    from tests.node.nodekit import VALIDATOR_KEYS, make_node, make_test_genesis, wait_for_height

    port = free_port()
    node = make_node(make_test_genesis(1), tmp_path / "n", VALIDATOR_KEYS[0], metrics_address=("127.0.0.1", port))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await wait_for_height([node], 3)
            await trio.sleep(1.1)  # the gauges refresh every second
            async with httpx.AsyncClient() as client:
                text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            values = {line.split(" ")[0]: float(line.split(" ")[1]) for line in text.splitlines()
                      if line and not line.startswith("#")}
            assert values["magicoin_chain_height"] >= 3
            assert values["magicoin_finality_seconds_count"] >= 3
            assert values["magicoin_mempool_size"] == 0 and values["magicoin_p2p_peers"] == 0
            nursery.cancel_scope.cancel()


def test_another_chains_datadir_is_refused_and_released(tmp_path):
    from chain.chain import GenesisMismatch
    from tests.node.nodekit import make_node, make_test_genesis

    make_node(make_test_genesis(1), tmp_path / "n", None).close()
    with pytest.raises(GenesisMismatch):
        make_node(make_test_genesis(2), tmp_path / "n", None)
    make_node(make_test_genesis(1), tmp_path / "n", None).close()  # the LevelDB lock was released
