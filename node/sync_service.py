"""Block sync for the node: serve our chain to peers and catch up from theirs.

Owns the `SyncProviderAPI` over the chain store, the import callback that
turns synced blobs into blocks imported through the node's `ChainImporter`
(an invalid block bans the peer that sent it), the start-up sync and the
re-sync whenever the consensus service reports that peers are ahead.
"""
from __future__ import annotations

import logging
from typing import Sequence

import rlp
import trio

from chain.blocks import Block
from chain.chain import Chain
from chain.exceptions import ChainError
from node.abc import SyncStatus
from node.chain_importer import ChainImporter
from p2p import InvalidBatch, P2PError, SyncFailed, SyncProviderAPI, register_sync_handlers, sync_to_peer_head
from primitives.errors import compute_error_summary
from primitives.limits import decode_rlp_bounded

logger = logging.getLogger("node.sync")


class ChainSyncProvider(SyncProviderAPI):
    """Read-only views of our canonical chain for peers that sync from us."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    def get_range(self, start: int, count: int) -> range:
        return range(start, min(start + count, self.chain.height + 1))

    def get_headers(self, start: int, count: int) -> Sequence[bytes]:
        return [rlp.encode(self.chain.get_header(n)) for n in self.get_range(start, count)]

    def get_blocks(self, start: int, count: int) -> Sequence[bytes]:
        numbers = self.get_range(start, count)
        if not numbers:
            return []
        return list(self.chain.store.iter_encoded_blocks(numbers.start, numbers.stop - 1))

    def status(self) -> tuple[int, bytes]:
        return self.chain.height, self.chain.head.hash


class SyncService:
    def __init__(self, chain: Chain, importer: ChainImporter, p2p, *, fetch_head_commit=None,
                 interval: float = 5.0, startup_peer_wait: float = 2.0) -> None:
        self.chain = chain
        self.importer = importer
        self.p2p = p2p
        self.provider = ChainSyncProvider(chain)
        self.fetch_head_commit = fetch_head_commit
        self.interval = interval
        self.startup_peer_wait = startup_peer_wait
        self.status: SyncStatus | None = None
        self.syncs = 0
        self.blocks_synced = 0
        self._wanted = trio.Event()

    def request_sync(self) -> None:
        """Peers are ahead of us: sync soon (coalesces repeated requests)."""
        self._wanted.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        register_sync_handlers(self.p2p, self.provider)
        # Started only after the start-up sync: consensus must not begin at a height the network
        # has long decided (a validator whose datadir was wiped would sign old heights again).
        await self.wait_for_first_peer()
        await self.sync_once()
        task_status.started()
        while True:
            with trio.move_on_after(self.interval):
                await self._wanted.wait()
            self._wanted = trio.Event()
            await self.sync_once()

    async def wait_for_first_peer(self) -> None:
        if not self.p2p.bootnodes:
            return  # nobody to wait for: a first node, or a single-validator chain
        with trio.move_on_after(self.startup_peer_wait):
            while not self.p2p.get_peers():
                await trio.sleep(0.05)

    async def sync_once(self) -> None:
        if not self.p2p.get_peers():
            return
        start = self.chain.height
        try:
            result = await sync_to_peer_head(self.p2p, self.provider, self.import_batch)
            if result.imported:
                self.syncs += 1
                logger.info("synced from=%d to=%d imported=%d", start, result.head_height, result.imported)
        except (SyncFailed, P2PError) as error:
            logger.info("sync incomplete error=%s", error)
        finally:
            self.status = None
        if self.fetch_head_commit is not None:
            await self.fetch_head_commit()

    async def import_batch(self, start: int, items: list[bytes]) -> None:
        for offset, encoded in enumerate(items):
            try:
                block = decode_rlp_bounded(encoded, sedes=Block)  # a peer's bytes: bounded before pyrlp
            except (rlp.exceptions.RLPException, TypeError) as error:
                raise InvalidBatch(start, len(items),
                                   f"item {offset} is not a block: {compute_error_summary(error)}") from None
            if block.header.number <= self.chain.height:
                continue  # consensus imported it meanwhile
            try:
                imported = self.importer.import_block(block)
            except ChainError as error:
                raise InvalidBatch(start, len(items), f"block {block.header.number}: {error}") from None
            self.blocks_synced += imported
            self.apply_progress(block.header.number - 1, start + len(items) - 1)
            await trio.sleep(0)  # let consensus and RPC breathe between blocks

    def apply_progress(self, starting_block: int, batch_end: int) -> None:
        """eth_syncing reports a sync only once blocks actually arrive (not during every status check)."""
        if self.status is None:
            self.status = SyncStatus(starting_block, self.chain.height, batch_end)
        else:
            self.status = self.status._replace(current_block=self.chain.height,
                                               highest_block=max(self.status.highest_block, batch_end))

    def get_status(self) -> SyncStatus | None:
        return self.status
