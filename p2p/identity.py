"""Node identities and enode addresses.

A node is its secp256k1 public key (64 bytes, uncompressed, no prefix), the
same key eth-keys derives addresses from. An enode is `<pubkey-hex>@host:port`.
"""

from __future__ import annotations

from typing import NamedTuple

import coincurve
from eth_keys import keys

from .exceptions import InvalidEnode

NODE_ID_SIZE = 64


class Enode(NamedTuple):
    node_id: bytes
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6
        return f"{self.node_id.hex()}@{host}:{self.port}"


def get_node_id(private_key: keys.PrivateKey) -> bytes:
    return private_key.public_key.to_bytes()


def compute_short_id(node_id: bytes) -> str:
    """The first 8 bytes in hex, enough to tell peers apart in logs."""
    return node_id[:8].hex()


def parse_enode(text: str) -> Enode:
    body = text.strip()
    if body.startswith("enode://"):
        body = body[len("enode://") :]
    pubkey_hex, sep, address = body.partition("@")
    if not sep:
        raise InvalidEnode(text, "missing '@'")
    if pubkey_hex.startswith("0x"):
        pubkey_hex = pubkey_hex[2:]
    try:
        node_id = bytes.fromhex(pubkey_hex)
    except ValueError:
        raise InvalidEnode(text, "public key is not hex") from None
    if len(node_id) != NODE_ID_SIZE:
        raise InvalidEnode(text, f"public key has {len(node_id)} bytes, expected {NODE_ID_SIZE}")
    validate_public_key(text, node_id)
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise InvalidEnode(text, "missing host:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidEnode(text, f"port {port_text!r} is not in 1..65535")
    return Enode(node_id, host.strip("[]"), int(port_text))


def validate_public_key(text: str, node_id: bytes) -> None:
    # A point off the curve could never complete a handshake; refuse it up front.
    try:
        coincurve.PublicKey(b"\x04" + node_id)
    except ValueError:
        raise InvalidEnode(text, "public key is not a secp256k1 point") from None
