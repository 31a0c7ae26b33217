"""Key-value databases under the chain: LevelDB through plyvel, and an in-memory twin.

Both implement py-evm's `AtomicDatabaseAPI`, so the trie and the block store
are written against one interface and tests can swap LevelDB for memory.

`LevelDB.atomic_batch()` turns every write made inside the context into ONE
LevelDB write batch: LevelDB appends a batch to its log as a single record, so
a process killed at any moment leaves either all of the batch or none of it.
That property is what makes "one block = one batch, head pointer last" crash safe.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import plyvel
from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDB, AtomicDBWriteBatch
from eth.db.backends.base import BaseAtomicDB

__all__ = ["LevelDB", "MemoryDB", "open_database"]

# py-evm's AtomicDB over a dict already has the exact semantics we need in memory.
MemoryDB = AtomicDB


class LevelDB(BaseAtomicDB):
    """A plyvel database at `path`, created if missing.

    `sync=True` fsyncs each write batch. kill -9 safety does not need it (the
    log record is in the OS page cache once `write()` returns); power-loss
    safety does, at a cost of one fsync per block.
    """

    def __init__(self, path: str | os.PathLike, *, sync: bool = False, lru_cache_size: int = 64 << 20) -> None:
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        self.sync = sync
        self._db = plyvel.DB(
            self.path,
            create_if_missing=True,
            lru_cache_size=lru_cache_size,
            write_buffer_size=32 << 20,
            bloom_filter_bits=10,
        )

    # DatabaseAPI

    def __getitem__(self, key: bytes) -> bytes:
        value = self._db.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:
        # One LevelDB lookup instead of BaseDB's exists-then-get.
        value = self._db.get(key)
        return default if value is None else value

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db.put(key, value, sync=self.sync)

    def __delitem__(self, key: bytes) -> None:
        if self._db.get(key) is None:
            raise KeyError(key)
        self._db.delete(key, sync=self.sync)

    def _exists(self, key: bytes) -> bool:
        return self._db.get(key) is not None

    # AtomicDatabaseAPI

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with LevelDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch

    def write_many(self, items: dict[bytes, bytes], deletes: tuple[bytes, ...] = ()) -> None:
        """Write a prepared set of keys as one atomic LevelDB batch (no read-your-writes view)."""
        with self._db.write_batch(transaction=True, sync=self.sync) as wb:
            for key in deletes:
                wb.delete(key)
            for key, value in items.items():
                wb.put(key, value)

    # Extras

    def iterate_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for every key starting with prefix, in key order."""
        with self._db.iterator(prefix=prefix) as it:
            yield from it

    def compact(self) -> None:
        """Compact the whole key range now (LevelDB otherwise does it in the background, later)."""
        self._db.compact_range()

    def close(self) -> None:
        if not self._db.closed:
            self._db.close()

    @property
    def closed(self) -> bool:
        return self._db.closed

    def __enter__(self) -> "LevelDB":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LevelDB({self.path!r})"


class LevelDBWriteBatch(AtomicDBWriteBatch):
    """py-evm's readable write batch, committed as one plyvel write batch.

    The parent class applies the diff key by key, which on LevelDB would not be
    atomic; here the whole diff goes down in a single `WriteBatch.write()`.
    """

    def _commit(self) -> None:
        target: LevelDB = self._write_target_db  # type: ignore[assignment]
        diff = self._diff()
        with target._db.write_batch(transaction=True, sync=target.sync) as wb:
            for key in diff.deleted_keys():
                wb.delete(key)
            for key, value in diff.pending_items():
                wb.put(key, value)


def open_database(path: str | os.PathLike | None, *, sync: bool = False) -> BaseAtomicDB:
    """LevelDB at `path`, or a fresh in-memory database when path is None."""
    if path is None:
        return MemoryDB()
    return LevelDB(path, sync=sync)
