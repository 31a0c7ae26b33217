"""The MUAGIC ledger primitives: the only functions that write balances.

A balance moves in exactly four ways (DESIGN.md, "Ledger rules"), one function each:
  credit_reward   pool -> earner, and the earner's recognition rises by the same amount
  apply_offering  account -> pool (an offering, or a tip), recognition unchanged
  apply_slash     offender's whole balance -> pool, recognition -> 0
  issue           new supply -> pool, recorded as issued
plus `apply_genesis_allocation`, which writes the initial state once. None of
them moves value from one account to another, so no sequence of transactions
can either: every path runs through the pool.

This module also fixes where the ledger's numbers live in storage: slot 0 of
an account is its recognition, slot 0 of the pool address the amount issued so
far. (Slots 1 and 2, the worker and standing records, belong to the economy.)
"""

from __future__ import annotations

from eth_utils import big_endian_to_int, int_to_big_endian

from chain.abc import StateAPI
from chain.exceptions import LedgerError
from chain.transactions import POOL_ADDRESS, is_system_address

RECOGNITION_SLOT = (0).to_bytes(32, "big")
ISSUED_SLOT = (0).to_bytes(32, "big")  # at POOL_ADDRESS


def _encode_int(value: int) -> bytes:
    # b"" for zero deletes the slot, as Ethereum storage does.
    return int_to_big_endian(value) if value else b""


def _require_amount(amount: int) -> None:
    assert (
        isinstance(amount, int) and amount >= 0
    ), f"ledger amounts are non-negative ints, got {amount!r}"


def _require_account(address: bytes) -> None:
    # Only accounts hold earned MUAGIC; the pool and the work addresses never do.
    assert len(address) == 20 and not is_system_address(address), f"not an account: {address.hex()}"


# --- reads -------------------------------------------------------------------------------------


def get_recognition(state: StateAPI, address: bytes) -> int:
    return big_endian_to_int(state.get_storage(address, RECOGNITION_SLOT))


def get_pool_balance(state: StateAPI) -> int:
    return state.get_balance(POOL_ADDRESS)


def get_issued(state: StateAPI) -> int:
    """MUAGIC issued since genesis (slot 0 of the pool address)."""
    return big_endian_to_int(state.get_storage(POOL_ADDRESS, ISSUED_SLOT))


# --- the four moves ------------------------------------------------------------------------------


def credit_reward(state: StateAPI, address: bytes, amount: int) -> None:
    """Pay `amount` from the pool to `address` for recognised work; its recognition rises by `amount`."""
    _require_amount(amount)
    _require_account(address)
    pool = state.get_balance(POOL_ADDRESS)
    if amount > pool:
        raise LedgerError("reward exceeds the pool", got=amount, expected=f"<= {pool}")
    state.set_balance(POOL_ADDRESS, pool - amount)
    state.set_balance(address, state.get_balance(address) + amount)
    _set_recognition(state, address, get_recognition(state, address) + amount)


def apply_offering(state: StateAPI, address: bytes, amount: int) -> None:
    """Move `amount` from `address` into the pool; recognition is unchanged (it records work, not holdings)."""
    _require_amount(amount)
    _require_account(address)
    balance = state.get_balance(address)
    if amount > balance:
        raise LedgerError("offering exceeds the balance", got=amount, expected=f"<= {balance}")
    state.set_balance(address, balance - amount)
    state.set_balance(POOL_ADDRESS, state.get_balance(POOL_ADDRESS) + amount)


def apply_slash(state: StateAPI, address: bytes) -> int:
    """Move the offender's whole balance into the pool and zero its recognition; returns the amount moved."""
    _require_account(address)
    amount = state.get_balance(address)
    state.set_balance(address, 0)
    state.set_balance(POOL_ADDRESS, state.get_balance(POOL_ADDRESS) + amount)
    _set_recognition(state, address, 0)
    return amount


def issue(state: StateAPI, amount: int) -> None:
    """Mint `amount` of new supply into the pool and record it as issued."""
    _require_amount(amount)
    state.set_balance(POOL_ADDRESS, state.get_balance(POOL_ADDRESS) + amount)
    state.set_storage(POOL_ADDRESS, ISSUED_SLOT, _encode_int(get_issued(state) + amount))


def apply_genesis_allocation(
    state: StateAPI, address: bytes, balance: int, recognition: int
) -> None:
    """Write an account's initial balance and recognition (genesis only; the state must be empty)."""
    _require_amount(balance)
    _require_amount(recognition)
    assert address == POOL_ADDRESS or not is_system_address(
        address
    ), f"not an account: {address.hex()}"
    assert (
        state.get_balance(address) == 0
    ), "genesis allocations are written once, into an empty state"
    state.set_balance(address, balance)
    if address != POOL_ADDRESS:
        _set_recognition(state, address, recognition)


def _set_recognition(state: StateAPI, address: bytes, recognition: int) -> None:
    state.set_storage(address, RECOGNITION_SLOT, _encode_int(recognition))
