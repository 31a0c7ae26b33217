"""The devnet as a user runs it: `python -m node.devnet` processes, blocks, agreement, Ctrl-C, resume, a chat job.

Real `magicoin node` processes on picked free loopback ports, tmp datadirs.
"""
from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

from rich.console import Console

from genesis import load_devnet_genesis
from node.loadgen import LoadConfig, LoadGenerator
from node.devnet import rpc_call
from node.status_view import Poller, render, short, to_int
from tests.node.devnet_helpers import assert_agreement, find_free_port_range, get_height, make_test_config, \
    running_devnet, wait_for_height

ALL = (0, 1, 2, 3)
SERVED_STATUSES = ("resulted", "attesting", "accepted", "failed_audit", "unverified")


def start_devnet_command(datadir, rpc_base: int, p2p_base: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "node.devnet", "--datadir", str(datadir), "--base-rpc-port", str(rpc_base),
               "--base-p2p-port", str(p2p_base), "--no-view", "--no-load", "--no-worker", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_rpc_height(process: subprocess.Popen, urls: list[str], height: int, timeout: float) -> int:
    """Until every node answers with `height` or more (so all four are up, past start-up); node0's height."""
    deadline = time.monotonic() + timeout
    seen: list = []
    while time.monotonic() < deadline:
        assert process.poll() is None, f"devnet exited early:\n{process.stdout.read()}"
        seen = [get_height(url) for url in urls]
        if all(h is not None and h >= height for h in seen):
            return seen[0]
        time.sleep(0.3)
    raise AssertionError(f"nodes at {urls} reached heights {seen}, wanted >= {height} within {timeout:.0f} s")


def test_devnet_command_stops_on_ctrl_c_and_resumes_from_its_datadirs(tmp_path):
    rpc_base = find_free_port_range(4)
    p2p_base = find_free_port_range(4, avoid=range(rpc_base, rpc_base + 4))
    urls = [f"http://127.0.0.1:{rpc_base + index}" for index in ALL]
    url = urls[0]
    first = start_devnet_command(tmp_path, rpc_base, p2p_base)
    try:
        reached = wait_for_rpc_height(first, urls, 4, 90)
        first.send_signal(signal.SIGINT)  # what Ctrl-C delivers to the devnet (the nodes run in their own sessions)
        output, _ = first.communicate(timeout=40)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output
    assert "exit codes node0=0, node1=0, node2=0, node3=0" in output, output
    for index in ALL:
        assert (tmp_path / f"node{index}" / "validator.key").exists()
    stopped = [int(h) for h in re.findall(r'node stopped height=(\d+)', (tmp_path / "node0" / "node.log").read_text())]
    assert stopped and stopped[-1] >= reached

    second = start_devnet_command(tmp_path, rpc_base, p2p_base, "--duration", "60")
    try:
        # The first answer already shows the stored chain: the nodes resumed instead of starting again at 0.
        deadline = time.monotonic() + 60
        height = None
        while height is None and time.monotonic() < deadline:
            assert second.poll() is None, second.stdout.read()
            height = get_height(url)
            time.sleep(0.2)
        assert height is not None and height >= stopped[-1], f"resumed at {height}, stopped at {stopped[-1]}"
        wait_for_rpc_height(second, urls, stopped[-1] + 2, 60)
        second.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=40)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, output


def test_four_validator_workers_finalise_agree_and_serve_a_chat_job(tmp_path):
    """Every validator is a worker on the default model; a chat job sent through JSON-RPC gets its result on chain."""
    config = make_test_config(tmp_path, worker=True)
    with running_devnet(config, timeout=120) as devnet:
        wait_for_height(devnet, ALL, 5, 90, "4 validator-workers finalise blocks")
        assert_agreement(devnet, ALL, 5)

        deadline = time.monotonic() + 90
        while len(rpc_call(devnet.rpc_urls[0], "muagic_getWorkers")) < 4:
            assert time.monotonic() < deadline, "the 4 validators did not all register as workers"
            time.sleep(0.5)

        load = LoadGenerator(devnet.rpc_urls, chain_id=load_devnet_genesis().chain_id,
                             config=LoadConfig(max_tokens=16))
        try:
            job_id = load.submit_chat_job()
            assert job_id is not None, f"the node refused the chat job: {load.last_error}"
            job = wait_for_served_job(devnet.rpc_urls[1], job_id, 120)
        finally:
            load.stop()
        assert job["worker"] in {"0x" + node.address.hex() for node in devnet.nodes}
        # A zero-balance load account asked; the chain never assigns a job to its own requester.
        assert job["requester"] in {"0x" + account.address.hex() for account in load.accounts}
        assert rpc_call(devnet.rpc_urls[2], "eth_getBalance", [job["requester"], "latest"]) == "0x0"
        assert int(job["result"]["outputTokens"], 16) > 0
        assert job["messages"][0]["role"] == "user"
        assert_agreement(devnet, ALL, min(get_height(url) for url in devnet.rpc_urls))
        assert_view_shows(devnet, load)


def assert_view_shows(devnet, load) -> None:
    """The live view's snapshot and drawing, from these real nodes: every node, validator and worker appears."""
    poller = Poller(devnet, load)
    try:
        snapshot = poller.poll()
    finally:
        poller.close()
    assert all(node.status and node.status["height"] >= 5 for node in snapshot.nodes), snapshot.nodes
    assert len(snapshot.validators) == 4 and len(snapshot.workers) == 4
    assert to_int(snapshot.pool["balance"]) > 0
    console = Console(record=True, width=200)
    console.print(render(snapshot, time.monotonic()))
    text = console.export_text()
    for node in devnet.nodes:
        assert f"node{node.index}" in text and short("0x" + node.address.hex()) in text
    assert "chat jobs 1" in text


def wait_for_served_job(url: str, job_id: bytes, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = rpc_call(url, "muagic_getJob", ["0x" + job_id.hex()])
        if job is not None and job["status"] in SERVED_STATUSES and job["result"]:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job 0x{job_id.hex()} not served within {timeout:.0f} s; last record: {job}")
