"""The bounded decoders (`primitives.limits`) against json.loads and rlp.decode, and the excerpts of errors.

Hypothesis drives both: within the limits the bounded decoder gives exactly
the reference's result; past them, or on junk, it raises a typed error and
nothing else. The deep cases run with Python's recursion limit at 100,000 (as
py_ecc leaves it), where the bare C parser would run off the stack.
"""
from __future__ import annotations

import json
import sys

import pytest
import rlp
from hypothesis import HealthCheck, given, settings, strategies as st
from rlp.codec import length_prefix

from primitives.errors import TypedError, compute_error_summary, compute_excerpt
from primitives.limits import (
    MAX_RLP_DEPTH,
    BoundedInputError,
    InputTooLarge,
    MalformedJSON,
    MalformedRLP,
    NestingTooDeep,
    RLPNestingTooDeep,
    RLPTooCostly,
    RLPTooManyItems,
    compute_json_depth,
    compute_value_depth,
    decode_json_bounded,
    decode_rlp_bounded,
    read_bounded_file,
    set_safe_recursion_limit,
    validate_json_nesting,
    validate_rlp_shape,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=40)
rlp_values = st.recursive(st.binary(max_size=70), lambda inner: st.lists(inner, max_size=5), max_leaves=40)


@pytest.fixture
def raised_recursion_limit():
    """Python's recursion guard as py_ecc leaves it: effectively off."""
    found = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(found)


def get_reference_depth(value) -> int:
    if isinstance(value, (list, dict)):
        children = list(value.values()) if isinstance(value, dict) else value
        return 1 + max((get_reference_depth(child) for child in children), default=0)
    return 0


def count_rlp_items(value) -> int:
    return 1 + (sum(count_rlp_items(child) for child in value) if isinstance(value, list) else 0)


def make_nested_rlp(depth: int) -> bytes:
    item = b"\xc0"
    for _ in range(depth - 1):
        item = length_prefix(len(item), 0xC0) + item
    return item


# --- JSON --------------------------------------------------------------------------------------

@FUZZ
@given(json_values, st.integers(1, 8))
def test_bounded_json_matches_json_loads_within_the_limits(value, max_depth):
    text = json.dumps(value)
    depth = get_reference_depth(value)
    assert compute_json_depth(text.encode()) == depth
    if depth <= max_depth:
        assert decode_json_bounded(text.encode(), max_size=1 << 20, max_depth=max_depth) == json.loads(text)
    else:
        with pytest.raises(NestingTooDeep):
            decode_json_bounded(text.encode(), max_size=1 << 20, max_depth=max_depth)


@FUZZ
@given(st.binary(max_size=200) | st.text(alphabet='[]{}"\\,:0a ', max_size=200).map(str.encode))
def test_bounded_json_on_junk_agrees_with_json_loads_or_raises_a_typed_error(data):
    try:
        result = decode_json_bounded(data, max_size=1 << 20, max_depth=8)
    except BoundedInputError as error:
        assert isinstance(error, TypedError) and isinstance(error, ValueError)
        return
    assert result == json.loads(data)


@given(st.text(alphabet='[]{}"\\x', max_size=60))
def test_brackets_inside_strings_are_not_nesting(content):
    text = json.dumps([content])  # json.dumps escapes quotes and backslashes
    assert compute_json_depth(text.encode()) == 1


def test_deep_json_is_refused_before_the_parser_runs(raised_recursion_limit):
    for body in (b"[" * 100_000 + b"]" * 100_000, b"[" * 1_000_000, b'{"a":' * 200_000, b"[{" * 300_000):
        with pytest.raises(NestingTooDeep) as caught:
            decode_json_bounded(body, max_size=4 << 20)
        assert caught.value.expected == "at most 64 levels"
    validate_json_nesting("[" * 64 + "]" * 64)  # str as well as bytes; exactly the limit passes


def test_json_size_and_encoding_are_checked():
    with pytest.raises(InputTooLarge):
        decode_json_bounded(b"[1]" * 1000, max_size=100)
    for junk in (b'"\xff"', b'"\xed\xa0\x80"', '[1]'.encode("utf-16"), b"9" * 5000, b""):
        with pytest.raises(MalformedJSON):
            decode_json_bounded(junk, max_size=1 << 20)
    assert decode_json_bounded(b"\xef\xbb\xbf[1]", max_size=100) == [1]  # a byte-order mark is tolerated


# --- RLP ---------------------------------------------------------------------------------------

