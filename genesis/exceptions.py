"""Typed errors of the genesis package."""
from __future__ import annotations

from primitives.errors import TypedError


class GenesisError(TypedError):
    """A genesis file or keystore is malformed or inconsistent."""
