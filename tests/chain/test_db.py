"""chain.db.LevelDB against py-evm's shipped database test suites, plus atomicity on disk."""
from __future__ import annotations

import pytest
from eth.tools.db.atomic import AtomicDatabaseBatchAPITestSuite
from eth.tools.db.base import DatabaseAPITestSuite

from chain.db import LevelDB, MemoryDB, open_database


@pytest.fixture
def leveldb(tmp_path):
    db = LevelDB(tmp_path / "db")
    yield db
    db.close()


@pytest.fixture
def db(leveldb):
    return leveldb


@pytest.fixture
def atomic_db(leveldb):
    return leveldb


class TestLevelDBDatabaseAPI(DatabaseAPITestSuite):
    pass


class TestLevelDBAtomicBatch(AtomicDatabaseBatchAPITestSuite):
    pass


def test_batch_is_persisted_and_survives_reopen(tmp_path):
    path = tmp_path / "db"
    with LevelDB(path) as db:
        db[b"gone"] = b"x"
        with db.atomic_batch() as batch:
            for i in range(1000):
                batch[i.to_bytes(4, "big")] = b"v%d" % i
            batch.delete(b"gone")
    with LevelDB(path) as db:
        assert db[(999).to_bytes(4, "big")] == b"v999"
        assert b"gone" not in db
        assert [k for k, _ in db.iterate_prefix(b"\x00\x00\x00")][:2] == [b"\x00\x00\x00\x00", b"\x00\x00\x00\x01"]


def test_failed_batch_writes_nothing(tmp_path):
    with LevelDB(tmp_path / "db") as db:
        with pytest.raises(RuntimeError):
            with db.atomic_batch() as batch:
                batch[b"a"] = b"1"
                raise RuntimeError("abort")
        assert db.get(b"a") is None


def test_write_many_and_open_database(tmp_path):
    with LevelDB(tmp_path / "db") as db:
        db[b"old"] = b"1"
        db.write_many({b"a": b"1", b"b": b"2"}, deletes=(b"old",))
        assert (db[b"a"], db[b"b"], db.get(b"old")) == (b"1", b"2", None)
    assert isinstance(open_database(None), MemoryDB)
    other = open_database(tmp_path / "other")
    assert isinstance(other, LevelDB)
    other.close()


def test_compaction_keeps_every_live_key_and_drops_deleted_ones(tmp_path):
    with LevelDB(tmp_path / "db") as db:
        db.write_many({i.to_bytes(4, "big"): bytes(100) for i in range(2_000)})
        db.write_many({}, deletes=tuple(i.to_bytes(4, "big") for i in range(0, 2_000, 2)))
        db.compact()
        assert [key for key, _ in db.iterate_prefix(b"")] == [i.to_bytes(4, "big") for i in range(1, 2_000, 2)]
