"""A chat request's client waits for the block that assigns its worker: a proposer builds it soon, not at the interval.

A live one-validator node with a 2 s block interval: an inference request that
arrives mid-height is in a block within a fraction of the interval; one more
right after it waits for the interval from the height before (at most two
blocks per interval); an offering (no client waiting) still waits out the
interval; and a request that can never be included (a nonce gap) speeds up one
block, not every block after it.
"""
from __future__ import annotations

import time

import rlp
import trio
from eth_utils import keccak

from chain.payloads import DeclareModels, Offering
from chain.transactions import sign_work_transaction
from genesis.keys import get_address
from inference.jobs import JobSpec
from inference.models import DEFAULT_MODEL_SHA256
from node.consensus_driver import REQUEST_BUILD_DELAY
from tests.node.nodekit import CHAIN_ID, VALIDATOR_KEYS, make_node, make_test_genesis

BLOCK_INTERVAL = 2.0


def make_request(key: bytes, nonce: int = 0) -> bytes:
    job = JobSpec.from_chat([("user", "Hello there.")], DEFAULT_MODEL_SHA256, 16)
    return sign_work_transaction(key, chain_id=CHAIN_ID, nonce=nonce, kind="inference_request", data=job.encode(),
                                 gas=1_000_000)


async def wait_for_block(node, above: int, timeout: float = 10.0) -> float:
    """Seconds until the chain's height passes `above`."""
    started = time.monotonic()
    with trio.fail_after(timeout):
        while node.chain.height <= above:
            await trio.sleep(0.005)
    return time.monotonic() - started


async def wait_mid_height(node) -> int:
    """Just after a block, plus a little: the next one is a full interval away."""
    height = node.chain.height
    await wait_for_block(node, height)
    await trio.sleep(0.2)
    return node.chain.height


async def test_a_request_is_built_into_a_block_soon_and_other_work_waits_the_interval(tmp_path, nursery):
    validator = VALIDATOR_KEYS[0]
    node = make_node(make_test_genesis(1), tmp_path / "node0", validator, block_interval=BLOCK_INTERVAL)
    await nursery.start(node.run)
    # The validator holds the default model, so a request on it can be audited and the pool admits it.
    node.submit_transaction(sign_work_transaction(validator, chain_id=CHAIN_ID, nonce=0, kind="declare_models",
                                                  data=rlp.encode(DeclareModels([DEFAULT_MODEL_SHA256])),
                                                  gas=100_000))
    await wait_for_block(node, node.chain.height)

    height = await wait_mid_height(node)
    offering = sign_work_transaction(keccak(b"patient-user"), chain_id=CHAIN_ID, nonce=0, kind="offering",
                                     data=rlp.encode(Offering(b"hi", b"")), gas=100_000)
    node.submit_transaction(offering)
    offering_wait = await wait_for_block(node, height)

    height = await wait_mid_height(node)
    node.submit_transaction(make_request(keccak(b"waiting-user")))
    request_wait = await wait_for_block(node, height)
    assert node.chain.get_receipt(keccak(make_request(keccak(b"waiting-user"))))[0].number == height + 1

    # Another request right after that fast block: at most two blocks per interval, so it waits for the
    # interval counted from the height before (deadlines in blocks keep at least half their time).
    node.submit_transaction(make_request(keccak(b"next-user")))
    next_wait = await wait_for_block(node, height + 1)

    # A request that can never be included (nonce 5 of a fresh account) speeds up the next block only.
    height = await wait_mid_height(node)
    node.submit_transaction(make_request(keccak(b"gap-user"), nonce=5))
    gap_first = await wait_for_block(node, height)
    gap_second = await wait_for_block(node, height + 1)

    assert offering_wait > BLOCK_INTERVAL - 0.5, offering_wait  # no client waits on an offering
    assert request_wait < BLOCK_INTERVAL / 4, request_wait
    assert BLOCK_INTERVAL / 2 < next_wait < BLOCK_INTERVAL, next_wait
    assert gap_first < BLOCK_INTERVAL / 4 and gap_second > BLOCK_INTERVAL - 0.3, (gap_first, gap_second)
    assert REQUEST_BUILD_DELAY < BLOCK_INTERVAL / 4
    nursery.cancel_scope.cancel()
