"""chain.store on LevelDB with raw bytes: the key layout, one batch per block with the head last."""
from __future__ import annotations

import pytest
import rlp
from eth_utils import keccak

from chain.blocks import Block, decode_receipt, make_receipt
from chain.db import LevelDB, MemoryDB
from chain.store import HEAD_KEY, BlockStore, BlockWrite, UnknownBlock, UnknownTransaction, commit_writes


def make_write(number: int, tx_hashes: list[bytes]) -> tuple[bytes, BlockWrite]:
    block_hash = keccak(b"block %d" % number)
    write = BlockWrite()
    write.set_head(b"\x00" * 32)  # set early on purpose: set_head must still end up last
    write.add_nodes({keccak(b"node %d" % number): b"node body"})
    receipts = [make_receipt(i % 2 == 0, 21_000 * (i + 1)).encode() for i in range(len(tx_hashes))]
    reasons = [b"" if i % 2 == 0 else b"refused" for i in range(len(tx_hashes))]
    write.add_block(block_hash, number, b"\xc0block-bytes-%d" % number, tx_hashes, receipts, reasons)
    write.add_commit(block_hash, b"commit bytes")
    write.set_head(block_hash)
    return block_hash, write


@pytest.mark.parametrize("backend", ["leveldb", "memory"])
def test_block_write_and_reads(tmp_path, backend):
    db = LevelDB(tmp_path / "db") if backend == "leveldb" else MemoryDB()
    store = BlockStore(db, Block, decode_receipt)
    assert store.get_head_hash() is None
    tx_hashes = [keccak(b"tx %d" % i) for i in range(3)]
    block_hash, write = make_write(7, tx_hashes)
    assert list(write.writes)[-1] == HEAD_KEY
    commit_writes(db, write.writes)
    assert store.get_head_hash() == block_hash
    assert store.get_canonical_hash(7) == block_hash
    assert store.get_encoded_block(block_hash) == b"\xc0block-bytes-7"
    assert store.has_block(block_hash) and not store.has_block(b"\x01" * 32)
    for index, tx_hash in enumerate(tx_hashes):
        assert store.get_transaction_location(tx_hash) == (block_hash, index)
    receipts = store.get_receipts(block_hash)
    assert [r.status for r in receipts] == [1, 0, 1]
    assert receipts[2].cumulative_gas_used == 63_000
    assert store.get_failure_reasons(block_hash) == [b"", b"refused", b""]
    assert store.get_encoded_commit(block_hash) == b"commit bytes"
    assert db[keccak(b"node 7")] == b"node body"
    with pytest.raises(UnknownBlock):
        store.get_canonical_hash(8)
    with pytest.raises(UnknownBlock):
        store.get_encoded_block(keccak(b"nothing"))
    with pytest.raises(UnknownTransaction) as excinfo:
        store.get_transaction_location(keccak(b"nothing"))
    assert excinfo.value.got == keccak(b"nothing")
    if backend == "leveldb":
        db.close()


def test_reasons_default_to_empty_when_all_succeeded(tmp_path):
    with LevelDB(tmp_path / "db") as db:
        store = BlockStore(db, Block, decode_receipt)
        write = BlockWrite()
        block_hash = keccak(b"b")
        write.add_block(block_hash, 1, b"\xc0", [keccak(b"t")], [make_receipt(True, 1).encode()], [b""])
        commit_writes(db, write.writes)
        assert store.get_failure_reasons(block_hash) == [b""]
        assert rlp.decode(db[b"receipts:" + block_hash]) == [make_receipt(True, 1).encode()]


def test_failed_batch_leaves_no_trace(tmp_path):
    """The batch is all or nothing even for a MemoryDB batch aborted midway."""
    db = MemoryDB()
    _, write = make_write(1, [keccak(b"x")])

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with db.atomic_batch() as batch:
            for i, (key, value) in enumerate(write.writes.items()):
                batch[key] = value
                if i == 3:
                    raise Boom
    assert BlockStore(db, Block, decode_receipt).get_head_hash() is None
    assert db.get(keccak(b"node 1")) is None
