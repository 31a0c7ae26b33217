"""Nodes that join late, and validators that stop and restart on the same datadir."""
from __future__ import annotations

import trio

from node.consensus_persistence import PersistedStateFile
from tests.node.nodekit import (
    VALIDATOR_KEYS, get_hashes, wait_for_signature, make_node, make_test_genesis, run_stoppable, start_network, wait_for_height,
    wait_for_peers,
)


async def test_late_node_syncs_to_the_head_and_joins(tmp_path):
    genesis = make_test_genesis()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            # Three of four validators hold 3/4 of the weight: enough to finalise without the fourth.
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:3])
            await wait_for_height(nodes, 8)
            late = make_node(genesis, tmp_path / "late", VALIDATOR_KEYS[3], [str(n.p2p.enode) for n in nodes])
            await nursery.start(late.run)
            await wait_for_height([late], 8)
            assert late.sync.blocks_synced >= 7  # it got there by block sync, not by replaying consensus
            target = max(n.chain.height for n in nodes) + 3
            await wait_for_height(nodes + [late], target)
            assert get_hashes(late, target) == get_hashes(nodes[0], target)
            # Once caught up it votes: its precommit appears in a later commit.
            await wait_for_signature(nodes[0], late.address, target)
            nursery.cancel_scope.cancel()


async def test_restarted_validator_resumes_without_double_signing(tmp_path):
    genesis = make_test_genesis()
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:3])
            restarted = make_node(genesis, tmp_path / "node3", VALIDATOR_KEYS[3], [str(n.p2p.enode) for n in nodes])
            scope = await nursery.start(run_stoppable, restarted)
            await wait_for_peers(nodes + [restarted], 3)
            await wait_for_height(nodes + [restarted], 4)
            scope.cancel()
            while not restarted.db.closed:
                await trio.sleep(0.01)
            stopped_at = restarted.chain.height
            saved = PersistedStateFile(tmp_path / "node3").load()
            assert saved is not None and saved.height >= stopped_at
            await wait_for_height(nodes, stopped_at + 3)  # the others go on without it

            again = make_node(genesis, tmp_path / "node3", VALIDATOR_KEYS[3], [str(n.p2p.enode) for n in nodes])
            assert again.chain.height == stopped_at  # the DB reopens at the head it had
            await nursery.start(again.run)
            target = max(n.chain.height for n in nodes) + 3
            await wait_for_height(nodes + [again], target)
            assert get_hashes(again, target) == get_hashes(nodes[0], target)
            # Nobody ever saw two different votes from one validator for one (height, round, type).
            assert all(not node.consensus.machine.evidence for node in nodes + [again])
            await wait_for_signature(nodes[0], again.address, target)
            nursery.cancel_scope.cancel()


async def test_follower_without_a_validator_key_tracks_the_head(tmp_path):
    genesis = make_test_genesis()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            validators = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS)
            follower = make_node(genesis, tmp_path / "follower", None, [str(n.p2p.enode) for n in validators])
            await nursery.start(follower.run)
            assert follower.get_status()["role"] == "follower"
            target = max(n.chain.height for n in validators) + 5
            await wait_for_height([follower], target)
            assert get_hashes(follower, target) == get_hashes(validators[0], target)
            # It followed by consensus (deciding from gossiped votes), not only by block sync.
            assert follower.consensus.decisions
            assert (tmp_path / "follower" / "nodekey").exists()  # its p2p identity survives restarts
            nursery.cancel_scope.cancel()
