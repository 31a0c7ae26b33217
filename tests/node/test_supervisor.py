"""The devnet supervisor: a node that dies on its own comes back on its datadir, with backoff, and the view says so;
a node killed on purpose (`NodeProcess.kill`, as the fault tests do) stays down.

The first tests drive `Supervisor` with a fake clock and fake processes; the last kills a real node with
SIGKILL from outside the devnet.
"""
from __future__ import annotations

import os
import signal
import time

from node.devnet import Devnet, NodeProcess, RestartPolicy, Supervisor
from node.status_view import Poller, format_line
from tests.node.devnet_helpers import get_height, make_test_config, running_devnet, wait_for_height

ALL = (0, 1, 2, 3)


class DeadProcess:
    """A child that has already exited with `code`."""

    def __init__(self, code: int) -> None:
        self.returncode = code
        self.pid = 4242

    def poll(self) -> int:
        return self.returncode


class CrashingNode(NodeProcess):
    """A node whose every start dies at once (spawn is the only part touched: no process is run)."""

    def spawn(self) -> None:
        self.process = DeadProcess(-signal.SIGSEGV)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_crashing_node(tmp_path) -> CrashingNode:
    node = CrashingNode(0, make_test_config(tmp_path, nodes=1))
    node.process = DeadProcess(-signal.SIGKILL)
    return node


def test_backoff_doubles_up_to_the_cap_then_the_supervisor_gives_up(tmp_path):
    policy = RestartPolicy(backoff=1.0, cap=4.0, limit=4, window=60.0)
    clock = Clock()
    node = make_crashing_node(tmp_path)
    supervisor = Supervisor([node], policy, clock=clock)
    delays = []
    for _ in range(policy.limit):
        supervisor.check(node)  # the death is noticed: a restart is scheduled
        assert node.get_state() == "down (restarting)"
        delays.append(node.restart_at - clock.now)
        clock.now = node.restart_at
        supervisor.check(node)  # the backoff is over: restarted (and it dies again)
    assert delays == [1.0, 2.0, 4.0, 4.0]
    assert node.restarts == policy.limit
    supervisor.check(node)
    assert node.gave_up and node.get_state() == "down (gave up)" and node.restart_at is None
    clock.now += 1000
    supervisor.check(node)
    assert node.restarts == policy.limit, "a node the supervisor gave up on stays down"


def test_restarts_outside_the_window_are_forgotten(tmp_path):
    policy = RestartPolicy(backoff=1.0, cap=30.0, limit=2, window=10.0)
    clock = Clock()
    node = make_crashing_node(tmp_path)
    supervisor = Supervisor([node], policy, clock=clock)
    for _ in range(5):  # one crash every 11 s: never 2 within 10 s, never given up, always the shortest backoff
        supervisor.check(node)
        assert node.restart_at == clock.now + 1.0
        clock.now = node.restart_at
        supervisor.check(node)
        clock.now += 10.0
    assert node.restarts == 5 and not node.gave_up


def test_a_node_killed_on_purpose_is_left_down(tmp_path):
    clock = Clock()
    node = make_crashing_node(tmp_path)
    node.stopped_on_purpose = True  # what NodeProcess.kill/terminate set
    supervisor = Supervisor([node], RestartPolicy(), clock=clock)
    clock.now += 100
    supervisor.check(node)
    assert node.restarts == 0 and node.restart_at is None and node.get_state() == "down"


def test_a_node_killed_from_outside_comes_back_and_catches_up(tmp_path):
    config = make_test_config(tmp_path, worker=False)
    with running_devnet(config) as devnet:
        devnet.supervise(RestartPolicy(backoff=2.0, cap=4.0))
        wait_for_height(devnet, ALL, 3, 60, "fresh devnet finalises blocks")
        victim = devnet.nodes[2]
        old_pid = victim.pid
        os.kill(old_pid, signal.SIGKILL)  # a crash nobody asked for: not through Devnet
        line = wait_for_view_line(devnet, "node2 down (restarting) restarts=0", 5)
        assert "node0 h=" in line

        deadline = time.monotonic() + 30
        while devnet.get_restarts()[2] < 1 or not victim.is_running():
            assert time.monotonic() < deadline, f"node2 not restarted: {victim.get_state()}"
            time.sleep(0.2)
        assert victim.pid != old_pid
        devnet.wait_until_serving((2,), timeout=60)
        head = max(get_height(devnet.nodes[i].rpc_url) for i in (0, 1, 3))
        wait_for_height(devnet, ALL, head + 2, 60, "the restarted node catches up")
        wait_for_view_line(devnet, "restarts=1", 10)
        assert devnet.get_restarts() == {0: 0, 1: 0, 2: 1, 3: 0}

        devnet.nodes[1].kill()  # on purpose, as test_faults does: the supervisor must not undo it
        time.sleep(3.0)  # longer than the 2 s backoff
        assert not devnet.nodes[1].is_running() and devnet.nodes[1].get_state() == "down"
        assert devnet.get_restarts()[1] == 0


def wait_for_view_line(devnet: Devnet, text: str, timeout: float) -> str:
    """Until the plain status line (what `make devnet --no-view` prints) contains `text`; that line."""
    poller = Poller(devnet)
    deadline = time.monotonic() + timeout
    line = ""
    try:
        while time.monotonic() < deadline:
            line = format_line(poller.poll())
            if text in line:
                return line
            time.sleep(0.2)
    finally:
        poller.close()
    raise AssertionError(f"the status line never showed {text!r} within {timeout:.0f} s; last: {line}")
