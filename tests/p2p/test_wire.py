"""The pure wire pieces under fuzzing: decoding junk only ever raises our typed errors."""

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from p2p.exceptions import InvalidMessage, MalformedFrame, P2PError
from p2p.hello import Hello, NetworkId, decode_hello, sign_hello, validate_hello
from p2p.messages import SCHEMAS, MsgType, decode_message, encode_message
from p2p.scoring import BanList, PeerScores

from .helpers import CHAIN_ID, GENESIS_HASH, make_key

msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_decoding_random_bytes_raises_only_typed_errors(body):
    try:
        msg_type, fields = decode_message(body)
    except (MalformedFrame, InvalidMessage):
        return
    assert len(fields) == len(SCHEMAS[msg_type])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(msgpack_values, max_size=5))
def test_decoding_arbitrary_arrays_raises_only_typed_errors(value):
    body = msgpack.packb(value, use_bin_type=True)
    try:
        decode_message(body)
    except InvalidMessage:
        pass


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_decoding_random_hello_raises_only_typed_errors(encoded):
    try:
        decode_hello(encoded)
    except InvalidMessage:
        pass


def test_messages_round_trip():
    body = encode_message(MsgType.REQUEST, 7, "get_blocks", [1, 2])
    assert decode_message(body) == (MsgType.REQUEST, [7, "get_blocks", [1, 2]])


def test_hello_validation_checks_every_field():
    key = make_key()
    handshake_hash = b"\x11" * 32
    hello = Hello(1, CHAIN_ID, GENESIS_HASH, key.public_key.to_bytes(), 30303, b"test")
    signature = sign_hello(key, hello, handshake_hash)
    network = NetworkId(1, CHAIN_ID, GENESIS_HASH)
    validate_hello(hello, signature, handshake_hash, network, None)
    validate_hello(hello, signature, handshake_hash, network, key.public_key.to_bytes())
    with pytest.raises(P2PError):
        validate_hello(hello, signature, b"\x22" * 32, network, None)  # another session
    with pytest.raises(P2PError):
        validate_hello(
            hello, signature[:-1] + b"\x07", handshake_hash, network, None
        )  # v out of range
    with pytest.raises(P2PError):
        validate_hello(hello, signature, handshake_hash, NetworkId(1, CHAIN_ID, b"\x00" * 32), None)


def test_ban_list_expires_on_its_clock():
    now = [100.0]
    bans = BanList(lambda: now[0])
    bans.ban(b"a", 10)
    assert bans.is_banned(b"a") and bans.get_remaining(b"a") == 10
    bans.ban(b"a", 1)  # a shorter ban does not shorten a longer one
    now[0] = 109.0
    assert bans.is_banned(b"a") and bans.get_active() == {b"a": 1.0}
    now[0] = 110.0
    assert not bans.is_banned(b"a") and bans.get_active() == {}


def test_scores_cross_the_threshold():
    scores = PeerScores(ban_threshold=100)
    assert scores.apply_penalty(b"a", 60) == -60 and not scores.is_over_threshold(b"a")
    scores.apply_penalty(b"a", 40)
    assert scores.is_over_threshold(b"a")
