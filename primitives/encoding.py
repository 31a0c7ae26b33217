"""RLP written out for the shapes the hot paths encode, byte-identical to `rlp.encode`.

pyrlp infers a sedes for every item it encodes; for plain bytes, non-negative
ints and nested lists of bytes that inference costs more than the hashing that
follows. Tests compare every function here with `rlp.encode` (Hypothesis).
"""
from __future__ import annotations

from rlp.codec import length_prefix

__all__ = ["encode_node", "encode_rlp_list", "encode_rlp_string", "encode_rlp_uint", "length_prefix"]

_HASH_PREFIX = bytes((0x80 + 32,))
_BLANK_ITEM = bytes((0x80,))


def encode_rlp_string(value: bytes) -> bytes:
    """rlp.encode(value) for bytes."""
    if len(value) == 1 and value[0] < 0x80:
        return value
    return length_prefix(len(value), 0x80) + value


def encode_rlp_uint(value: int) -> bytes:
    """rlp.encode(value) for an int >= 0 (not a bool)."""
    if value < 0x80:
        return bytes((value,)) if value else b"\x80"
    return encode_rlp_string(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def encode_rlp_list(encoded_items: bytes) -> bytes:
    """rlp of a list whose items' encodings, concatenated, are `encoded_items`."""
    return length_prefix(len(encoded_items), 0xC0) + encoded_items


def encode_node(item: bytes | list) -> bytes:
    """RLP of nested lists of bytes (trie nodes): `rlp.encode` without its per-item sedes inference."""
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
