"""Headers, blocks and receipts: frozen RLP values, their hashes and their tries.

Field order is the contract in docs/ARCHITECTURE.md. A block carries raw typed
transactions (decoded lazily by `chain.transactions`) and the commit for its
parent (`consensus.votes.Commit`). Receipts are EIP-2718 typed receipts
(`0x02 || rlp([status, cumulative_gas_used, logs_bloom, logs])`), so
`transactions_root` and `receipts_root` are ordinary Ethereum tries.

Receipts carry work events as logs (`chain.events`) with Ethereum's 2048-bit
bloom (`compute_logs_bloom`). A block whose end-of-block duties emitted events
has one more receipt than transactions: the *block receipt*, last in the
receipts trie (see `chain.events`).
"""

from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Sequence

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth.rlp.logs import Log
from rlp.codec import consume_length_prefix, length_prefix
from rlp.sedes import Binary, CountableList, big_endian_int, binary

from chain.exceptions import MalformedBlock
from primitives.errors import compute_error_summary
from primitives.hashing import keccak
from primitives.limits import decode_rlp_bounded
from primitives.trie import compute_list_trie_root
from consensus.votes import EMPTY_COMMIT, Commit, compute_commit_hash

hash32 = Binary.fixed_length(32)
address_sedes = Binary.fixed_length(20)
bloom_sedes = Binary.fixed_length(256)

ZERO_HASH = b"\x00" * 32
ZERO_ADDRESS = b"\x00" * 20
EMPTY_BLOOM = b"\x00" * 256
MAX_EXTRA_DATA = 32
RECEIPT_TYPE = b"\x02"


class Header(rlp.Serializable):
    fields = [
        ("parent_hash", hash32),
        ("number", big_endian_int),
        ("timestamp_ms", big_endian_int),
        ("proposer", address_sedes),
        ("state_root", hash32),
        ("transactions_root", hash32),
        ("receipts_root", hash32),
        ("validators_hash", hash32),
        ("next_validators_hash", hash32),
        ("last_commit_hash", hash32),
        ("recognition", big_endian_int),
        ("extra_data", Binary(max_length=MAX_EXTRA_DATA)),
    ]

    @cached_property
    def hash(self) -> bytes:
        return keccak(rlp.encode(self))


class Block(rlp.Serializable):
    fields = [
        ("header", Header),
        ("transactions", CountableList(binary)),
        ("last_commit", Commit),
    ]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def number(self) -> int:
        return self.header.number


