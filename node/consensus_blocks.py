"""The blocks consensus decides between: building this validator's proposal, judging others', holding both.

Owns `CandidateBlocks` (the proposed blocks of the current height, by hash,
served to peers that lack one), `build_candidate` (`chain.builder` over the
mempool on a scratch state) and `is_valid_block` (executing a proposed block
on a scratch state before voting for it). The clock enters only here, as the
proposer's timestamp and the bound on how far ahead a proposed one may be.
"""
from __future__ import annotations

import logging
import time

from chain.blocks import Block
from chain.builder import build_block
from chain.chain import Chain
from chain.exceptions import ChainError
from chain.transition import execute_block
from consensus.votes import EMPTY_COMMIT

logger = logging.getLogger("node.consensus")

# How far ahead of our clock a proposed block's timestamp may be: a far-future
# timestamp would drag every later block's time with it.
MAX_CLOCK_DRIFT_MS = 15_000


def now_ms() -> int:
    return int(time.time() * 1000)


class CandidateBlocks:
    """Proposed blocks by hash, from the current height on."""

    def __init__(self) -> None:
        self.blocks: dict[bytes, Block] = {}

    def get(self, block_hash: bytes) -> Block | None:
        return self.blocks.get(block_hash)

    def add(self, block: Block) -> None:
        self.blocks.setdefault(block.hash, block)

    def drop_below(self, height: int) -> None:
        """Forget the candidates of decided heights (the next height's may already have arrived)."""
        self.blocks = {h: b for h, b in self.blocks.items() if b.header.number >= height}


def build_candidate(chain: Chain, mempool, proposer: bytes) -> Block | None:
    """The block this validator proposes on the head; None without the head's commit to carry."""
    parent = chain.head
    last_commit = EMPTY_COMMIT if parent.number == 0 else chain.get_commit(parent.hash)
    if last_commit is None:
        logger.info("cannot propose: no commit for head %d yet", parent.number)
        return None
    state = chain.scratch_state(parent.state_root)
    raw_txs = mempool.select(chain.genesis.params.max_block_txs)
    timestamp = max(now_ms(), parent.timestamp_ms + 1)
    built = build_block(state, parent, raw_txs, timestamp, proposer, last_commit, chain.genesis, chain.rules)
    mempool.drop_invalid(built.skipped)
    logger.info("built block height=%d txs=%d skipped=%d", parent.number + 1, len(built.transactions),
                len(built.skipped))
    return built.block


def is_valid_block(chain: Chain, block: Block) -> bool:
    """Whether `block` extends the head validly: what this validator checks before voting for it."""
    parent = chain.head
    if block.header.number != parent.number + 1:
        return False  # judged later against the right parent, if we ever get there
    if block.header.timestamp_ms > now_ms() + MAX_CLOCK_DRIFT_MS:
        logger.warning("proposed block from the future height=%d timestamp_ms=%d", block.header.number,
                       block.header.timestamp_ms)
        return False
    try:
        chain.validate_parent_commit(block, parent)
        execute_block(chain.scratch_state(parent.state_root), parent, block, chain.genesis, chain.rules)
    except ChainError as error:
        logger.warning("invalid proposed block height=%d error=%s", block.header.number, error)
        return False
    return True