@FUZZ
@given(rlp_values, st.integers(1, 6), st.integers(1, 60))
def test_bounded_rlp_matches_rlp_decode_within_the_limits(value, max_depth, max_items):
    encoded = rlp.encode(value)
    depth = get_reference_depth(value)
    items = count_rlp_items(value)
    if depth <= max_depth and items <= max_items:
        assert decode_rlp_bounded(encoded, max_depth=max_depth, max_items=max_items) == rlp.decode(encoded)
    else:
        with pytest.raises((RLPNestingTooDeep, RLPTooManyItems)):
            decode_rlp_bounded(encoded, max_depth=max_depth, max_items=max_items)


@FUZZ
@given(st.binary(max_size=300))
def test_bounded_rlp_on_junk_agrees_with_rlp_decode_or_raises_rlps_errors(data):
    try:
        result = decode_rlp_bounded(data)
    except rlp.exceptions.RLPException:
        return
    assert result == rlp.decode(data)


def test_deep_and_wide_rlp_is_refused_in_linear_time(raised_recursion_limit):
    with pytest.raises(RLPNestingTooDeep):
        validate_rlp_shape(make_nested_rlp(100_000))
    validate_rlp_shape(make_nested_rlp(MAX_RLP_DEPTH))
    with pytest.raises(RLPTooManyItems):
        validate_rlp_shape(length_prefix(40_000, 0xC0) + b"\x01" * 40_000)
    with pytest.raises(RLPTooCostly):
        validate_rlp_shape(length_prefix(2_000_000, 0xC0) + b"\x01" * 2_000_000)
    with pytest.raises(RLPTooCostly):  # pyrlp's time is items x list size: 8,000 items in 4 MB took 0.9 s
        validate_rlp_shape(length_prefix(8_000 * 500, 0xC0) + (b"\xb9\x01\xf1" + b"a" * 497) * 8_000)
    validate_rlp_shape(length_prefix(1_000 * 4_000, 0xC0) + (b"\xb9\x0f\x9d" + b"a" * 3_997) * 1_000)
    for cut in (b"", b"\xf8", b"\xb9\x01", b"\xc3\x01", b"\xc2\xc3\x01\x01"):
        with pytest.raises(MalformedRLP):
            validate_rlp_shape(cut)
    validate_rlp_shape(b"\x00" + rlp.encode([b"a", [b"b"]]), start=1)


def test_bounded_rlp_errors_are_rlp_errors_with_a_typed_face():
    with pytest.raises(rlp.exceptions.DecodingError) as caught:
        decode_rlp_bounded(make_nested_rlp(40))
    assert isinstance(caught.value, TypedError) and caught.value.expected == f"at most {MAX_RLP_DEPTH} levels"
    from consensus.votes import Vote
    with pytest.raises(rlp.exceptions.RLPException):  # a list where an int belongs: pyrlp's bare TypeError
        decode_rlp_bounded(rlp.encode([[b""]] * len(Vote._meta.fields)), sedes=Vote)


# --- decoded values, files, the interpreter ---------------------------------------------------------

@given(json_values)
def test_value_depth_matches_the_reference(value):
    assert compute_value_depth(value, 100) == get_reference_depth(value)


def test_value_depth_stops_counting_past_the_limit():
    value = []
    for _ in range(100_000):
        value = [value]
    assert compute_value_depth(value, 16) == 17


def test_files_are_read_up_to_their_limit(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1001)
    assert read_bounded_file(path, 1001) == b"x" * 1001
    with pytest.raises(InputTooLarge):
        read_bounded_file(path, 1000)


def test_the_recursion_limit_is_reset():
    found = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        assert set_safe_recursion_limit(2_000) == 100_000 and sys.getrecursionlimit() == 2_000
    finally:
        sys.setrecursionlimit(found)


# --- excerpts ----------------------------------------------------------------------------------

@FUZZ
@given(json_values | rlp_values | st.binary(max_size=5000) | st.integers())
def test_excerpts_are_short_whatever_the_value(value):
    assert len(compute_excerpt(value)) <= 4 * 32 + 30
    assert len(str(TypedError("refused", got=value, expected="something"))) <= 4 * 32 + 80


def test_excerpts_say_how_long_the_input_was():
    assert compute_excerpt(b"\xab" * 400_000) == "0x" + "ab" * 32 + "… (400000 bytes)"
    assert compute_excerpt("x" * 100) == repr("x" * 32) + "… (100 chars)"
    assert compute_excerpt(2**100_000) == "an integer of 100001 bits"
    assert compute_excerpt(b"short") == "0x73686f7274"


def test_error_summaries_name_the_field_not_the_input():
    from chain.blocks import Block
    try:
        rlp.decode(rlp.encode([[b"\x01"] * 3, [], []]), sedes=Block)
    except rlp.exceptions.RLPException as error:
        summary = compute_error_summary(error)
    assert summary == "header: Deserializing list length (3) does not match sedes (12)"
