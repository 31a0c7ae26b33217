"""The world state: a journaled write cache over Ethereum-shaped Merkle Patricia tries.

Owns the account trie (`keccak(address) -> rlp([nonce, balance, storage_root,
code_hash])`), the per-account storage tries (`keccak(slot32) -> rlp(value)`),
their batched commit, EIP-1186 proofs, and address preimages (for
`iter_accounts`). The tries themselves are `primitives.trie`'s: one node
format, one batch updater and one builder for every trie of the protocol.
"""
from __future__ import annotations

import itertools
from typing import Iterable, Iterator, Sequence

import rlp

from chain.abc import AccountProof, StateAPI, StorageProof
from chain.exceptions import ChainError
from primitives.hashing import keccak
from primitives.trie import (
    BLANK,
    BLANK_ROOT,
    MerkleTrie,
    MissingTrieNode,
    NodeReader,
    compute_trie_root,
    decode_hex_prefix,
    encode_node,
)

__all__ = [
    "BLANK_ROOT",
    "EMPTY_CODE_HASH",
    "MerkleTrie",
    "ReadOnlyState",
    "State",
    "StateError",
    "StaleSnapshot",
    "UnknownStateRoot",
    "compute_trie_root",
    "mark_reachable_nodes",
    "prune_state",
]

EMPTY_CODE_HASH = keccak(b"")
PREIMAGE_PREFIX = b"preimage:"


class StateError(ChainError):
    """The state cannot do what was asked (unknown root, read-only view, stale snapshot)."""


class UnknownStateRoot(StateError, MissingTrieNode):
    """A trie node under the requested root is not in the database (never written, or pruned)."""


class ReadOnlyState(StateError):
    pass


class StaleSnapshot(StateError):
    """revert() was given a token already reverted past, or from before the last make_state_root()."""


class StateTrie(MerkleTrie):
    """The state's tries, which report a missing node as the chain's `UnknownStateRoot`."""

    missing_node_error = UnknownStateRoot


# --- the state ------------------------------------------------------------------------------

_MISSING = object()
# Tokens are unique across State objects, so a token from another State (or from
# before a reopen) can never be mistaken for a live one.
_SNAPSHOT_TOKENS = itertools.count(1)


class _Account:
    """An account as stored at the committed root (never mutated once cached)."""

    __slots__ = ("nonce", "balance", "storage_root")

    def __init__(self, nonce: int, balance: int, storage_root: bytes) -> None:
        self.nonce = nonce
        self.balance = balance
        self.storage_root = storage_root


def decode_account(encoded: bytes) -> _Account:
    nonce, balance, storage_root, _code_hash = rlp.decode(encoded)
    return _Account(int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), storage_root)


def encode_account(nonce: int, balance: int, storage_root: bytes) -> bytes:
    return encode_node([_int_bytes(nonce), _int_bytes(balance), storage_root, EMPTY_CODE_HASH])


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


