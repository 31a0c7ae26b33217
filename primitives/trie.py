"""The hexary Merkle Patricia trie: the one reader, batch updater and builder of tries.

Owns the node format (Ethereum's: the tests check every root against
`trie.HexaryTrie`, so py-trie and any Ethereum proof verifier read what is
written here), proofs, and in-memory roots of key/value and list tries (the
transactions and receipts tries of a block).

Why a hand-written batch updater instead of `trie.HexaryTrie.set` per key:
HexaryTrie re-encodes and re-hashes every node on the path for every key
(about 350 us per update). Replay flushes a few hundred keys per block, and
most of them share the top levels of the trie, so `MerkleTrie.update` applies
all of a block's sorted keys in one descent and encodes/hashes each changed
node exactly once, writing only the nodes reachable from the new root.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Mapping, Sequence

import rlp

from primitives.encoding import encode_node
from primitives.errors import TypedError
from primitives.hashing import keccak

__all__ = [
    "BLANK",
    "BLANK_ROOT",
    "MerkleTrie",
    "MissingTrieNode",
    "NodeReader",
    "compute_key",
    "compute_list_trie_root",
    "compute_nibbles",
    "compute_trie_root",
    "decode_hex_prefix",
    "encode_hex_prefix",
    "encode_node",
]

BLANK_ROOT = keccak(rlp.encode(b""))


class MissingTrieNode(TypedError):
    """A trie node under the requested root is not in the database (never written, or pruned)."""


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


class MerkleTrie:
    """Reads and batch-updates hexary Merkle Patricia tries stored as hash -> rlp(node).

    `writes` collects new nodes (hash -> encoding); the caller persists them.
    `cache` maps node hash -> decoded node and may be shared between tries.
    """

    missing_node_error: type[TypedError] = MissingTrieNode  # a subclass names the layer's own error

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
                    raise self.missing_node_error("trie node missing from the database", got=ref, expected="a stored node") from None
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
                raise self.missing_node_error("trie node missing from the database", got=node_hash, expected="a stored node") from None
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
        return self.build_sorted(sorted((compute_nibbles(key), value) for key, value in items if value))

    def build_sorted(self, pairs: list[tuple[bytes, bytes]]) -> bytes:
        """`build` over (nibble path, non-empty value) pairs already sorted by path."""
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


# rlp(index) as nibbles for the list tries' usual sizes; larger indexes are computed.
_INDEX_NIBBLES = tuple(compute_nibbles(rlp.encode(index)) for index in range(4096))


def compute_list_trie_root(items: Sequence[bytes]) -> bytes:
    """Root of an Ethereum list trie (rlp(index) -> item), as the transactions and receipts roots are.

    Built in one pass over the sorted keys instead of by repeated inserts: these
    tries are rebuilt for every block, and HexaryTrie inserts cost ~130 us each.
    """
    pairs = sorted(
        (_INDEX_NIBBLES[index] if index < 4096 else compute_nibbles(rlp.encode(index)), item)
        for index, item in enumerate(items) if item
    )
    return MerkleTrie(_no_reads).build_sorted(pairs)
