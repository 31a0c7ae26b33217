"""magicoin primitives: what every layer shares, and nothing else.

- `primitives.errors`: `TypedError`, the base of every package's typed errors
  (what was got, what was expected);
- `primitives.hashing`: keccak256;
- `primitives.encoding`: RLP written out for the hot paths (byte-identical to `rlp.encode`);
- `primitives.trie`: the one Merkle Patricia trie (reads, proofs, batch updates,
  and in-memory roots of key/value and list tries);
- `primitives.limits`: explicit bounds on outside input (size, nesting depth,
  item count), checked before JSON, RLP and msgpack decoders run.

It imports no other magicoin package.
"""
