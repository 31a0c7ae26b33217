"""Transactions: decoding, stateless validation and sender recovery.

magicoin transactions are standard EIP-1559 (type 2) transactions, so eth-account
and web3.py sign them unmodified; py-evm's `LondonTransactionBuilder` decodes
them. The `to` system address selects the work kind and `data` carries its RLP
payload. This module owns the system address table, the stateless checks (form,
chain id, kind, value, size, fee fields, signature) and the sender cache.
Checks against state (nonce, balance, per-block limits) live in `chain.transition`.

Decoding and sender recovery are the replay hot path. `predecode_transactions`
(or just `recover_senders`) is a plain function over raw bytes, so a process
pool can run it ahead of execution; `remember_transactions` (or
`remember_senders`) primes the caches that `decode_transaction` reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import islice
from typing import Iterable, NamedTuple, Sequence

import rlp
from rlp.codec import length_prefix

from eth.vm.forks.berlin.transactions import calculate_txn_intrinsic_gas_berlin
from eth.vm.forks.london.transactions import LondonTransactionBuilder
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend
from eth_keys.exceptions import BadSignature as KeysBadSignature
from eth_keys.exceptions import ValidationError as KeysValidationError
from eth_utils import to_checksum_address

from chain.exceptions import (
    BadSignature,
    PayloadError,
    TransactionError,
    InvalidFee,
    MalformedTransaction,
    OversizedPayload,
    UnknownSystemAddress,
    UnsupportedTransactionType,
    ValueOnNonOfferingKind,
    ValueTransferNotAllowed,
    WrongChainId,
)
from chain.payloads import decode_payload
from primitives.errors import compute_error_summary
from primitives.hashing import keccak
from primitives.limits import MAX_RLP_DEPTH, RLPBoundsError, validate_rlp_shape

# The design asks for coincurve explicitly: the pure-Python backend is ~100x slower.
KEYS = KeyAPI(CoinCurveECCBackend)

DYNAMIC_FEE_TX_TYPE = 2
# The base fee is a fixed 1 wei per gas, and it is waived. It exists to be reported
# (every block's `baseFeePerGas`, `eth_feeHistory`): EIP-1559 clients decide from it
# whether a chain is 1559, and ethers v6 tests it for truthiness, building a legacy
# (type 0) transaction when it is 0. Waived means no transaction pays it and `max_fee`
# is not checked against it: the fee stays gas_used * min(tip, max_fee), so a
# zero-balance account submits work with a zero tip whatever max_fee its wallet fills in.
WAIVED_BASE_FEE_PER_GAS = 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2

SYSTEM_ADDRESS_LIMIT = 2**16  # addresses numerically below this are reserved for the system


def system_address(number: int) -> bytes:
    return number.to_bytes(20, "big")


POOL_ADDRESS = system_address(0x1000)

KIND_BY_ADDRESS: dict[bytes, str] = {
    system_address(0x1001): "register_worker",
    system_address(0x1002): "inference_request",
    system_address(0x1003): "inference_result",
    system_address(0x1004): "attestation",
    system_address(0x1005): "annotation_task",
    system_address(0x1006): "annotation",
    system_address(0x1007): "offering",
    system_address(0x1008): "evidence",
    system_address(0x1009): "register_annotator",
    system_address(0x100A): "register_model",
    system_address(0x100B): "declare_models",
}
ADDRESS_BY_KIND: dict[str, bytes] = {kind: address for address, kind in KIND_BY_ADDRESS.items()}
WORK_KINDS = tuple(ADDRESS_BY_KIND)
OFFERING_KIND = "offering"


def is_system_address(address: bytes) -> bool:
    return int.from_bytes(address, "big") < SYSTEM_ADDRESS_LIMIT


@dataclass(frozen=True, slots=True)
class Transaction:
    """A decoded, signature-checked work transaction (its RLP is `raw`)."""

    raw: bytes
    hash: bytes
    sender: bytes
    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes
    kind: str
    intrinsic_gas: int
    # The decoded payload when `data` decodes for `kind`, else None (validate_transaction
    # then raises the payload's typed error). Decoded here so a worker process can do it.
    payload: object = field(default=None, compare=False, repr=False)

    @property
    def effective_tip(self) -> int:
        # The base fee is waived (WAIVED_BASE_FEE_PER_GAS), so the whole max fee is available as tip,
        # capped by the tip asked; nothing else is ever charged.
        return min(self.max_priority_fee_per_gas, self.max_fee_per_gas)

    @property
    def gas_used(self) -> int:
        return self.intrinsic_gas

    @property
    def fee(self) -> int:
        """What the sender pays into the pool."""
        return self.gas_used * self.effective_tip


# --- sender cache -----------------------------------------------------------------------------

SENDER_CACHE_SIZE = 1 << 17
_sender_cache: dict[bytes, bytes] = {}


def _cache_sender(tx_hash: bytes, sender: bytes) -> None:
    if len(_sender_cache) >= SENDER_CACHE_SIZE:
        # Dicts keep insertion order: drop the older half in one sweep instead of per-entry LRU bookkeeping.
        for key in list(islice(_sender_cache, SENDER_CACHE_SIZE // 2)):
            del _sender_cache[key]
    _sender_cache[tx_hash] = sender


def remember_senders(raw_txs: Sequence[bytes], senders: Sequence[bytes | None]) -> None:
    """Prime the cache with senders recovered elsewhere (e.g. by `recover_senders` in a worker process)."""
    for raw, sender in zip(raw_txs, senders):
        if sender is not None:
            _cache_sender(keccak(raw), sender)


def clear_sender_cache() -> None:
    """Forget every recovered sender and decoded transaction (tests, and memory pressure)."""
    _sender_cache.clear()
    _decoded_cache.clear()


# Decoded transactions by their raw bytes: the proposer builds then executes the same
# transactions, and replay pre-decodes them in worker processes.
DECODED_CACHE_SIZE = 1 << 15
_decoded_cache: dict[bytes, "Transaction"] = {}


def _cache_decoded(tx: "Transaction") -> None:
    if len(_decoded_cache) >= DECODED_CACHE_SIZE:
        for key in list(islice(_decoded_cache, DECODED_CACHE_SIZE // 2)):
            del _decoded_cache[key]
    _decoded_cache[tx.raw] = tx


def recover_senders(raw_txs: Iterable[bytes]) -> list[bytes | None]:
    """Recover the sender of each raw transaction, None where it cannot be recovered.

    Pure and picklable, so it can run in a process pool; the typed error for a bad
    transaction is raised later by `decode_transaction`.
    """
    senders: list[bytes | None] = []
    for raw in raw_txs:
        try:
            senders.append(_recover_sender(_decode_typed(raw)))
        except (
            Exception
        ):  # noqa: BLE001 - any failure here is reported precisely by decode_transaction
            senders.append(None)
    return senders


# --- decoding -----------------------------------------------------------------------------------


def get_kind(to: bytes) -> str:
    """The work kind that `to` selects; raises for accounts, the pool and unknown system addresses."""
    if to == b"":
        raise ValueTransferNotAllowed(
            "a transaction needs a system `to` (contract creation is not supported)",
            got=to,
            expected="a work kind address",
        )
    kind = KIND_BY_ADDRESS.get(to)
    if kind is not None:
        return kind
    if is_system_address(to):
        raise UnknownSystemAddress(
            "`to` is a system address with no work kind",
            got=to,
            expected=sorted("0x" + a.hex() for a in KIND_BY_ADDRESS),
        )
    raise ValueTransferNotAllowed(
        "transactions to accounts are invalid: MUAGIC never moves between accounts",
        got=to,
        expected="a work kind address",
    )


class PlainDynamicFeeTransaction(NamedTuple):
    """The fields of a canonical type-2 transaction with an empty access list, decoded without py-evm.

    It has the attributes of py-evm's `DynamicFeeTransaction` that this module
    reads, so the checks below run on either.
    """

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes
    value: int
    data: bytes
    access_list: tuple
    y_parity: int
    r: int
    s: int
    unsigned_rlp: bytes  # rlp of the first nine fields, what the signature covers (after the type byte)

    def get_message_for_signing(self) -> bytes:
        return bytes((DYNAMIC_FEE_TX_TYPE,)) + self.unsigned_rlp


_UINT_FIELD_INDEXES = (0, 1, 2, 3, 4, 6, 9, 10, 11)
_UINT64_MAX = 2**64 - 1


def _encode_string(value: bytes) -> bytes:
    if len(value) == 1 and value[0] < 0x80:
        return value
    return length_prefix(len(value), 0x80) + value


def _decode_plain(raw: bytes) -> PlainDynamicFeeTransaction | None:
    """The common case of `_decode_typed` at a fraction of its cost, or None to leave it to py-evm.

    It accepts only what py-evm's decoding and `validate()` accept (minimal
    integers within their ranges, a 0- or 20-byte `to`, an empty access list)
    and yields the same field values; anything else, well formed or not, goes
    the slow way, which also raises the precise error. `test_transactions_fast`
    checks both ways agree.
    """
    try:
        items = rlp.decode(raw[1:])
    except Exception:  # noqa: BLE001 - whatever it is, py-evm's decoding reports it precisely
        return None
    if not isinstance(items, list) or len(items) != 12 or items[8] != []:
        return None
    values = []
    for index in _UINT_FIELD_INDEXES:
        item = items[index]
        # big_endian_int refuses a leading zero byte; validate_uint256 refuses more than 32 bytes.
        if not isinstance(item, bytes) or len(item) > 32 or item[:1] == b"\x00":
            return None
        values.append(int.from_bytes(item, "big"))
    chain_id, nonce, tip, max_fee, gas, value, y_parity, r, s = values
    to, data = items[5], items[7]
    if not isinstance(to, bytes) or len(to) not in (0, 20) or not isinstance(data, bytes):
        return None
    if nonce >= _UINT64_MAX or y_parity > 255:  # validate_nonce, validate_uint8
        return None
    # rlp.decode is strict (canonical prefixes, nothing trailing), so the first nine items' encodings are the
    # bytes between the list's header and the three signature items: the signed message is sliced, not re-encoded.
    header_length = 1 if raw[1] <= 0xF7 else 1 + raw[1] - 0xF7
    signature_length = sum(len(_encode_string(item)) for item in items[9:])
    unsigned_body = raw[1 + header_length:len(raw) - signature_length]
    unsigned_rlp = length_prefix(len(unsigned_body), 0xC0) + unsigned_body
    return PlainDynamicFeeTransaction(chain_id, nonce, tip, max_fee, gas, to, value, data, (), y_parity, r, s,
                                      unsigned_rlp)


# What each EIP-2718 first byte is, so a refusal names what the user's library built.
# 0xc0 and above start an RLP list: a legacy (pre-EIP-2718) transaction, "type 0" in JSON-RPC.
TRANSACTION_TYPE_NAMES = {
    1: "access-list (type 1, EIP-2930)",
    3: "blob (type 3, EIP-4844)",
    4: "set-code (type 4, EIP-7702)",
}
LEGACY_FIRST_BYTE = 0xC0


def describe_transaction_type(type_byte: int) -> tuple[str, int]:
    """The kind of an unsupported transaction and its JSON-RPC type number (legacy is 0)."""
    if type_byte >= LEGACY_FIRST_BYTE:
        return "legacy (type 0)", 0
    return TRANSACTION_TYPE_NAMES.get(type_byte, f"unknown (type {type_byte})"), type_byte


def make_unsupported_type_error(type_byte: int) -> UnsupportedTransactionType:
    # Libraries pick the type from the node's fee fields, so the user often did not choose it:
    # say what was built and how to send the kind we take.
    name, number = describe_transaction_type(type_byte)
    return UnsupportedTransactionType(
        f"{name} transaction: magicoin accepts EIP-1559 (type 2) transactions; send with type: 2",
        got=number,
        expected=DYNAMIC_FEE_TX_TYPE,
    )


def _decode_typed(raw: bytes):  # -> py-evm LondonTypedTransaction or PlainDynamicFeeTransaction
    if not isinstance(raw, (bytes, bytearray)) or len(raw) == 0:
        raise MalformedTransaction(
            "empty transaction", got=raw, expected="an EIP-2718 typed transaction"
        )
    type_byte = raw[0]
    if type_byte != DYNAMIC_FEE_TX_TYPE:
        raise make_unsupported_type_error(type_byte)
    _validate_shape(raw)
    plain = _decode_plain(bytes(raw))
    if plain is not None:
        return plain
    return _decode_typed_pyevm(raw)


# Twelve fields and an access list: pyrlp's time grows with depth and items, so both are bounded before it runs.
MAX_TX_RLP_ITEMS = 1024


def _validate_shape(raw: bytes) -> None:
    try:
        validate_rlp_shape(raw, MAX_RLP_DEPTH, MAX_TX_RLP_ITEMS, start=1)
    except RLPBoundsError as error:
        raise MalformedTransaction(f"undecodable EIP-1559 transaction: {error.message}", got=error.got,
                                   expected=error.expected) from None


def _decode_typed_pyevm(raw: bytes):  # -> py-evm LondonTypedTransaction
    try:
        tx = LondonTransactionBuilder.decode(bytes(raw))
        tx.validate()
    except (
        Exception
    ) as error:  # noqa: BLE001 - py-evm raises rlp, eth-utils and its own errors here
        raise MalformedTransaction(
            f"undecodable EIP-1559 transaction: {compute_error_summary(error)}",
            got=bytes(raw),
            expected="rlp([chain_id, nonce, tip, max_fee, gas, to, value, data, "
            "access_list, y_parity, r, s])",
        ) from None
    return tx


def _recover_sender(tx) -> bytes:
    # EIP-2: a high-s signature is the malleated twin of a valid one; refuse it so each
    # signed intent has exactly one encoding (and one hash).
    if not 1 <= tx.s <= SECP256K1_HALF_N:
        raise BadSignature(
            "signature s is out of the low half of the curve order",
            got=tx.s,
            expected=f"1..{SECP256K1_HALF_N}",
        )
    try:
        signature = KEYS.Signature(vrs=(tx.y_parity, tx.r, tx.s))
        message_hash = keccak(tx.get_message_for_signing())
        return signature.recover_public_key_from_msg_hash(message_hash).to_canonical_address()
    except (KeysBadSignature, KeysValidationError, ValueError) as error:
        raise BadSignature(
            f"signature does not recover: {error}",
            got=(tx.y_parity, tx.r, tx.s),
            expected="a valid secp256k1 signature",
        ) from None


def decode_transaction(raw: bytes, chain_id: int, max_payload_size: int) -> Transaction:
    """Decode a raw transaction and run every check that needs no state.

    Raises the typed error of the first failed check, cheapest first, so junk is
    rejected before any elliptic-curve work. A transaction already decoded (here or
    by `predecode_transactions` in a worker, then `remember_transactions`) has passed
    every check that does not depend on the chain id or the size limit, so only
    those two are repeated for it.
    """
    known = _decoded_cache.get(raw)
    if known is not None:
        _validate_chain_id(known.chain_id, chain_id)
        _validate_payload_size(known.kind, known.data, max_payload_size)
        return known
    typed = _decode_typed(raw)
    _validate_chain_id(typed.chain_id, chain_id)
    kind = _get_checked_kind(typed)
    _validate_payload_size(kind, typed.data, max_payload_size)
    tx = _build_checked(raw, typed, kind)
    _cache_decoded(tx)
    return tx


def predecode_transactions(raw_txs: Iterable[bytes]) -> list[Transaction | None]:
    """Decode and signature-check each transaction (all checks but chain id and size), None where one fails.

    Pure and picklable, for a process pool ahead of execution; feed the result to
    `remember_transactions` in the executing process.
    """
    decoded: list[Transaction | None] = []
    for raw in raw_txs:
        try:
            typed = _decode_typed(raw)
            decoded.append(_build_checked(raw, typed, _get_checked_kind(typed)))
        except TransactionError:
            decoded.append(None)
    return decoded


def remember_transactions(transactions: Iterable[Transaction | None]) -> None:
    for tx in transactions:
        if tx is not None:
            _cache_decoded(tx)


def _validate_chain_id(got: int, chain_id: int) -> None:
    if got != chain_id:
        raise WrongChainId("transaction signed for another chain", got=got, expected=chain_id)


def _validate_payload_size(kind: str, data: bytes, max_payload_size: int) -> None:
    if len(data) > max_payload_size:
        raise OversizedPayload(
            f"{kind} payload too large", got=len(data), expected=f"<= {max_payload_size} bytes"
        )


def _get_checked_kind(typed) -> str:
    kind = get_kind(typed.to)
    if typed.value != 0 and kind != OFFERING_KIND:
        raise ValueOnNonOfferingKind(
            f"a {kind} transaction carries value", got=typed.value, expected=0
        )
    return kind


def _build_checked(raw: bytes, typed, kind: str) -> Transaction:
    """Check the fee fields and the signature of a decoded py-evm transaction and freeze it."""
    if typed.max_priority_fee_per_gas > typed.max_fee_per_gas:
        raise InvalidFee(
            "max priority fee above max fee",
            got=typed.max_priority_fee_per_gas,
            expected=f"<= {typed.max_fee_per_gas}",
        )
    intrinsic_gas = calculate_txn_intrinsic_gas_berlin(typed)
    if typed.gas < intrinsic_gas:
        raise InvalidFee(
            "gas limit below the intrinsic gas", got=typed.gas, expected=f">= {intrinsic_gas}"
        )

    tx_hash = keccak(raw)
    sender = _sender_cache.get(tx_hash)
    if sender is None:
        sender = _recover_sender(typed)
        _cache_sender(tx_hash, sender)

    return Transaction(
        raw=bytes(raw),
        hash=tx_hash,
        sender=sender,
        chain_id=typed.chain_id,
        nonce=typed.nonce,
        max_priority_fee_per_gas=typed.max_priority_fee_per_gas,
        max_fee_per_gas=typed.max_fee_per_gas,
        gas=typed.gas,
        to=typed.to,
        value=typed.value,
        data=typed.data,
        kind=kind,
        intrinsic_gas=intrinsic_gas,
        payload=_try_decode_payload(kind, typed.data),
    )


def _try_decode_payload(kind: str, data: bytes) -> object:
    try:
        return decode_payload(kind, data)
    except PayloadError:
        return None


def make_work_tx_fields(
    *,
    chain_id: int,
    nonce: int,
    kind: str,
    data: bytes,
    value: int = 0,
    gas: int = 1_000_000,
    max_fee_per_gas: int = 0,
    max_priority_fee_per_gas: int = 0,
) -> dict:
    """The eth-account `sign_transaction` dict for a work transaction (type 2, base fee 0)."""
    return {
        "type": DYNAMIC_FEE_TX_TYPE,
        "chainId": chain_id,
        "nonce": nonce,
        "to": to_checksum_address(ADDRESS_BY_KIND[kind]),
        "value": value,
        "data": data,
        "gas": gas,
        "maxFeePerGas": max_fee_per_gas,
        "maxPriorityFeePerGas": max_priority_fee_per_gas,
    }


def sign_work_transaction(
    private_key: bytes,
    *,
    chain_id: int,
    nonce: int,
    kind: str,
    data: bytes,
    value: int = 0,
    gas: int = 1_000_000,
    max_fee_per_gas: int = 0,
    max_priority_fee_per_gas: int = 0,
) -> bytes:
    """Sign a work transaction with py-evm and coincurve (fast; for builders, devnets and benchmarks).

    The bytes are identical to what eth-account's `sign_transaction` produces for
    `make_work_tx_fields(...)` (both sign deterministically, RFC 6979).
    """
    unsigned = LondonTransactionBuilder.new_unsigned_dynamic_fee_transaction(
        chain_id,
        nonce,
        max_priority_fee_per_gas,
        max_fee_per_gas,
        gas,
        ADDRESS_BY_KIND[kind],
        value,
        data,
        [],
    )
    return unsigned.as_signed_transaction(KEYS.PrivateKey(private_key)).encode()
