"""Hypothesis fuzzing of the chain's decoders of outside bytes (issue 14): blocks, headers, receipts,
commits and transactions, from random bytes, from random RLP structures and from corrupted valid
encodings. Each must return a value or raise its own typed error, never anything else.

Blocks and headers come from peers (gossip, sync) and from the light client's server; commits from peers'
`get_commit` answers; transactions from JSON-RPC and gossip. (Transactions corrupted from valid ones are
fuzzed in test_transactions.py; here: random structures behind the type byte.)
"""
from __future__ import annotations

import os

import rlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.blocks import (
    Block,
    Header,
    decode_block,
    decode_header,
    decode_receipt,
    make_receipt,
    split_encoded_block,
)
from chain.exceptions import MalformedBlock, TransactionError
from chain.transactions import decode_transaction, sign_work_transaction
from consensus.votes import Commit, CommitSig
from primitives.limits import decode_rlp_bounded

CHAIN_ID = 4747
MAX_PAYLOAD = 16_384
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# RLP-shaped values: byte strings and lists of them, nested a few levels.
rlp_values = st.recursive(st.binary(max_size=40), lambda inner: st.lists(inner, max_size=6), max_leaves=30)


def make_block(tx_count: int = 2) -> Block:
    txs = [sign_work_transaction(os.urandom(32), chain_id=CHAIN_ID, nonce=n, kind="offering",
                                 data=rlp.encode([b"fuzz", b""])) for n in range(tx_count)]
    header = Header(os.urandom(32), 7, 1_700_000_000_000, os.urandom(20), *(os.urandom(32) for _ in range(6)),
                    12345, b"extra")
    commit = Commit(6, 1, os.urandom(32), [CommitSig(os.urandom(20), os.urandom(65)) for _ in range(3)])
    return Block(header, txs, commit)


VALID_BLOCK = rlp.encode(make_block())
VALID_HEADER = rlp.encode(make_block().header)
VALID_COMMIT = rlp.encode(make_block().last_commit)
VALID_RECEIPT = b"\x02" + rlp.encode(make_receipt(True, 21_000))


def corrupt(data: bytes, flips: list[tuple[int, int]], cut: int) -> bytes:
    corrupted = bytearray(data)
    for index, value in flips:
        if index < len(corrupted):
            corrupted[index] = value
    return bytes(corrupted[: max(0, len(corrupted) - cut)])


flips = st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), max_size=4)
junk = st.binary(max_size=400) | rlp_values.map(rlp.encode)


def assert_block_or_malformed(decode, data: bytes):
    try:
        return decode(data)
    except MalformedBlock:
        return None


@FUZZ
@given(junk)
def test_block_header_and_receipt_decoders_on_junk_raise_only_malformed_block(data):
    assert_block_or_malformed(decode_block, data)
    assert_block_or_malformed(decode_header, data)
    assert_block_or_malformed(decode_receipt, b"\x02" + data)
    assert_block_or_malformed(decode_receipt, data)
    assert_block_or_malformed(split_encoded_block, data)


@FUZZ
@given(flips, st.integers(0, 40))
def test_corrupted_blocks_decode_or_raise_only_malformed_block(changes, cut):
    for valid, decode in ((VALID_BLOCK, decode_block), (VALID_HEADER, decode_header),
                          (VALID_RECEIPT, decode_receipt), (VALID_BLOCK, split_encoded_block)):
        decoded = assert_block_or_malformed(decode, corrupt(valid, changes, cut))
        if decoded is not None and decode is decode_block:
            assert rlp.encode(decoded) == corrupt(valid, changes, cut)  # strict: only canonical encodings pass


@FUZZ
@given(junk | st.builds(corrupt, st.just(VALID_COMMIT), flips, st.integers(0, 30)))
def test_commit_decoding_raises_only_rlps_errors(data):
    # A peer's get_commit answer goes through decode_rlp_bounded(sedes=Commit) (node.consensus_wire);
    # the caller treats rlp's DeserializationError/DecodingError (which the bounds' errors also are) as junk.
    try:
        commit = decode_rlp_bounded(data, sedes=Commit)
    except rlp.exceptions.RLPException:
        return
    assert isinstance(commit, Commit)


@FUZZ
@given(rlp_values | st.binary(max_size=300), st.sampled_from([b"\x02", b"\x01", b"\x00", b"\x03", b""]))
def test_transaction_decoding_of_random_structures_raises_only_transaction_errors(value, type_byte):
    body = value if isinstance(value, bytes) else rlp.encode(value)
    try:
        decode_transaction(type_byte + body, CHAIN_ID, MAX_PAYLOAD)
    except TransactionError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=40), min_size=9, max_size=14))
def test_transactions_with_twelve_random_fields_raise_only_transaction_errors(fields):
    # The shape of a type-2 transaction (12 fields) with random contents: reaches the field checks and the
    # signature recovery, not just the RLP decoder.
    try:
        decode_transaction(b"\x02" + rlp.encode(fields), CHAIN_ID, MAX_PAYLOAD)
    except TransactionError:
        pass
