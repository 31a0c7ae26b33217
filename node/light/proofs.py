"""Pure EIP-1186 proof checks: an account and its recognition slot against a verified state root.

The state is Ethereum-shaped (docs/ARCHITECTURE.md): the world trie maps
keccak(address) to rlp([nonce, balance, storage_root, code_hash]), and an
account's storage trie maps keccak(slot32) to rlp(value), with recognition at
slot 0. So py-trie's `HexaryTrie.get_from_proof` checks both levels unchanged.

A proof is checked first, then every value the server *reported* beside it is
compared with the proven one: a server that leaves a valid proof but edits the
balance in the JSON is caught as a `ReportedValueMismatch`, a server that edits
the proof (or sends one for another root) as an `InvalidProof`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import rlp
from eth.constants import BLANK_ROOT_HASH
from eth_utils import keccak
from trie import HexaryTrie
from trie.exceptions import BadTrieProof, InvalidNode, ValidationError

from primitives.limits import decode_rlp_bounded

from node.light.exceptions import InvalidProof, ReportedValueMismatch

EMPTY_CODE_HASH = keccak(b"")
RECOGNITION_SLOT = (0).to_bytes(32, "big")
# py-trie checks a proof's nodes as it walks them and raises its own untyped errors (or a plain
# TypeError/IndexError) on a node of the wrong shape; from an untrusted server each means "no proof".
PROOF_ERRORS = (BadTrieProof, InvalidNode, ValidationError, rlp.exceptions.RLPException, ValueError, TypeError,
                IndexError, KeyError)


class VerifiedAccount(NamedTuple):
    """Values proven against the state root of the verified header at `height`."""

    address: bytes
    height: int
    state_root: bytes
    nonce: int
    balance: int
    recognition: int
    storage_root: bytes


def parse_hex_bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not 0x-hex: {value!r}")
    return bytes.fromhex(value[2:])


def parse_hex_int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"not a hex quantity: {value!r}")
    return int(value, 16)


def compute_proven_value(root: bytes, key: bytes, proof_nodes: list[bytes]) -> bytes:
    """The value under keccak(key) in the trie at `root`, b"" if the proof shows it absent."""
    nodes = [decode_rlp_bounded(node) for node in proof_nodes]
    return HexaryTrie.get_from_proof(root, keccak(key), nodes)


def decode_account(encoded: bytes) -> tuple[int, int, bytes, bytes]:
    if encoded == b"":
        return 0, 0, BLANK_ROOT_HASH, EMPTY_CODE_HASH
    nonce, balance, storage_root, code_hash = decode_rlp_bounded(encoded)
    if not all(isinstance(field, bytes) for field in (nonce, balance, storage_root, code_hash)):
        raise ValueError("account fields are not byte strings")
    return int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), storage_root, code_hash


def decode_slot_value(encoded: bytes) -> int:
    if not encoded:
        return 0
    value = decode_rlp_bounded(encoded)
    if not isinstance(value, bytes):
        raise ValueError("storage value is not a byte string")
    return int.from_bytes(value, "big")


def verify_account_proof(address: bytes, height: int, state_root: bytes, proof: Any) -> VerifiedAccount:
    """Check an eth_getProof answer (with storage key 0) against `state_root`; the proven account."""
    try:
        account_nodes = [parse_hex_bytes(node) for node in proof["accountProof"]]
        reported = {
            "address": parse_hex_bytes(proof["address"]),
            "nonce": parse_hex_int(proof["nonce"]),
            "balance": parse_hex_int(proof["balance"]),
            "storageHash": parse_hex_bytes(proof["storageHash"]),
            "codeHash": parse_hex_bytes(proof["codeHash"]),
        }
        storage = proof["storageProof"]
        slot_item = next(item for item in storage if parse_hex_int(item["key"]) == 0)
        slot_nodes = [parse_hex_bytes(node) for node in slot_item["proof"]]
        reported["recognition"] = parse_hex_int(slot_item["value"])
    except (KeyError, TypeError, ValueError, StopIteration, AttributeError) as error:
        raise InvalidProof(address, height, f"malformed eth_getProof answer ({type(error).__name__}: {error})",
                           got=str(proof)[:200], expected="EIP-1186 proof with storage key 0") from None

    if reported["address"] != address:
        raise ReportedValueMismatch(address, height, "address", reported["address"], address)
    try:
        encoded = compute_proven_value(state_root, address, account_nodes)
        nonce, balance, storage_root, code_hash = decode_account(encoded)
    except PROOF_ERRORS as error:
        raise InvalidProof(address, height, f"account proof does not lead from the state root ({str(error)[:120]})",
                           got=keccak(account_nodes[0]) if account_nodes else None, expected=state_root) from None
    try:
        slot_value = compute_proven_value(storage_root, RECOGNITION_SLOT, slot_nodes)
        recognition = decode_slot_value(slot_value)
    except PROOF_ERRORS as error:
        raise InvalidProof(address, height,
                           f"recognition proof does not lead from the storage root ({str(error)[:120]})",
                           got=keccak(slot_nodes[0]) if slot_nodes else None, expected=storage_root) from None

    proven = {"nonce": nonce, "balance": balance, "storageHash": storage_root, "codeHash": code_hash,
              "recognition": recognition}
    for field, value in proven.items():
        if reported[field] != value:
            raise ReportedValueMismatch(address, height, field, reported[field], value)
    return VerifiedAccount(address, height, state_root, nonce, balance, recognition, storage_root)
