"""Faults on a 4-validator devnet of real `magicoin node` processes (SIGKILL, restart, wiped datadir).

One devnet serves every scenario, in sequence; each scenario leaves all four
nodes running again. The nodes run without model duties: these are consensus
and sync faults. With 4 equal validators a quorum is 3: one node down must
not stop the chain, two down must halt it without any conflicting block.
"""
from __future__ import annotations

import time

import pytest

from tests.node.devnet_helpers import assert_agreement, get_heights, make_test_config, running_devnet, \
    wait_for_height

ALL = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    config = make_test_config(tmp_path_factory.mktemp("faults"), worker=False)
    with running_devnet(config) as devnet:
        wait_for_height(devnet, ALL, 3, 60, "fresh devnet finalises blocks")
        yield devnet


def current_height(devnet, indices) -> int:
    return max(h for h in get_heights(devnet, indices).values() if h is not None)


def lowest_height(devnet, indices) -> int:
    return min(h for h in get_heights(devnet, indices).values() if h is not None)


def restart_and_catch_up(devnet, indices, survivors) -> None:
    for index in indices:
        devnet.nodes[index].start()
    devnet.wait_until_serving(indices, timeout=60)
    target = current_height(devnet, survivors) + 2
    wait_for_height(devnet, ALL, target, 60, f"restarted nodes {list(indices)} catch up")


def test_kill_one_node_chain_goes_on(devnet):
    devnet.nodes[3].kill()
    survivors = (0, 1, 2)
    start = current_height(devnet, survivors)
    # Blocks keep being finalised: at least 4 more, so the dead node's proposer turn came round at least once.
    wait_for_height(devnet, survivors, start + 5, 45, "three of four validators keep finalising")
    assert_agreement(devnet, survivors, start + 5)
    restart_and_catch_up(devnet, (3,), survivors)
    assert_agreement(devnet, ALL, lowest_height(devnet, ALL))


def test_kill_two_halts_without_conflict_then_restart_resumes(devnet):
    devnet.nodes[2].kill()
    devnet.nodes[3].kill()
    survivors = (0, 1)
    time.sleep(3)  # a block already decided when the kills landed may still be imported
    halted_at = get_heights(devnet, survivors)
    time.sleep(6)  # several round timeouts: enough for a block if a quorum existed
    later = get_heights(devnet, survivors)
    assert later == halted_at, f"2 of 4 validators must not finalise: heights went {halted_at} -> {later}"
    top = max(later.values())
    # No two nodes, dead or alive, may ever hold different blocks at one height.
    restart_and_catch_up(devnet, (2, 3), survivors)
    assert current_height(devnet, ALL) > top, "the chain resumed after the restart"
    assert_agreement(devnet, ALL, lowest_height(devnet, ALL))


def test_wiped_node_resyncs_from_peers(devnet):
    node = devnet.nodes[1]
    node.kill()
    node.wipe()
    assert not node.node_dir.exists()
    head = current_height(devnet, (0, 2, 3))
    node.start()
    devnet.wait_until_serving((1,), timeout=60)
    wait_for_height(devnet, (1,), head + 2, 90, "a wiped node syncs to the head from its peers")
    assert_agreement(devnet, ALL, lowest_height(devnet, ALL))
