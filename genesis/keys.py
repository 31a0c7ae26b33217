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

from eth_account import Account
from eth_utils import keccak, to_canonical_address

from primitives.limits import decode_json_bounded, read_bounded_file

DEVNET_SEED = b"magicoin-devnet-validator-%d"
MAX_KEYSTORE_SIZE = 64 * 1024  # a v3 keystore is under 1 kB
MAX_KEYSTORE_DEPTH = 8  # {"crypto": {"kdfparams": {...}}}: three levels


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
    """A keystore's JSON, bounded in size and depth before parsing (a keystore may come from anywhere)."""
    return decode_json_bounded(data, max_size=MAX_KEYSTORE_SIZE, max_depth=MAX_KEYSTORE_DEPTH)


def keystore_filename(address: bytes) -> str:
    return f"validator-{address.hex()}.json"
