"""Export, import and replay of a chain as concatenated RLP blocks (the format geth uses).

`export_blocks` writes rlp(Block) for blocks 1..head back to back (genesis is
not exported: it is rebuilt from the genesis spec). `import_blocks` reads such a
stream and imports each block with full validation, skipping blocks already in
the chain. `replay` re-executes every block of a chain from genesis into a
fresh database and stops at the first block whose execution disagrees with
what was recorded, naming the block number and the field. Both report each
block through a `progress` callback and return how much they did; timing them
is the caller's business (`magicoin replay`, the replay benchmark).

Transaction decoding and signature recovery, the embarrassingly parallel part
of validation, run ahead of execution in a process pool: the workers run
`chain.transactions.predecode_transactions` (the same checks
`decode_transaction` runs) on the same bytes, and the results prime the decoded
transaction cache keyed by the raw bytes. A transaction a worker could not
decode is simply decoded again during execution, where it raises its typed error.
"""
from __future__ import annotations

import gc
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple

import rlp

from chain.blocks import Block, decode_block
from chain.chain import Chain, KnownBlock
from chain.exceptions import BlockError, HeaderMismatch, InvalidBlockTransaction, InvalidHeader, MalformedBlock
from chain.transactions import predecode_transactions, remember_transactions

__all__ = [
    "ReplayMismatch",
    "ReplayTotals",
    "TransactionPrefetcher",
    "export_blocks",
    "import_blocks",
    "iter_rlp_items",
    "replay",
]

Progress = Callable[[int, int], None]  # (blocks done, transactions done)


class ReplayMismatch(BlockError):
    """Re-executing block `number` disagrees with the recorded block in `field`."""

    def __init__(self, number: int, field: str, *, got: object, expected: object, cause: Exception | None = None) -> None:
        self.number = number
        self.field = field
        self.cause = cause
        super().__init__(f"block {number}: {field} differs", got=got, expected=expected)


class ReplayTotals(NamedTuple):
    blocks: int
    transactions: int


# --- garbage collection -----------------------------------------------------------------------

