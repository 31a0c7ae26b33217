"""chain.transactions' plain decoder agrees with py-evm's on every input it accepts.

`_decode_plain` must accept only transactions py-evm decodes and validates, and
read the same fields from them; whatever it declines goes to py-evm.
"""
from __future__ import annotations

import rlp
from eth.vm.forks.berlin.transactions import calculate_txn_intrinsic_gas_berlin
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.exceptions import MalformedTransaction
from chain.transactions import (
    ADDRESS_BY_KIND, PlainDynamicFeeTransaction, _decode_plain, _decode_typed_pyevm, sign_work_transaction,
)

FIELDS = PlainDynamicFeeTransaction._fields[:-1]  # all but the signed-message cache

def int_item():
    # Canonical integers, and byte strings that may carry a leading zero or be too long for a uint256.
    return st.one_of(st.integers(0, 2**256 + 5), st.integers(0, 300), st.binary(max_size=34))


def any_item():
    return st.one_of(st.binary(max_size=24), st.lists(st.binary(max_size=21), max_size=2))


item_lists = st.tuples(
    int_item(), int_item(), int_item(), int_item(), int_item(),
    st.one_of(st.sampled_from([b"", ADDRESS_BY_KIND["annotation"]]), any_item()),
    int_item(), st.one_of(st.binary(max_size=40), st.lists(st.binary(max_size=3), max_size=2)),
    st.one_of(st.just([]), st.lists(st.tuples(st.binary(min_size=20, max_size=20),
                                               st.lists(st.binary(min_size=32, max_size=32), max_size=1)),
                                     max_size=1), st.binary(max_size=2)),
    int_item(), int_item(), int_item(),
).map(list)


def assert_same_as_pyevm(raw: bytes) -> None:
    plain = _decode_plain(raw)
    if plain is None:
        return  # declined: py-evm decides, and reports its error
    try:
        reference = _decode_typed_pyevm(raw)
    except MalformedTransaction as error:
        raise AssertionError(f"plain decoding accepted what py-evm refuses: {error}") from None
    for name in FIELDS:
        assert getattr(plain, name) == getattr(reference, name), name
    assert plain.get_message_for_signing() == reference.get_message_for_signing()
    assert calculate_txn_intrinsic_gas_berlin(plain) == calculate_txn_intrinsic_gas_berlin(reference)


@settings(max_examples=400, deadline=None)
@given(item_lists, st.binary(max_size=2))
def test_plain_decoding_agrees_with_pyevm(items, trailing):
    raw = b"\x02" + rlp.encode(items)
    assert_same_as_pyevm(raw)
    assert_same_as_pyevm(raw + trailing)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64), st.binary(max_size=64), st.data())
def test_mutated_signed_transactions_agree(nonce, data, draw):
    raw = sign_work_transaction(keccak(b"fast-decode"), chain_id=7, nonce=min(nonce, 2**64 - 2),
                                kind="annotation", data=data)
    assert _decode_plain(raw) is not None  # what wallets produce takes the fast way
    assert_same_as_pyevm(raw)
    position = draw.draw(st.integers(1, len(raw) - 1))
    byte = draw.draw(st.integers(0, 255))
    assert_same_as_pyevm(raw[:position] + bytes([byte]) + raw[position + 1:])
    assert_same_as_pyevm(raw[:position] + raw[position + 1:])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(0, 2**70), st.booleans())
def test_receipt_encoding_is_rlp(status, gas, empty_bloom):
    from chain.blocks import EMPTY_BLOOM, Receipt

    receipt = Receipt(status, gas, EMPTY_BLOOM if empty_bloom else b"\x01" * 256, [])
    assert receipt.encode() == b"\x02" + rlp.encode(receipt)
