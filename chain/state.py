"""The world state: a journaled write cache over Ethereum-shaped Merkle Patricia tries.

Owns the account trie (`keccak(address) -> rlp([nonce, balance, storage_root,
code_hash])`), the per-account storage tries (`keccak(slot32) -> rlp(value)`),
their batched commit, EIP-1186 proofs, and address preimages (for
`iter_accounts`).

Why a hand-written batch updater instead of `trie.HexaryTrie.set` per key:
HexaryTrie re-encodes and re-hashes every node on the path for every key
(about 350 us per update inside `squash_changes` on this machine). Replay
flushes a few hundred keys per block, and most of them share the top levels of
the trie, so `MerkleTrie.update` applies all of a block's sorted keys in one
descent and encodes/hashes each changed node exactly once, writing only the
nodes reachable from the new root. The node format is the standard one (the
tests check every root against a fresh `HexaryTrie`), so py-trie and any
Ethereum proof verifier read what this module writes.
"""
from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import rlp

try:
    # safe-pysha3's C keccak is ~8x faster per call than eth-hash's pycryptodome backend,
    # and trie commits hash hundreds of nodes per block. Same function, so roots are equal.
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        return _keccak_256(data).digest()
except ImportError:  # pragma: no cover - the dependency is optional
    from eth_hash.auto import keccak

from chain.abc import AccountProof, StateAPI, StorageProof
from chain.exceptions import ChainError

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

BLANK_ROOT = keccak(rlp.encode(b""))
EMPTY_CODE_HASH = keccak(b"")
PREIMAGE_PREFIX = b"preimage:"


class StateError(ChainError):
    """The state cannot do what was asked (unknown root, read-only view, stale snapshot)."""


class UnknownStateRoot(StateError):
    """A trie node under the requested root is not in the database (never written, or pruned)."""


class ReadOnlyState(StateError):
    pass


class StaleSnapshot(StateError):
    """revert() was given a token already reverted past, or from before the last make_state_root()."""


# --- nibbles and hex-prefix encoding --------------------------------------------------------
# A nibble path is a `bytes` holding one nibble (0..15) per byte: slicing, comparing
# and startswith are then C-speed operations.

_HEX_TO_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_NIBBLE_TO_HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")
_HP_PREFIX = {(False, False): "00", (False, True): "1", (True, False): "20", (True, True): "3"}


def compute_nibbles(key: bytes) -> bytes:
    return key.hex().encode().translate(_HEX_TO_NIBBLE)


def compute_key(nibbles: bytes) -> bytes:
    return bytes.fromhex(nibbles.translate(_NIBBLE_TO_HEX).decode())


def encode_hex_prefix(nibbles: bytes, is_leaf: bool) -> bytes:
    return bytes.fromhex(_HP_PREFIX[is_leaf, bool(len(nibbles) & 1)] + nibbles.translate(_NIBBLE_TO_HEX).decode())


def decode_hex_prefix(path: bytes) -> tuple[bytes, bool]:
    hexed = path.hex()
    flag = hexed[0]
    nibbles = hexed[1:] if flag in "13" else hexed[2:]
    return nibbles.encode().translate(_HEX_TO_NIBBLE), flag in "23"


# --- the trie -------------------------------------------------------------------------------
# Decoded nodes are RLP structures: b"" (blank), [hp_path, value_or_child] (leaf or
# extension) or a 17-item list (branch). A child reference is a 32-byte hash, b"",
# or the child node itself when its encoding is shorter than 32 bytes (embedded).
# Decoded nodes are shared through the cache, so they are never mutated.

BLANK = b""
NodeReader = Callable[[bytes], bytes]


_HASH_PREFIX = bytes((0x80 + 32,))
_BLANK_ITEM = bytes((0x80,))


def encode_node(item: bytes | list) -> bytes:
    """RLP of a trie node (nested lists of bytes only).

    Byte-identical to `rlp.encode`, without pyrlp's per-item sedes inference,
    which was most of the commit time in profiles.
    """
    if type(item) is bytes:
        length = len(item)
        if length == 1 and item[0] < 0x80:
            return item
        if length < 56:
            return bytes((0x80 + length,)) + item
        length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
        return bytes((0xB7 + len(length_bytes),)) + length_bytes + item
    parts = []
    for child in item:
        # Children are mostly hashes, blanks, paths and short values: encoded inline, without a call each.
        if type(child) is bytes:
            length = len(child)
            if length == 32:
                parts.append(_HASH_PREFIX + child)
            elif length == 0:
                parts.append(_BLANK_ITEM)
            elif length == 1 and child[0] < 0x80:
                parts.append(child)
            elif length < 56:
                parts.append(bytes((0x80 + length,)) + child)
            else:
                parts.append(encode_node(child))
        else:
            parts.append(encode_node(child))
    payload = b"".join(parts)
    length = len(payload)
    if length < 56:
        return bytes((0xC0 + length,)) + payload
    length_bytes = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((0xF7 + len(length_bytes),)) + length_bytes + payload