REPLAY_GC_THRESHOLD = 50_000  # young-generation allocations between collections (Python's default: 700)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while blocks are executed, then restore its thresholds.

    Execution allocates and frees millions of short-lived records, tuples and
    trie nodes, almost none of them in reference cycles, so at the default
    threshold the collector ran thousands of times per replay and took about a
    tenth of its CPU time. Nothing is kept longer: reference counting frees
    everything acyclic at once, and cycles are still collected, only in larger batches.
    """
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], REPLAY_GC_THRESHOLD), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


# --- the file format --------------------------------------------------------------------------

def iter_rlp_items(stream: BinaryIO) -> Iterator[bytes]:
    """Each complete top-level RLP item in a stream of concatenated items."""
    while True:
        prefix = stream.read(1)
        if not prefix:
            return
        first = prefix[0]
        header = prefix
        if first < 0x80:
            length = 0
        elif first <= 0xB7:
            length = first - 0x80
        elif first < 0xC0:
            header += _read_exactly(stream, first - 0xB7)
            length = int.from_bytes(header[1:], "big")
        elif first <= 0xF7:
            length = first - 0xC0
        else:
            header += _read_exactly(stream, first - 0xF7)
            length = int.from_bytes(header[1:], "big")
        yield header + _read_exactly(stream, length)


def _read_exactly(stream: BinaryIO, count: int) -> bytes:
    data = stream.read(count)
    if len(data) != count:
        raise MalformedBlock("truncated block stream", got=len(data), expected=count)
    return data


def export_blocks(chain: Chain, stream: BinaryIO, start: int = 1, stop: int | None = None) -> int:
    """Write rlp(Block) for blocks start..stop (default head); returns how many."""
    stop = chain.height if stop is None else min(stop, chain.height)
    count = 0
    for encoded in chain.store.iter_encoded_blocks(start, stop):
        stream.write(encoded)
        count += 1
    return count


def import_blocks(chain: Chain, encoded_blocks: Iterable[bytes], *, progress: Progress | None = None,
                  prefetch: "TransactionPrefetcher | None" = None) -> ReplayTotals:
    """Import each block with full validation; blocks already in the chain are skipped."""
    blocks = transactions = 0
    source = prefetch.run(encoded_blocks) if prefetch is not None else ((e, None) for e in encoded_blocks)
    with fewer_collections():
        for encoded, decoded in source:
            block = decode_block(encoded)
            if block.header.number == 0:
                if block.hash != chain.get_block_by_number(0).hash:
                    raise InvalidHeader("genesis", got=block.hash, expected=chain.get_block_by_number(0).hash)
                continue
            if decoded is not None:
                remember_transactions(decoded)
            try:
                chain.import_block(block)
            except KnownBlock:
                continue
            blocks += 1
            transactions += len(block.transactions)
            if progress is not None:
                progress(blocks, transactions)
    return ReplayTotals(blocks, transactions)


# --- replay -----------------------------------------------------------------------------------

def replay(source: Chain, target: Chain, *, progress: Progress | None = None,
           prefetch: "TransactionPrefetcher | None" = None, stop: int | None = None) -> ReplayTotals:
    """Re-execute source's blocks 1..stop on `target` (a fresh chain from the same genesis).

    Every block goes through `Chain.import_block`: commit signatures, transaction
    signatures and chain id, every header field against execution. Then the
    re-made block's hash must equal the recorded one.
    """
    if target.get_block_by_number(0).hash != source.get_block_by_number(0).hash:
        raise ReplayMismatch(0, "genesis", got=target.get_block_by_number(0).hash,
                             expected=source.get_block_by_number(0).hash)
    stop = source.height if stop is None else min(stop, source.height)
    blocks = transactions = 0
    encoded_blocks = source.store.iter_encoded_blocks(target.height + 1, stop)
    pairs = prefetch.run(encoded_blocks) if prefetch is not None else ((e, None) for e in encoded_blocks)
    with fewer_collections():
        for encoded, decoded in pairs:
            block = rlp.decode(encoded, sedes=Block)
            if decoded is not None:
                remember_transactions(decoded)
            replay_block(target, block)
            blocks += 1
            transactions += len(block.transactions)
            if progress is not None:
                progress(blocks, transactions)
    return ReplayTotals(blocks, transactions)


def replay_block(target: Chain, block: Block) -> None:
    number = block.header.number
    try:
        target.import_block(block)
    except HeaderMismatch as error:
        raise ReplayMismatch(number, error.field, got=error.got, expected=error.expected, cause=error) from None
    except InvalidHeader as error:
        raise ReplayMismatch(number, error.field, got=error.got, expected=error.expected, cause=error) from None
    except InvalidBlockTransaction as error:
        raise ReplayMismatch(number, f"transactions[{error.index}]", got=error.cause.got,
                             expected=error.cause.expected, cause=error) from None
    except BlockError as error:
        raise ReplayMismatch(number, type(error).__name__, got=error.got, expected=error.expected,
                             cause=error) from None
    if target.head_block.hash != block.hash:
        raise ReplayMismatch(number, "hash", got=target.head_block.hash, expected=block.hash)


# --- parallel decoding and sender recovery --------------------------------------------------------

def _predecode_block(encoded: bytes) -> list:
    return predecode_transactions(rlp.decode(encoded, sedes=Block).transactions)


class TransactionPrefetcher:
    """Decodes and signature-checks the next `window` blocks' transactions in worker processes."""

    def __init__(self, workers: int = 1, window: int = 8, executor: Executor | None = None) -> None:
        self.workers = workers
        self.window = window
        self._executor = executor

    def run(self, encoded_blocks: Iterable[bytes]) -> Iterator[tuple[bytes, list]]:
        executor = self._executor or ProcessPoolExecutor(max_workers=self.workers)
        try:
            pending: deque = deque()
            for encoded in encoded_blocks:
                pending.append((encoded, executor.submit(_predecode_block, encoded)))
                if len(pending) >= self.window:
                    encoded_first, future = pending.popleft()
                    yield encoded_first, future.result()
            while pending:
                encoded_first, future = pending.popleft()
                yield encoded_first, future.result()
        finally:
            if self._executor is None:
                executor.shutdown(wait=False, cancel_futures=True)
