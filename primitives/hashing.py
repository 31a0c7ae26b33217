"""keccak256, the one hash of the protocol.

safe-pysha3's C keccak (an optional dependency) costs a tenth of eth-hash's
pycryptodome wrapper per call, and trie commits, work ids and the economy hash
on every transaction. It is the same function, so every root and id is equal
whichever backend is installed.
"""
from __future__ import annotations

try:
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        """keccak256, as eth_utils.keccak computes it."""
        return _keccak_256(data).digest()
except ImportError:  # pragma: no cover - the dependency is optional
    from eth_utils import keccak  # noqa: F401

__all__ = ["keccak"]
