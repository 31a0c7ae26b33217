"""The signed hello that binds a Noise session to a node's secp256k1 identity.

Each side signs keccak(rlp([domain, handshake_hash, hello])) with its node key.
The Noise handshake hash covers both sides' static and ephemeral keys, so a
hello signature is valid for this session only: replaying someone else's hello
on another connection fails, and so does claiming a key one does not hold.
"""

from __future__ import annotations

from typing import NamedTuple

import rlp
import rlp.exceptions
from eth_keys import keys
from eth_keys.exceptions import BadSignature, ValidationError as EthKeysValidationError
from eth_utils import keccak
from rlp.sedes import Binary, big_endian_int, binary

from primitives.limits import decode_rlp_bounded

from .exceptions import (
    BadHelloSignature,
    DisconnectReason,
    HelloMismatch,
    IdentityMismatch,
    InvalidMessage,
)
from .identity import NODE_ID_SIZE

# 2: STREAM and CANCEL frames (streamed responses); an older peer would score them as junk.
PROTOCOL_VERSION = 2
HELLO_DOMAIN = b"magicoin-p2p-hello"
SIGNATURE_SIZE = 65
MAX_CLIENT_NAME = 64


class Hello(rlp.Serializable):
    fields = [
        ("protocol_version", big_endian_int),
        ("chain_id", big_endian_int),
        ("genesis_hash", Binary.fixed_length(32)),
        ("node_id", Binary.fixed_length(NODE_ID_SIZE)),
        ("listen_port", big_endian_int),
        ("client", Binary(max_length=MAX_CLIENT_NAME)),
    ]


class HelloSigningData(rlp.Serializable):
    fields = [
        ("domain", binary),
        ("handshake_hash", binary),
        ("hello", Hello),
    ]


class NetworkId(NamedTuple):
    """What two peers must agree on to talk at all."""

    protocol_version: int
    chain_id: int
    genesis_hash: bytes


def compute_hello_digest(hello: Hello, handshake_hash: bytes) -> bytes:
    return keccak(rlp.encode(HelloSigningData(HELLO_DOMAIN, handshake_hash, hello)))


def sign_hello(private_key: keys.PrivateKey, hello: Hello, handshake_hash: bytes) -> bytes:
    digest = compute_hello_digest(hello, handshake_hash)
    return private_key.sign_msg_hash(digest).to_bytes()


def decode_hello(encoded: bytes) -> Hello:
    try:
        return decode_rlp_bounded(encoded, sedes=Hello)  # a stranger's bytes: bounded before pyrlp
    except (rlp.exceptions.RLPException, TypeError) as exc:  # rlp raises TypeError for a list given to an int
        raise InvalidMessage(
            "hello is not a valid RLP Hello", got=encoded, expected="Hello"
        ) from exc


def validate_hello(
    hello: Hello,
    signature: bytes,
    handshake_hash: bytes,
    network: NetworkId,
    expected_node_id: bytes | None,
) -> None:
    """Raise unless the remote holds the key it claims and is on our network."""
    validate_hello_signature(hello, signature, handshake_hash)
    validate_network(hello, network)
    validate_expected_identity(hello, expected_node_id)


def validate_expected_identity(hello: Hello, expected_node_id: bytes | None) -> None:
    # When dialling an enode we know whom we meant to reach.
    if expected_node_id is not None and hello.node_id != expected_node_id:
        raise IdentityMismatch(got=hello.node_id, expected=expected_node_id)


def validate_network(hello: Hello, network: NetworkId) -> None:
    if hello.protocol_version != network.protocol_version:
        raise HelloMismatch(
            "protocol_version",
            hello.protocol_version,
            network.protocol_version,
            DisconnectReason.PROTOCOL_VERSION,
        )
    if hello.chain_id != network.chain_id:
        raise HelloMismatch("chain_id", hello.chain_id, network.chain_id, DisconnectReason.CHAIN_ID)
    if hello.genesis_hash != network.genesis_hash:
        raise HelloMismatch(
            "genesis_hash",
            hello.genesis_hash.hex(),
            network.genesis_hash.hex(),
            DisconnectReason.GENESIS,
        )


def validate_hello_signature(hello: Hello, signature: bytes, handshake_hash: bytes) -> None:
    if len(signature) != SIGNATURE_SIZE:
        raise BadHelloSignature(hello.node_id, None)
    digest = compute_hello_digest(hello, handshake_hash)
    try:
        recovered = keys.Signature(signature).recover_public_key_from_msg_hash(digest).to_bytes()
    except (BadSignature, EthKeysValidationError, ValueError):
        raise BadHelloSignature(hello.node_id, None) from None
    if recovered != hello.node_id:
        raise BadHelloSignature(hello.node_id, recovered)
