"""Export, import and replay: round trips through the geth-style file, and replay catching tampering."""
from __future__ import annotations

import io

import pytest
import rlp

from chain.blocks import Block, compute_transactions_root, decode_block
from chain.chain import Chain
from chain.db import LevelDB, MemoryDB
from chain.exceptions import MalformedBlock
from chain.replay import (
    ReplayMismatch, TransactionPrefetcher, export_blocks, import_blocks, iter_rlp_items, replay,
)
from chain.store import BLOCK_PREFIX
from chain.transactions import clear_sender_cache
from node.workload import make_workload_genesis

from tests.chain.test_chain import recorded_blocks
from economy import make_work_rules


@pytest.fixture
def source(tmp_path):
    genesis, _ = make_workload_genesis()
    db = LevelDB(tmp_path / "source")
    chain = Chain.from_genesis(db, genesis, make_work_rules)
    import_blocks(chain, recorded_blocks())
    yield chain
    db.close()


def fresh(tmp_path, name="target") -> Chain:
    genesis, _ = make_workload_genesis()
    return Chain.from_genesis(LevelDB(tmp_path / name), genesis, make_work_rules)


def test_export_import_round_trip(tmp_path, source):
    stream = io.BytesIO()
    assert export_blocks(source, stream) == source.height
    assert stream.getvalue() == b"".join(recorded_blocks())
    target = fresh(tmp_path)
    stream.seek(0)
    stats = import_blocks(target, iter_rlp_items(stream), prefetch=TransactionPrefetcher(workers=1, window=2))
    assert (stats.blocks, target.head) == (source.height, source.head)
    assert stats.transactions == sum(len(decode_block(e).transactions) for e in recorded_blocks())
    # Importing again skips every known block; a partial export resumes where the chain is.
    stream.seek(0)
    assert import_blocks(target, iter_rlp_items(stream)).blocks == 0
    partial = io.BytesIO()
    export_blocks(source, partial, 2, 4)
    assert [decode_block(e).header.number for e in iter_rlp_items(io.BytesIO(partial.getvalue()))] == [2, 3, 4]
    target.db.close()


def test_truncated_file_is_a_typed_error():
    data = b"".join(recorded_blocks()[:2])
    with pytest.raises(MalformedBlock):
        list(iter_rlp_items(io.BytesIO(data[:-7])))
    assert len(list(iter_rlp_items(io.BytesIO(data)))) == 2


@pytest.mark.parametrize("workers", [0, 1])
def test_replay_matches(tmp_path, source, workers):
    clear_sender_cache()
    target = fresh(tmp_path)
    prefetch = TransactionPrefetcher(workers=workers) if workers else None
    seen = []
    totals = replay(source, target, prefetch=prefetch, progress=lambda b, t: seen.append((b, t)))
    assert target.head == source.head and totals.blocks == source.height
    assert seen[-1] == (totals.blocks, totals.transactions) and totals.transactions > 0
    target.db.close()


def overwrite_block(chain: Chain, number: int, block: Block) -> None:
    """Corrupt the recorded block at `number` in place (its index still points at the old hash)."""
    chain.db[BLOCK_PREFIX + chain.store.get_canonical_hash(number)] = rlp.encode(block)
    chain.store._blocks.clear()


def test_replay_stops_at_a_wrong_state_root(tmp_path, source):
    original = source.get_block_by_number(3)
    overwrite_block(source, 3, Block(original.header.copy(state_root=b"\x07" * 32), original.transactions,
                                     original.last_commit))
    target = fresh(tmp_path)
    with pytest.raises(ReplayMismatch) as excinfo:
        replay(source, target)
    error = excinfo.value
    assert (error.number, error.field) == (3, "state_root")
    assert error.got == b"\x07" * 32 and error.expected == original.header.state_root
    assert target.height == 2  # everything before the bad block was replayed and kept
    target.db.close()


def test_replay_stops_at_a_bad_signature(tmp_path, source):
    original = source.get_block_by_number(4)
    raw = bytearray(original.transactions[1])
    raw[-3] ^= 0x55
    txs = [original.transactions[0], bytes(raw)] + list(original.transactions[2:])
    header = original.header.copy(transactions_root=compute_transactions_root(txs))
    overwrite_block(source, 4, Block(header, txs, original.last_commit))
    clear_sender_cache()
    with pytest.raises(ReplayMismatch) as excinfo:
        replay(source, fresh(tmp_path), prefetch=TransactionPrefetcher(workers=1))
    assert (excinfo.value.number, excinfo.value.field) == (4, "transactions[1]")


def test_replay_refuses_another_genesis(tmp_path, source):
    from genesis import load_devnet_genesis

    other = Chain.from_genesis(MemoryDB(), load_devnet_genesis(), make_work_rules)
    with pytest.raises(ReplayMismatch) as excinfo:
        replay(source, other)
    assert (excinfo.value.number, excinfo.value.field) == (0, "genesis")


def test_fewer_collections_raises_the_young_threshold_and_always_restores_it():
    import gc

    from chain.replay import REPLAY_GC_THRESHOLD, fewer_collections

    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold() == (max(before[0], REPLAY_GC_THRESHOLD), *before[1:])
    assert gc.get_threshold() == before
    with pytest.raises(RuntimeError):
        with fewer_collections():
            raise RuntimeError("a block failed")
    assert gc.get_threshold() == before