class MerkleTrie:
    """Reads and batch-updates hexary Merkle Patricia tries stored as hash -> rlp(node).

    `writes` collects new nodes (hash -> encoding); the caller persists them.
    `cache` maps node hash -> decoded node and may be shared between tries.
    """

    def __init__(self, read_node: NodeReader, writes: dict[bytes, bytes] | None = None,
                 cache: dict[bytes, list] | None = None, cache_limit: int = 400_000) -> None:
        self._read_node = read_node
        self.writes = {} if writes is None else writes
        self._cache = {} if cache is None else cache
        self._cache_limit = cache_limit

    # reading

    def resolve(self, ref: bytes | list) -> bytes | list:
        if ref == BLANK or type(ref) is list:
            return ref
        node = self._cache.get(ref)
        if node is None:
            encoded = self.writes.get(ref)
            if encoded is None:
                try:
                    encoded = self._read_node(ref)
                except KeyError:
                    raise UnknownStateRoot("trie node missing from the database", got=ref, expected="a stored node") from None
            node = rlp.decode(encoded)
            if len(self._cache) >= self._cache_limit:
                self._cache.clear()
            self._cache[ref] = node
        return node

    def resolve_root(self, root: bytes) -> bytes | list:
        return BLANK if root == BLANK_ROOT else self.resolve(root)

    def get(self, root: bytes, key: bytes) -> bytes | None:
        node = self.resolve_root(root)
        path = compute_nibbles(key)
        while True:
            if node == BLANK:
                return None
            if len(node) == 17:
                if not path:
                    return node[16] or None
                node = self.resolve(node[path[0]])
                path = path[1:]
                continue
            node_path, is_leaf = decode_hex_prefix(node[0])
            if is_leaf:
                return node[1] if path == node_path else None
            if not path.startswith(node_path):
                return None
            path = path[len(node_path):]
            node = self.resolve(node[1])

    def get_proof(self, root: bytes, key: bytes) -> tuple[bytes, ...]:
        """The hashed nodes on the path to `key`, root first, as EIP-1186 lists them.

        Embedded nodes are not listed separately: they are inside their parent's encoding.
        """
        if root == BLANK_ROOT:
            return ()
        proof = [self._encoded(root)]
        node = self.resolve(root)
        path = compute_nibbles(key)
        while node != BLANK:
            if len(node) == 17:
                if not path:
                    break
                ref, path = node[path[0]], path[1:]
            else:
                node_path, is_leaf = decode_hex_prefix(node[0])
                if is_leaf or not path.startswith(node_path):
                    break
                ref, path = node[1], path[len(node_path):]
            if type(ref) is bytes and len(ref) == 32:
                proof.append(self._encoded(ref))
            node = self.resolve(ref)
        return tuple(proof)

    def _encoded(self, node_hash: bytes) -> bytes:
        encoded = self.writes.get(node_hash)
        if encoded is None:
            try:
                encoded = self._read_node(node_hash)
            except KeyError:
                raise UnknownStateRoot("trie node missing from the database", got=node_hash, expected="a stored node") from None
        return encoded

    def iterate(self, root: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) of every leaf under root, in key order."""
        stack: list[tuple[bytes, bytes | list]] = [(b"", self.resolve_root(root))]
        while stack:
            prefix, node = stack.pop()
            if node == BLANK:
                continue
            if len(node) == 17:
                for nibble in range(15, -1, -1):
                    if node[nibble] != BLANK:
                        stack.append((prefix + bytes([nibble]), self.resolve(node[nibble])))
                if node[16]:
                    yield compute_key(prefix), node[16]
                continue
            node_path, is_leaf = decode_hex_prefix(node[0])
            if is_leaf:
                yield compute_key(prefix + node_path), node[1]
            else:
                stack.append((prefix + node_path, self.resolve(node[1])))

    # writing

    def update(self, root: bytes, changes: Mapping[bytes, bytes | None]) -> bytes:
        """Apply {key: value, or None/b'' to delete} to the trie at root; return the new root."""
        if not changes:
            return root
        updates = sorted((compute_nibbles(key), value or None) for key, value in changes.items())
        new_root = self._update(self.resolve_root(root), updates)
        return self._store_root(new_root)

    def build(self, items: Iterable[tuple[bytes, bytes]]) -> bytes:
        """The root of a trie holding exactly `items` (keys unique), stored in `writes`."""
        pairs = sorted((compute_nibbles(key), value) for key, value in items if value)
        return self._store_root(self._build(pairs))

    def _store_root(self, node: bytes | list) -> bytes:
        if node == BLANK:
            return BLANK_ROOT
        # The root is stored under its hash even when it is short enough to embed.
        encoded = encode_node(node)
        root = keccak(encoded)
        self.writes[root] = encoded
        self._cache[root] = node
        return root

    def _ref(self, node: bytes | list) -> bytes | list:
        if node == BLANK:
            return BLANK
        encoded = encode_node(node)
        if len(encoded) < 32:
            return node
        node_hash = keccak(encoded)
        self.writes[node_hash] = encoded
        self._cache[node_hash] = node
        return node_hash

    def _update(self, node: bytes | list, updates: list[tuple[bytes, bytes | None]]) -> bytes | list:
        if node == BLANK:
            return self._build([(k, v) for k, v in updates if v is not None])
        if len(node) == 17:
            return self._update_branch(list(node), updates)
        node_path, is_leaf = decode_hex_prefix(node[0])
        if is_leaf:
            # A leaf holds one key: merge it with the updates and rebuild the subtree.
            merged = {node_path: node[1]}
            for key, value in updates:
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
            return self._build(sorted(merged.items()))
        if all(key.startswith(node_path) for key, _ in updates):
            cut = len(node_path)
            child = self._update(self.resolve(node[1]), [(k[cut:], v) for k, v in updates])
            return self._prefix(node_path, child, None)
        # Some keys leave the extension's path: rewrite it as an equivalent branch first.
        branch = [BLANK] * 17
        if len(node_path) == 1:
            branch[node_path[0]] = node[1]
        else:
            branch[node_path[0]] = self._ref([encode_hex_prefix(node_path[1:], False), node[1]])
        return self._update_branch(branch, updates)

    def _update_branch(self, branch: list, updates: list[tuple[bytes, bytes | None]]) -> bytes | list:
        i, count = 0, len(updates)
        while i < count:
            key, value = updates[i]
            if not key:
                branch[16] = value or BLANK
                i += 1
                continue
            nibble = key[0]
            j = i + 1
            while j < count and updates[j][0][:1] == key[:1]:
                j += 1
            child = self._update(self.resolve(branch[nibble]), [(k[1:], v) for k, v in updates[i:j]])
            branch[nibble] = self._ref(child)
            i = j
        return self._normalize_branch(branch)

    def _normalize_branch(self, branch: list) -> bytes | list:
        used = [n for n in range(16) if branch[n] != BLANK]
        if len(used) > 1 or (used and branch[16]):
            return branch
        if not used:
            return BLANK if not branch[16] else [encode_hex_prefix(b"", True), branch[16]]
        nibble = used[0]
        return self._prefix(bytes([nibble]), self.resolve(branch[nibble]), branch[nibble])

    def _prefix(self, path: bytes, child: bytes | list, child_ref: bytes | list | None) -> bytes | list:
        """The node for `child` reached through `path` (merging paths where the format requires)."""
        if child == BLANK:
            return BLANK
        if len(child) == 17:
            if not path:
                return child
            return [encode_hex_prefix(path, False), child_ref if child_ref is not None else self._ref(child)]
        child_path, is_leaf = decode_hex_prefix(child[0])
        return [encode_hex_prefix(path + child_path, is_leaf), child[1]]

    def _build(self, items: list[tuple[bytes, bytes]]) -> bytes | list:
        if not items:
            return BLANK
        if len(items) == 1:
            key, value = items[0]
            return [encode_hex_prefix(key, True), value]
        first, last = items[0][0], items[-1][0]
        shared = 0
        limit = min(len(first), len(last))
        while shared < limit and first[shared] == last[shared]:
            shared += 1
        if shared:
            branch = self._build_branch([(k[shared:], v) for k, v in items])
            return [encode_hex_prefix(first[:shared], False), self._ref(branch)]
        return self._build_branch(items)

    def _build_branch(self, items: list[tuple[bytes, bytes]]) -> list:
        branch = [BLANK] * 17
        i, count = 0, len(items)
        if not items[0][0]:
            branch[16] = items[0][1]
            i = 1
        while i < count:
            nibble = items[i][0][0]
            j = i + 1
            while j < count and items[j][0][0] == nibble:
                j += 1
            branch[nibble] = self._ref(self._build([(k[1:], v) for k, v in items[i:j]]))
            i = j
        return branch


def compute_trie_root(items: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The root hash of a trie holding exactly these (key, value) pairs, computed in memory."""
    return MerkleTrie(_no_reads).build(items)


def _no_reads(node_hash: bytes) -> bytes:
    raise KeyError(node_hash)


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
        self._trie = MerkleTrie(self._read_node, self._pending, self._node_cache)
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
    trie = MerkleTrie(read_node, cache_limit=50_000)
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
