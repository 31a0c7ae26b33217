"""The one writer of the node's chain: consensus decisions and block sync both import through here.

Owns the import itself and the list of listeners that follow the head (the
consensus driver, the node's mempool and metrics). Having a single writer is
what lets consensus and block sync share the chain without a lock: both run
on the node's trio thread and each import is one synchronous call.
"""
from __future__ import annotations

import logging
from typing import Callable

from chain.blocks import Block
from chain.chain import Chain, KnownBlock
from consensus.votes import Commit

logger = logging.getLogger("node.consensus")


class ChainImporter:
    """Imports a block and tells everyone who follows the head."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.listeners: list[Callable[[Block], None]] = []

    def add_listener(self, listener: Callable[[Block], None]) -> None:
        self.listeners.append(listener)

    def import_block(self, block: Block, commit: Commit | None = None) -> bool:
        """Import on top of the head; False if already known. Raises a ChainError for an invalid block."""
        try:
            self.chain.import_block(block, commit)
        except KnownBlock:
            return False
        for listener in self.listeners:
            try:
                listener(block)
            except Exception:
                # The block is committed; one follower's bug must not stop the others (or consensus).
                logger.exception("block listener failed height=%d listener=%r", block.header.number, listener)
        return True
