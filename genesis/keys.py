"""Key generation and keystores for genesis validators and devnets.

Keystores are Web3 Secret Storage v3 files written with eth-account, so any
Ethereum tool (geth, web3.py, ethers) opens them.

`devnet_private_key(i)` is deterministic and therefore INSECURE: anyone can
derive it from the published seed. It exists so that `genesis/devnet.json`
can ship fixed validator addresses; never hold real value with it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_canonical_address

from primitives.limits import BoundedInputError, decode_json_bounded, read_bounded_file

DEVNET_SEED = b"magicoin-devnet-validator-%d"
MAX_KEYSTORE_SIZE = 64 * 1024  # a v3 keystore is under 1 kB
MAX_KEYSTORE_DEPTH = 8  # {"crypto": {"kdfparams": {...}}}: three levels
# Key derivation work a keystore may ask for. geth and eth-account write scrypt n = 2**18 (r 8, p 1) or
# pbkdf2 c = 262,144..1,000,000; a file asking for far more would hold the process for hours or exhaust memory.
MAX_SCRYPT_N = 1 << 20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_PBKDF2_ITERATIONS = 10_000_000
MAX_DKLEN = 64


class MalformedKeystore(BoundedInputError):
    """Not a v3 keystore eth-account can decrypt, or one asking for unbounded key-derivation work."""


def devnet_private_key(index: int) -> bytes:
    """INSECURE, public: keccak(b"magicoin-devnet-validator-<index>")."""
    return keccak(DEVNET_SEED % index)


def new_private_key() -> bytes:
    return bytes(Account.create().key)


def get_address(private_key: bytes) -> bytes:
    return to_canonical_address(Account.from_key(private_key).address)


def encrypt_keystore(private_key: bytes, password: str) -> dict:
    return Account.encrypt(private_key, password)


def write_keystore(path: str | Path, private_key: bytes, password: str) -> Path:
    """Write a v3 keystore readable only by its owner."""
    path = Path(path)
    keystore = encrypt_keystore(private_key, password)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(keystore, handle)
    return path


def read_keystore(path: str | Path, password: str) -> bytes:
    """Decrypt a v3 keystore; raises ValueError on a wrong password (eth-account's MAC check).

    A file that is not a keystore (too large, too deep, not JSON) raises
    `primitives.limits.BoundedInputError`, also a ValueError, saying what was expected.
    """
    return bytes(Account.decrypt(decode_keystore(read_bounded_file(path, MAX_KEYSTORE_SIZE)), password))


def decode_keystore(data: bytes | str) -> dict:
    """A v3 keystore's JSON, bounded in size and depth before parsing (a keystore may come from anywhere),
    then checked for the fields eth-account reads and a bounded key derivation (MalformedKeystore)."""
    keystore = decode_json_bounded(data, max_size=MAX_KEYSTORE_SIZE, max_depth=MAX_KEYSTORE_DEPTH)
    validate_keystore(keystore)
    return keystore


def validate_keystore(keystore: Any) -> None:
    """What eth-account's decrypt indexes, with its type, so decryption fails only by ValueError."""
    fields = normalize_keystore_keys(keystore)
    require_keystore(fields.get("version") == 3, "version", fields.get("version"), "3")
    crypto = normalize_keystore_keys(fields.get("crypto"))
    require_keystore(crypto.get("cipher") == "aes-128-ctr", "crypto.cipher", crypto.get("cipher"), "aes-128-ctr")
    for name in ("ciphertext", "mac"):
        require_keystore(isinstance(crypto.get(name), str), f"crypto.{name}", crypto.get(name), "a hex string")
    iv = normalize_keystore_keys(crypto.get("cipherparams")).get("iv")
    require_keystore(isinstance(iv, str), "crypto.cipherparams.iv", iv, "a hex string")
    kdf = crypto.get("kdf")
    params = normalize_keystore_keys(crypto.get("kdfparams"))
    require_keystore(isinstance(params.get("salt"), str), "crypto.kdfparams.salt", params.get("salt"), "a hex string")
    bounds = {"dklen": MAX_DKLEN}
    if kdf == "scrypt":
        bounds.update(n=MAX_SCRYPT_N, r=MAX_SCRYPT_R, p=MAX_SCRYPT_P)
    elif kdf == "pbkdf2":
        bounds.update(c=MAX_PBKDF2_ITERATIONS)
        require_keystore(params.get("prf") == "hmac-sha256", "crypto.kdfparams.prf", params.get("prf"),
                         "hmac-sha256")
    else:
        raise MalformedKeystore("keystore crypto.kdf", got=kdf, expected="scrypt or pbkdf2")
    for name, limit in bounds.items():
        value = params.get(name)
        require_keystore(type(value) is int and 1 <= value <= limit, f"crypto.kdfparams.{name}", value,
                         f"an integer 1..{limit}")


def normalize_keystore_keys(value: Any) -> dict:
    """A JSON object's keys lower-cased, as eth-keyfile reads them (geth writes "Crypto"); {} for a non-object."""
    if not isinstance(value, dict):
        return {}
    return {key.lower(): item for key, item in value.items()}


def require_keystore(condition: bool, field: str, got: Any, expected: str) -> None:
    if not condition:
        raise MalformedKeystore(f"keystore {field}", got=got, expected=expected)


def keystore_filename(address: bytes) -> str:
    return f"validator-{address.hex()}.json"
