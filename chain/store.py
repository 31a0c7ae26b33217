"""The block store: blocks, receipts and their indexes in one key-value database.

Key layout (all in the same database as the trie nodes, which are keyed by their
32-byte hash; every other key has a short ASCII prefix so the two never collide):

    b"block:"   + block hash      -> rlp(Block)
    b"number:"  + number (8 B BE) -> canonical block hash
    b"tx:"      + tx hash         -> block hash || index (4 B BE)
    b"receipts:"+ block hash      -> rlp([typed receipt bytes, ...])
    b"reasons:" + block hash      -> rlp([reason bytes, ...]) why work txs failed (side index)
    b"bloom:"   + block hash      -> the block's 256-byte logs bloom, only for blocks with logs
    b"blockrcpt:"+ block hash     -> the typed block receipt of end-of-block events, only when there is one
    b"commit:"  + block hash      -> rlp(Commit) the commit seen for that block (the head's)
    b"genesis"                    -> rlp(Genesis) the spec this database was made from
    b"head"                       -> hash of the last fully committed block

`receipts:` holds one receipt per transaction; the block receipt of
end-of-block events (`chain.events`), last in the receipts trie, has its own
key, so `get_receipts` stays aligned with the block's transactions. The
per-block bloom (the OR of all its receipts' blooms; the header has none) lets
`eth_getLogs` skip a block with one read and no receipt decoding.

`BlockWrite` gathers everything one block adds and `commit_block_write` writes it
as ONE atomic batch with the head pointer last. A reader that finds `head`
therefore finds every key the head's block wrote: a kill -9 at any moment
reopens to the last committed block.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import rlp

from chain.exceptions import ChainError

__all__ = [
    "BlockStore",
    "BlockWrite",
    "StoreError",
    "UnknownBlock",
    "UnknownTransaction",
    "commit_writes",
]

HEAD_KEY = b"head"
GENESIS_KEY = b"genesis"
BLOCK_PREFIX = b"block:"
NUMBER_PREFIX = b"number:"
TX_PREFIX = b"tx:"
RECEIPTS_PREFIX = b"receipts:"
REASONS_PREFIX = b"reasons:"
COMMIT_PREFIX = b"commit:"
BLOOM_PREFIX = b"bloom:"
BLOCK_RECEIPT_PREFIX = b"blockrcpt:"


class StoreError(ChainError):
    """The store has no such item, or holds something it cannot decode."""


class UnknownBlock(StoreError):
    pass


class UnknownTransaction(StoreError):
    pass


def number_key(number: int) -> bytes:
    return NUMBER_PREFIX + number.to_bytes(8, "big")


def commit_writes(db, writes: dict[bytes, bytes]) -> None:
    """Write `writes` atomically, in insertion order (LevelDB: one write batch)."""
    write_many = getattr(db, "write_many", None)
    if write_many is not None:
        write_many(writes)
        return
    with db.atomic_batch() as batch:
        for key, value in writes.items():
            batch[key] = value


class BlockWrite:
    """Every key one imported block adds, gathered before the single atomic write."""

    def __init__(self) -> None:
        self.writes: dict[bytes, bytes] = {}

    def add_nodes(self, nodes: dict[bytes, bytes]) -> None:
        self.writes.update(nodes)

    def add_block(self, block_hash: bytes, number: int, encoded_block: bytes, tx_hashes: Sequence[bytes],
                  encoded_receipts: Sequence[bytes], reasons: Sequence[bytes] = ()) -> None:
        writes = self.writes
        writes[BLOCK_PREFIX + block_hash] = encoded_block
        writes[number_key(number)] = block_hash
        for index, tx_hash in enumerate(tx_hashes):
            writes[TX_PREFIX + tx_hash] = block_hash + index.to_bytes(4, "big")
        writes[RECEIPTS_PREFIX + block_hash] = rlp.encode(list(encoded_receipts))
        if any(reasons):
            writes[REASONS_PREFIX + block_hash] = rlp.encode(list(reasons))

    def add_logs(self, block_hash: bytes, receipts: Sequence, block_receipt=None, block_events_hash: bytes = b"") -> None:
        """The block's logs bloom (when any receipt has logs) and its block receipt (when it has one).

        The block receipt is indexed under `block_events_hash` like a transaction
        placed after the block's last one, so `eth_getTransactionReceipt` finds it.
        """
        combined = 0
        for receipt in receipts:
            if receipt.logs:
                combined |= int.from_bytes(receipt.logs_bloom, "big")
        if block_receipt is not None:
            combined |= int.from_bytes(block_receipt.logs_bloom, "big")
            self.writes[BLOCK_RECEIPT_PREFIX + block_hash] = block_receipt.encode()
            if block_events_hash:
                self.writes[TX_PREFIX + block_events_hash] = block_hash + len(receipts).to_bytes(4, "big")
        if combined:
            self.writes[BLOOM_PREFIX + block_hash] = combined.to_bytes(256, "big")

    def add_commit(self, block_hash: bytes, encoded_commit: bytes) -> None:
        self.writes[COMMIT_PREFIX + block_hash] = encoded_commit

    def set_head(self, block_hash: bytes) -> None:
        # Popped and re-added so that it is the last key of the batch whatever came before.
        self.writes.pop(HEAD_KEY, None)
        self.writes[HEAD_KEY] = block_hash


class BlockStore:
    """Reads blocks, receipts and indexes; decodes through the sedes it is given.

    The store deals in raw RLP and hashes; `block_sedes` (chain.blocks.Block) and
    `decode_receipt` come from the caller so this module stays independent of the
    block format's details.
    """

    def __init__(self, db, block_sedes, decode_receipt) -> None:
        self.db = db
        self._block_sedes = block_sedes
        self._decode_receipt = decode_receipt
        self._blocks: dict[bytes, object] = {}

    # --- head and genesis -------------------------------------------------------------------

    def get_head_hash(self) -> bytes | None:
        return self.db.get(HEAD_KEY)

    def get_genesis_spec(self) -> bytes | None:
        return self.db.get(GENESIS_KEY)

    def has_block(self, block_hash: bytes) -> bool:
        return self.db.get(BLOCK_PREFIX + block_hash) is not None

    # --- blocks -----------------------------------------------------------------------------

    def get_encoded_block(self, block_hash: bytes) -> bytes:
        encoded = self.db.get(BLOCK_PREFIX + block_hash)
        if encoded is None:
            raise UnknownBlock("no block with this hash", got=block_hash, expected="a stored block hash")
        return encoded

    def get_block(self, block_hash: bytes):
        block = self._blocks.get(block_hash)
        if block is None:
            block = rlp.decode(self.get_encoded_block(block_hash), sedes=self._block_sedes)
            if len(self._blocks) > 256:
                self._blocks.clear()
            self._blocks[block_hash] = block
        return block

    def get_canonical_hash(self, number: int) -> bytes:
        block_hash = self.db.get(number_key(number)) if number >= 0 else None
        if block_hash is None:
            raise UnknownBlock("no canonical block at this height", got=number, expected="a stored height")
        return block_hash

    def get_block_by_number(self, number: int):
        return self.get_block(self.get_canonical_hash(number))

    def iter_encoded_blocks(self, start: int, stop: int) -> Iterator[bytes]:
        """rlp(Block) of canonical blocks start..stop inclusive, in order."""
        for number in range(start, stop + 1):
            yield self.get_encoded_block(self.get_canonical_hash(number))

    # --- transactions and receipts ----------------------------------------------------------

    def get_transaction_location(self, tx_hash: bytes) -> tuple[bytes, int]:
        """(block hash, index) of a committed transaction."""
        value = self.db.get(TX_PREFIX + tx_hash)
        if value is None:
            raise UnknownTransaction("no committed transaction with this hash", got=tx_hash,
                                     expected="a committed transaction hash")
        return value[:32], int.from_bytes(value[32:], "big")

    def get_encoded_receipts(self, block_hash: bytes) -> list[bytes]:
        encoded = self.db.get(RECEIPTS_PREFIX + block_hash)
        if encoded is None:
            raise UnknownBlock("no receipts for this block", got=block_hash, expected="a stored block hash")
        return rlp.decode(encoded)

    def get_receipts(self, block_hash: bytes) -> list:
        return [self._decode_receipt(encoded) for encoded in self.get_encoded_receipts(block_hash)]

    def get_failure_reasons(self, block_hash: bytes) -> list[bytes]:
        """Per transaction, why its work failed (b"" where it succeeded); all b"" if none failed."""
        encoded = self.db.get(REASONS_PREFIX + block_hash)
        if encoded is None:
            return [b""] * len(self.get_encoded_receipts(block_hash))
        return rlp.decode(encoded)

    def get_block_receipt(self, block_hash: bytes):
        """The receipt of the block's end-of-block events (`chain.events`), None when it has none."""
        encoded = self.db.get(BLOCK_RECEIPT_PREFIX + block_hash)
        return None if encoded is None else self._decode_receipt(encoded)

    def get_logs_bloom(self, block_hash: bytes) -> bytes | None:
        """The OR of the block's receipt blooms; None when the block has no logs at all."""
        return self.db.get(BLOOM_PREFIX + block_hash)

    def get_encoded_commit(self, block_hash: bytes) -> bytes | None:
        return self.db.get(COMMIT_PREFIX + block_hash)