class Receipt(rlp.Serializable):
    """A post-Byzantium receipt: status 1 success, 0 failure (RLP b'\\x01' / b'', as Ethereum)."""

    fields = [
        ("status", big_endian_int),
        ("cumulative_gas_used", big_endian_int),
        ("logs_bloom", bloom_sedes),
        ("logs", CountableList(Log)),
    ]

    def encode(self) -> bytes:
        """The EIP-2718 typed encoding stored in the receipts trie."""
        status, gas = self.status, self.cumulative_gas_used
        if not self.logs and self.logs_bloom == EMPTY_BLOOM and type(status) is int and type(gas) is int and (
                0 <= status < 0x80 and gas >= 0):
            # Every receipt magicoin makes: rlp.encode(self) with the constant parts precomputed,
            # since rlp's generic path over the 256-byte bloom cost more than the rest of the root.
            gas_bytes = gas.to_bytes((gas.bit_length() + 7) // 8, "big")
            gas_item = gas_bytes if len(gas_bytes) == 1 and gas_bytes[0] < 0x80 else (
                bytes((0x80 + len(gas_bytes),)) + gas_bytes)
            payload = (bytes((status,)) if status else b"\x80") + gas_item + _ENCODED_EMPTY_BLOOM + b"\xc0"
            return RECEIPT_TYPE + length_prefix(len(payload), 0xC0) + payload
        return RECEIPT_TYPE + rlp.encode(self)

    @property
    def succeeded(self) -> bool:
        return self.status == 1


_ENCODED_EMPTY_BLOOM = rlp.encode(EMPTY_BLOOM)


_RECEIPT_ATTRS = Receipt._meta.field_attrs


def make_receipt(succeeded: bool, cumulative_gas_used: int, logs: Sequence[Log] = ()) -> Receipt:
    """A receipt; with `logs`, its bloom is computed from them (no logs: the empty bloom, the fast encode path)."""
    # Receipt(...) without rlp's constructor (one receipt per transaction): the same attributes, already immutable.
    receipt = Receipt.__new__(Receipt)
    logs = tuple(logs)
    bloom = compute_logs_bloom(logs) if logs else EMPTY_BLOOM
    receipt.__dict__.update(zip(_RECEIPT_ATTRS, (1 if succeeded else 0, cumulative_gas_used, bloom, logs)))
    return receipt


@lru_cache(maxsize=8192)
def compute_bloom_bits(item: bytes) -> int:
    """The three bits Ethereum's bloom sets for one address or topic (yellow paper, M3:2048).

    Cached: event topics, contract addresses and active accounts recur in block after block (replay).
    """
    digest = keccak(item)
    bits = 0
    for i in (0, 2, 4):
        bits |= 1 << (((digest[i] << 8) | digest[i + 1]) & 2047)
    return bits


def compute_logs_bloom(logs: Sequence[Log]) -> bytes:
    """The 256-byte bloom of a receipt's logs: every log's address and topics, as Ethereum computes it."""
    bloom = 0
    for log in logs:
        bloom |= compute_bloom_bits(log.address)
        for topic in log.topics:
            bloom |= compute_bloom_bits(topic.to_bytes(32, "big"))
    return bloom.to_bytes(256, "big")


def is_bloom_containing(bloom: bytes, item: bytes) -> bool:
    """Whether `item` (an address or a 32-byte topic) may be in what `bloom` summarises (false: surely not)."""
    bits = compute_bloom_bits(item)
    return int.from_bytes(bloom, "big") & bits == bits


def decode_receipt(encoded: bytes) -> Receipt:
    if not encoded.startswith(RECEIPT_TYPE):
        raise MalformedBlock(
            "receipt is not a type-2 typed receipt", got=encoded[:1], expected=RECEIPT_TYPE
        )
    try:
        return decode_rlp_bounded(encoded[1:], sedes=Receipt)
    except (rlp.exceptions.RLPException, TypeError) as error:
        raise MalformedBlock(
            f"undecodable receipt: {compute_error_summary(error)}", got=encoded, expected="typed receipt"
        ) from None


def encode_block(block: Block) -> bytes:
    return rlp.encode(block)


def decode_block(encoded: bytes) -> Block:
    """Decode a block from RLP; raises MalformedBlock on anything that is not exactly one block."""
    try:
        return decode_rlp_bounded(encoded, sedes=Block, strict=True)
    except (rlp.exceptions.RLPException, TypeError) as error:
        raise MalformedBlock(
            f"undecodable block: {compute_error_summary(error)}", got=encoded, expected="rlp(Block)"
        ) from None


def split_encoded_block(encoded: bytes) -> tuple[bytes, bytes, bytes]:
    """The RLP of a stored block's three items (header, transaction list, last commit), cut out undecoded.

    Serving headers and commits (light clients sync thousands) then costs a slice, not a block
    decode. For what `encode_block` wrote, each slice is exactly the item's own encoding, so a
    header slice hashes to the block hash. Raises MalformedBlock for anything not a 3-item list.
    """
    try:
        _, kind, length, start = consume_length_prefix(encoded, 0)
        if kind is not list or start + length != len(encoded):
            raise MalformedBlock("block is not one RLP list", got=encoded, expected="rlp(Block)")
        items = []
        position = start
        while position < len(encoded):
            _, _, length, payload_start = consume_length_prefix(encoded, position)
            items.append(encoded[position:payload_start + length])
            position = payload_start + length
    except (rlp.exceptions.DecodingError, IndexError) as error:
        raise MalformedBlock(f"undecodable block: {compute_error_summary(error)}", got=encoded,
                             expected="rlp(Block)") from None
    if len(items) != 3 or position != len(encoded):
        raise MalformedBlock("a block has three items", got=len(items), expected=3)
    return items[0], items[1], items[2]


def decode_header(encoded: bytes) -> Header:
    try:
        return decode_rlp_bounded(encoded, sedes=Header, strict=True)
    except (rlp.exceptions.RLPException, TypeError) as error:
        raise MalformedBlock(
            f"undecodable header: {compute_error_summary(error)}", got=encoded, expected="rlp(Header)"
        ) from None


def compute_transactions_root(raw_txs: Sequence[bytes]) -> bytes:
    return compute_list_trie_root(raw_txs)


def compute_receipts_root(receipts: Sequence[Receipt]) -> bytes:
    return compute_list_trie_root([receipt.encode() for receipt in receipts])


__all__ = [
    "BLANK_ROOT_HASH",
    "Block",
    "EMPTY_BLOOM",
    "EMPTY_COMMIT",
    "Header",
    "Receipt",
    "ZERO_ADDRESS",
    "ZERO_HASH",
    "compute_commit_hash",
    "compute_receipts_root",
    "compute_transactions_root",
    "compute_list_trie_root",
    "decode_block",
    "decode_header",
    "decode_receipt",
    "encode_block",
    "compute_logs_bloom",
    "is_bloom_containing",
    "Log",
    "make_receipt",
    "split_encoded_block",
]
