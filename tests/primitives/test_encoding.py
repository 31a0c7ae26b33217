"""The hand-written RLP encoders and the list-trie root against the reference libraries."""
import rlp
from hypothesis import given, strategies as st
from trie import HexaryTrie

from primitives.encoding import encode_rlp_list, encode_rlp_string, encode_rlp_uint
from primitives.errors import TypedError
from primitives.hashing import keccak
from primitives.trie import BLANK_ROOT, MerkleTrie, MissingTrieNode, compute_list_trie_root


@given(st.integers(min_value=0, max_value=2**256))
def test_encode_rlp_uint_is_rlp(value):
    assert encode_rlp_uint(value) == rlp.encode(value)


@given(st.binary(max_size=300))
def test_encode_rlp_string_is_rlp(value):
    assert encode_rlp_string(value) == rlp.encode(value)


@given(st.lists(st.binary(max_size=80), max_size=20))
def test_encode_rlp_list_is_rlp(items):
    assert encode_rlp_list(b"".join(map(encode_rlp_string, items))) == rlp.encode(items)


@given(st.lists(st.binary(min_size=1, max_size=120), max_size=300))
def test_list_trie_root_matches_hexary_trie(items):
    reference = HexaryTrie({})
    for index, item in enumerate(items):
        reference[rlp.encode(index)] = item
    assert compute_list_trie_root(items) == reference.root_hash


def test_blank_list_trie_and_keccak():
    assert compute_list_trie_root([]) == BLANK_ROOT == HexaryTrie({}).root_hash
    assert keccak(b"") == bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")


def test_a_missing_node_is_a_typed_error():
    trie = MerkleTrie({}.__getitem__)
    missing = keccak(b"never written")
    try:
        trie.get(missing, b"key")
    except MissingTrieNode as error:
        assert isinstance(error, TypedError) and error.got == missing
    else:
        raise AssertionError("a read under an unknown root must fail")
