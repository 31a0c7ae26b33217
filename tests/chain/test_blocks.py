"""chain.blocks: header/block/receipt encodings, hashes and list-trie roots (against py-trie)."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from chain.blocks import (
    BLANK_ROOT_HASH,
    EMPTY_COMMIT,
    ZERO_ADDRESS,
    ZERO_HASH,
    Block,
    Header,
    compute_receipts_root,
    decode_block,
    decode_header,
    decode_receipt,
    encode_block,
    make_receipt,
)
from chain.exceptions import MalformedBlock
from primitives.trie import compute_list_trie_root as compute_trie_root


def sample_header(**overrides) -> Header:
    fields = dict(
        parent_hash=ZERO_HASH,
        number=3,
        timestamp_ms=1_700_000_000_000,
        proposer=b"\x01" * 20,
        state_root=b"\x02" * 32,
        transactions_root=BLANK_ROOT_HASH,
        receipts_root=BLANK_ROOT_HASH,
        validators_hash=b"\x03" * 32,
        next_validators_hash=b"\x03" * 32,
        last_commit_hash=b"\x04" * 32,
        recognition=10**18,
        extra_data=b"hi",
    )
    fields.update(overrides)
    return Header(**fields)


def reference_root(items) -> bytes:
    reference = HexaryTrie({})
    for index, item in enumerate(items):
        reference[rlp.encode(index)] = item
    return reference.root_hash


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=80), max_size=300))
def test_list_trie_root_matches_py_trie(items):
    assert compute_trie_root(items) == reference_root(items)


def test_header_field_order_and_hash():
    header = sample_header()
    assert [name for name, _ in Header._meta.fields] == [
        "parent_hash",
        "number",
        "timestamp_ms",
        "proposer",
        "state_root",
        "transactions_root",
        "receipts_root",
        "validators_hash",
        "next_validators_hash",
        "last_commit_hash",
        "recognition",
        "extra_data",
    ]
    assert decode_header(rlp.encode(header)) == header
    assert header.hash == sample_header().hash != sample_header(recognition=1).hash


def test_block_round_trip():
    block = Block(sample_header(), [b"\x02\xc0", b"\x02\xc1\x80"], EMPTY_COMMIT)
    assert decode_block(encode_block(block)) == block
    assert block.hash == block.header.hash and block.number == 3


@pytest.mark.parametrize("data", [b"", b"\xc0", b"\xc3\x80\x80\x80"])
def test_malformed_block(data):
    with pytest.raises(MalformedBlock):
        decode_block(data)


def test_extra_data_is_bounded():
    items = rlp.decode(rlp.encode(sample_header()))
    items[-1] = b"x" * 33
    with pytest.raises(MalformedBlock):
        decode_header(rlp.encode(items))
    with pytest.raises(rlp.exceptions.SerializationError):
        rlp.encode(sample_header(extra_data=b"x" * 33))


def test_receipts_are_typed_and_status_encoded_as_ethereum():
    ok, failed = make_receipt(True, 21_000), make_receipt(False, 42_000)
    assert ok.encode()[:1] == b"\x02" and decode_receipt(ok.encode()) == ok
    assert rlp.decode(ok.encode()[1:])[0] == b"\x01" and rlp.decode(failed.encode()[1:])[0] == b""
    assert compute_receipts_root([ok, failed]) == reference_root([ok.encode(), failed.encode()])
    with pytest.raises(MalformedBlock):
        decode_receipt(b"\x01" + ok.encode()[1:])


def test_genesis_style_header_constants():
    assert compute_trie_root([]) == BLANK_ROOT_HASH and len(ZERO_ADDRESS) == 20


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(0, 2**64), st.binary(max_size=32),
       st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.binary(min_size=65, max_size=65)), max_size=5))
def test_split_encoded_block_cuts_each_items_own_rlp(txs, number, extra, signatures):
    from chain.blocks import split_encoded_block
    from consensus.votes import Commit, CommitSig

    commit = Commit(number, 0, b"\x05" * 32, [CommitSig(v, s) for v, s in signatures]) if signatures \
        else EMPTY_COMMIT
    block = Block(sample_header(number=number, extra_data=extra), txs, commit)
    header_rlp, txs_rlp, commit_rlp = split_encoded_block(encode_block(block))
    assert header_rlp == rlp.encode(block.header) and decode_header(header_rlp).hash == block.hash
    assert txs_rlp == rlp.encode(txs)
    assert commit_rlp == rlp.encode(commit) and rlp.decode(commit_rlp, sedes=Commit) == commit


def test_split_encoded_block_refuses_what_is_not_a_block():
    from chain.blocks import split_encoded_block

    encoded = encode_block(Block(sample_header(), [b"\x01\x02"], EMPTY_COMMIT))
    for bad in (b"", b"\x80", rlp.encode([b"a", b"b"]), encoded[:-1], encoded + b"\x00", rlp.encode(b"x" * 70),
                rlp.encode([b"a", b"b", b"c", b"d"])):
        with pytest.raises(MalformedBlock):
            split_encoded_block(bad)


@given(st.booleans(), st.integers(0, 2**64))
def test_make_receipt_is_rlps_receipt(succeeded, gas):
    from chain.blocks import Receipt

    made = make_receipt(succeeded, gas)
    expected = Receipt(1 if succeeded else 0, gas, b"\x00" * 256, [])
    assert made == expected and tuple(made) == tuple(expected)
    assert made.encode() == b"\x02" + rlp.encode(expected)
    assert decode_receipt(made.encode()) == made
