"""Four in-process validator nodes on loopback: real p2p (Noise), real LevelDB, real consensus timers."""
from __future__ import annotations

import pytest
import rlp
import trio

from chain.payloads import Offering
from chain.transactions import sign_work_transaction
from consensus.votes import validate_commit
from genesis.keys import get_address
from tests.node.nodekit import (
    CHAIN_ID, PARAMS, VALIDATOR_KEYS, get_hashes, make_test_genesis, start_network, wait_for_height, wait_for_peers,
)


@pytest.mark.parametrize("epoch_length", [1000, 3])
async def test_four_validators_finalise_and_agree(tmp_path, epoch_length):
    """Also across epoch boundaries (every 3 blocks), where the set is re-derived and priorities restart."""
    genesis = make_test_genesis(params=PARAMS.copy(epoch_length=epoch_length))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS)
            await wait_for_peers(nodes, 3)
            await wait_for_height(nodes, 8)
            reference = get_hashes(nodes[0], 8)
            for node in nodes[1:]:
                assert get_hashes(node, 8) == reference
            assert len({nodes[0].chain.get_header(n).proposer for n in range(1, 9)}) >= 3  # the proposer rotates
            # Each block's commit is > 2/3 of the set, as the next block (or the stored head commit) carries it.
            head = nodes[0].chain.get_header(4)
            commit = nodes[0].chain.get_commit(head.hash)
            validate_commit(commit, nodes[0].chain.get_validator_set(head.validators_hash), CHAIN_ID, 4, head.hash)
            assert all(node.get_status()["role"] == "validator" for node in nodes)
            exposition = nodes[0].metrics.render().decode()
            assert "magicoin_p2p_peers" in exposition
            metric = {line.split(" ")[0]: float(line.split(" ")[1]) for line in exposition.splitlines()
                      if line and not line.startswith("#")}
            assert metric["magicoin_finality_seconds_count"] >= 8 and metric["magicoin_chain_height"] >= 8
            nursery.cancel_scope.cancel()


async def test_transaction_reaches_every_node(tmp_path):
    genesis = make_test_genesis()
    user = b"\x42" * 32
    raw = sign_work_transaction(user, chain_id=CHAIN_ID, nonce=0, kind="offering",
                                data=rlp.encode(Offering(b"hello", b"")), gas=100_000)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS)
            await wait_for_peers(nodes, 3)
            await wait_for_height(nodes, 1)
            tx_hash = nodes[2].submit_transaction(raw)
            while True:
                try:
                    found = [node.chain.get_receipt(tx_hash) for node in nodes]
                    break
                except Exception:
                    await trio.sleep(0.05)
            blocks = {block.hash for block, _, _, _ in found}
            assert len(blocks) == 1
            assert all(receipt.succeeded and reason == "" for _, _, receipt, reason in found)
            assert all(node.mempool.get(tx_hash) is None for node in nodes)
            assert all(node.mempool.get_pending_nonce(get_address(user)) == 1 for node in nodes)
            nursery.cancel_scope.cancel()


async def test_double_sign_seen_by_consensus_is_slashed_on_chain(tmp_path):
    from chain.ledger import get_recognition
    from consensus.votes import PREVOTE, make_vote, sign_vote

    genesis = make_test_genesis()
    offender = VALIDATOR_KEYS[3]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:3])
            await wait_for_height(nodes, 2)
            machine = nodes[0].consensus.machine
            for block_hash in (b"\x01" * 32, b"\x02" * 32):
                vote = sign_vote(make_vote(PREVOTE, machine.height, machine.round, block_hash, get_address(offender)),
                                 offender, CHAIN_ID)
                nodes[0].consensus.on_vote_payload(rlp.encode(vote), None)
            assert machine.evidence  # the machine saw the conflict ...
            address = get_address(offender)
            while not all(get_recognition(node.chain.state, address) == 0 for node in nodes):
                await trio.sleep(0.05)  # ... the node put it on chain, and every node slashed the signer
            assert all(node.chain.state.get_balance(address) == 0 for node in nodes)
            nursery.cancel_scope.cancel()