class State(StateAPI):
    """The world state at a root, with a journaled write cache in front of the tries.

    Writes go to dicts (`_dirty_accounts`, `_dirty_storage`) and are journaled for
    snapshot/revert; the tries are only touched by `make_state_root()`, which
    applies every dirty slot and account in one batched update per trie and
    writes the new nodes in one database batch.

    Semantics: an account exists once it is stored in the trie; any setter
    (including set_storage) touches the account so that it is stored at the next
    `make_state_root()`, even if it stays empty (nonce 0, balance 0).

    `buffer_writes=True` keeps the new nodes in memory instead of writing them;
    the block store takes them with `pop_pending_writes()` and commits them in the
    block's own write batch (one block = one batch).
    """

    def __init__(self, db, root: bytes = BLANK_ROOT, *, read_only: bool = False,
                 buffer_writes: bool = False, node_cache: dict | None = None) -> None:
        self._db = db
        self._root = root
        self._read_only = read_only
        self._buffer_writes = buffer_writes
        self._pending: dict[bytes, bytes] = {}
        self._node_cache = {} if node_cache is None else node_cache
        self._trie = StateTrie(self._read_node, self._pending, self._node_cache)
        # Committed values under self._root (read-through caches).
        self._accounts: dict[bytes, _Account | None] = {}
        self._slots: dict[tuple[bytes, bytes], bytes] = {}
        # Uncommitted writes: address -> [nonce, balance]; (address, slot) -> value.
        self._dirty_accounts: dict[bytes, tuple[int, int]] = {}
        self._dirty_storage: dict[tuple[bytes, bytes], bytes] = {}
        self._journal: list[tuple[bool, object, object]] = []
        self._marks: dict[int, int] = {}  # live snapshot token -> journal length
        self._hashes: dict[bytes, bytes] = {}
        # Resolving the root node now turns an unknown or pruned root into UnknownStateRoot here.
        self._trie.resolve_root(root)

    @classmethod
    def at(cls, db, root: bytes, *, node_cache: dict | None = None) -> "State":
        """A read-only view of any root still kept in db."""
        return cls(db, root, read_only=True, node_cache=node_cache)

    @property
    def root(self) -> bytes:
        """The root of the last make_state_root() (or the opening root)."""
        return self._root

    # --- reads ------------------------------------------------------------------------------

    def _read_node(self, node_hash: bytes) -> bytes:
        return self._db[node_hash]

    def _hash(self, key: bytes) -> bytes:
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) > 200_000:
                self._hashes.clear()
            hashed = self._hashes[key] = keccak(key)
        return hashed

    def _committed_account(self, address: bytes) -> _Account | None:
        try:
            return self._accounts[address]
        except KeyError:
            pass
        encoded = self._trie.get(self._root, self._hash(address))
        account = decode_account(encoded) if encoded else None
        self._accounts[address] = account
        return account

    def get_account(self, address: bytes) -> tuple[int, int, bytes]:
        """(nonce, balance, storage_root) with storage_root as of the last commit."""
        account = self._committed_account(address)
        storage_root = account.storage_root if account else BLANK_ROOT
        dirty = self._dirty_accounts.get(address)
        if dirty is not None:
            return dirty[0], dirty[1], storage_root
        if account is None:
            return 0, 0, BLANK_ROOT
        return account.nonce, account.balance, storage_root

    def get_nonce(self, address: bytes) -> int:
        dirty = self._dirty_accounts.get(address)
        if dirty is not None:
            return dirty[0]
        account = self._committed_account(address)
        return account.nonce if account else 0

    def get_balance(self, address: bytes) -> int:
        dirty = self._dirty_accounts.get(address)
        if dirty is not None:
            return dirty[1]
        account = self._committed_account(address)
        return account.balance if account else 0

    def account_exists(self, address: bytes) -> bool:
        return address in self._dirty_accounts or self._committed_account(address) is not None

    def get_storage(self, address: bytes, slot: bytes) -> bytes:
        key = (address, slot)
        value = self._dirty_storage.get(key)
        if value is not None:
            return value
        try:
            return self._slots[key]
        except KeyError:
            pass
        account = self._committed_account(address)
        value = b""
        if account is not None and account.storage_root != BLANK_ROOT:
            encoded = self._trie.get(account.storage_root, self._hash(slot))
            if encoded:
                value = rlp.decode(encoded)
        self._slots[key] = value
        return value

    # --- writes -----------------------------------------------------------------------------

    def _write_account(self, address: bytes, nonce: int, balance: int) -> None:
        if self._read_only:
            raise ReadOnlyState("state opened read-only", got=self._root, expected="a writable State")
        self._journal.append((True, address, self._dirty_accounts.get(address, _MISSING)))
        self._dirty_accounts[address] = (nonce, balance)

    def set_nonce(self, address: bytes, nonce: int) -> None:
        assert nonce >= 0, nonce
        self._write_account(address, nonce, self.get_balance(address))

    def set_balance(self, address: bytes, balance: int) -> None:
        assert balance >= 0, balance
        self._write_account(address, self.get_nonce(address), balance)

    def set_storage(self, address: bytes, slot: bytes, value: bytes) -> None:
        assert len(slot) == 32, slot
        if address not in self._dirty_accounts:
            self._write_account(address, self.get_nonce(address), self.get_balance(address))
        key = (address, slot)
        self._journal.append((False, key, self._dirty_storage.get(key, _MISSING)))
        self._dirty_storage[key] = bytes(value)

    def snapshot(self) -> int:
        token = next(_SNAPSHOT_TOKENS)
        self._marks[token] = len(self._journal)
        return token

    def revert(self, token: int) -> None:
        """Undo every write since snapshot `token`; that token and all later ones become stale."""
        keep = self._marks.get(token)
        if keep is None:
            raise StaleSnapshot("snapshot token no longer valid", got=token,
                                expected=f"one of {sorted(self._marks)[:8]}")
        for later in [t for t in self._marks if t >= token]:
            del self._marks[later]
        journal = self._journal
        while len(journal) > keep:
            is_account, key, previous = journal.pop()
            target = self._dirty_accounts if is_account else self._dirty_storage
            if previous is _MISSING:
                del target[key]
            else:
                target[key] = previous

    @property
    def is_dirty(self) -> bool:
        return bool(self._dirty_accounts)

    # --- commit -----------------------------------------------------------------------------

    def make_state_root(self) -> bytes:
        if not self._dirty_accounts:
            self._end_journal()
            return self._root
        storage_changes: dict[bytes, dict[bytes, bytes | None]] = {}
        for (address, slot), value in self._dirty_storage.items():
            storage_changes.setdefault(address, {})[self._hash(slot)] = encode_node(value) if value else None
        account_changes: dict[bytes, bytes] = {}
        preimages: dict[bytes, bytes] = {}
        new_accounts: dict[bytes, _Account] = {}
        for address, (nonce, balance) in self._dirty_accounts.items():
            committed = self._committed_account(address)
            storage_root = committed.storage_root if committed else BLANK_ROOT
            changes = storage_changes.get(address)
            if changes:
                storage_root = self._trie.update(storage_root, changes)
            hashed = self._hash(address)
            if committed is None:
                preimages[PREIMAGE_PREFIX + hashed] = address
            account_changes[hashed] = encode_account(nonce, balance, storage_root)
            new_accounts[address] = _Account(nonce, balance, storage_root)
        self._root = self._trie.update(self._root, account_changes)
        self._pending.update(preimages)
        self._accounts.update(new_accounts)
        self._slots.update(self._dirty_storage)
        self._dirty_accounts = {}
        self._dirty_storage = {}
        self._end_journal()
        if not self._buffer_writes:
            self.persist()
        return self._root

    def _end_journal(self) -> None:
        self._journal = []
        self._marks.clear()

    def pop_pending_writes(self) -> dict[bytes, bytes]:
        """The trie nodes and preimages written since the last call (for the caller's batch)."""
        writes = dict(self._pending)
        self._pending.clear()
        return writes

    def persist(self) -> None:
        """Write pending nodes to the database in one atomic batch."""
        if not self._pending:
            return
        writes = self.pop_pending_writes()
        write_many = getattr(self._db, "write_many", None)
        if write_many is not None:
            write_many(writes)
            return
        with self._db.atomic_batch() as batch:
            for key, value in writes.items():
                batch[key] = value

    # --- proofs and iteration ---------------------------------------------------------------

    def get_proof(self, address: bytes, slots: Sequence[bytes] = ()) -> AccountProof:
        """An EIP-1186 proof of the account (and slots) against `self.root`."""
        if self._dirty_accounts:
            raise StateError("uncommitted writes; call make_state_root() before get_proof()",
                             got=len(self._dirty_accounts), expected=0)
        hashed = self._hash(address)
        account = self._committed_account(address)
        account_proof = self._trie.get_proof(self._root, hashed)
        storage_root = account.storage_root if account else BLANK_ROOT
        storage_proof = tuple(
            StorageProof(
                key=slot,
                value=int.from_bytes(self.get_storage(address, slot), "big"),
                proof=self._trie.get_proof(storage_root, self._hash(slot)),
            )
            for slot in slots
        )
        return AccountProof(
            address=address,
            nonce=account.nonce if account else 0,
            balance=account.balance if account else 0,
            storage_hash=storage_root,
            code_hash=EMPTY_CODE_HASH,
            account_proof=account_proof,
            storage_proof=storage_proof,
        )

    def iter_accounts(self) -> Iterator[tuple[bytes, int]]:
        """(address, balance) for every account, committed and dirty, in no promised order."""
        seen = set()
        for hashed, encoded in self._trie.iterate(self._root):
            address = self._pending.get(PREIMAGE_PREFIX + hashed) or self._db.get(PREIMAGE_PREFIX + hashed)
            if address is None:
                raise UnknownStateRoot("address preimage missing", got=hashed, expected="a stored preimage")
            seen.add(address)
            yield address, self.get_balance(address)
        for address in list(self._dirty_accounts):
            if address not in seen:
                yield address, self.get_balance(address)

    def iter_storage(self, address: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(keccak(slot), value) for every committed slot of an account (slot preimages are not kept)."""
        account = self._committed_account(address)
        if account is None:
            return
        for hashed, encoded in self._trie.iterate(account.storage_root):
            yield hashed, rlp.decode(encoded)


# --- pruning ----------------------------------------------------------------------------------
# Old roots stay readable by default (every node ever written is kept). Pruning is an
# explicit, offline-style mark and sweep: mark every node reachable from the roots to
# keep (their account tries and every storage trie they reference), then delete every
# other trie node. Trie nodes are the only 32-byte keys in the database (every other
# key has a prefix), and only unreachable nodes are deleted, so a kill at any moment
# during a sweep leaves every kept root intact.

def mark_reachable_nodes(read_node: NodeReader, roots: Iterable[bytes]) -> set[bytes]:
    """Hashes of every stored node reachable from the given state roots."""
    marked: set[bytes] = set()
    trie = StateTrie(read_node, cache_limit=50_000)
    stack: list[tuple[bytes | list, bool]] = [(root, True) for root in roots if root != BLANK_ROOT]
    while stack:
        ref, in_account_trie = stack.pop()
        if type(ref) is bytes:
            if ref in marked or ref == BLANK:
                continue
            marked.add(ref)
        node = trie.resolve(ref)
        if node == BLANK:
            continue
        if len(node) == 17:
            stack.extend((child, in_account_trie) for child in node[:16] if child != BLANK)
            continue
        _, is_leaf = decode_hex_prefix(node[0])
        if not is_leaf:
            stack.append((node[1], in_account_trie))
        elif in_account_trie:
            storage_root = decode_account(node[1]).storage_root
            if storage_root != BLANK_ROOT:
                stack.append((storage_root, False))
    return marked


def prune_state(db, keep_roots: Iterable[bytes], batch_size: int = 10_000) -> tuple[int, int]:
    """Delete every trie node not reachable from keep_roots; returns (kept, deleted).

    Needs a database that can iterate its keys (`LevelDB.iterate_prefix`). Run it
    while nothing else writes to the database (between block imports, or offline).
    """
    marked = mark_reachable_nodes(db.__getitem__, list(keep_roots))
    deleted = 0
    doomed: list[bytes] = []
    for key, _ in db.iterate_prefix(b""):
        if len(key) == 32 and key not in marked:
            doomed.append(key)
            if len(doomed) >= batch_size:
                db.write_many({}, deletes=tuple(doomed))
                deleted += len(doomed)
                doomed = []
    if doomed:
        db.write_many({}, deletes=tuple(doomed))
        deleted += len(doomed)
    return len(marked), deleted
