"""chain.transactions: eth-account-signed work transactions decode; every bad input raises its typed error."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from chain.exceptions import (
    TransactionError,
    BadSignature,
    InvalidFee,
    MalformedTransaction,
    OversizedPayload,
    UnknownSystemAddress,
    UnsupportedTransactionType,
    ValueOnNonOfferingKind,
    ValueTransferNotAllowed,
    WrongChainId,
)
from chain.transactions import (
    ADDRESS_BY_KIND,
    POOL_ADDRESS,
    SECP256K1_N,
    WORK_KINDS,
    clear_sender_cache,
    decode_transaction,
    make_work_tx_fields,
    recover_senders,
    remember_senders,
    sign_work_transaction,
)
from tests.chain.conftest import CHAIN_ID, USER_KEYS, USERS, sample_payloads, sign_with_eth_account

MAX_PAYLOAD = 2048


def wallet_fields(**overrides):
    fields = make_work_tx_fields(
        chain_id=CHAIN_ID,
        nonce=0,
        kind="attestation",
        data=rlp.encode(sample_payloads()["attestation"]),
    )
    fields.update(overrides)
    return fields


def sign(fields, key=USER_KEYS[0]) -> bytes:
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


@pytest.mark.parametrize("kind", WORK_KINDS)
def test_each_kind_signed_by_eth_account_decodes(kind):
    payload = sample_payloads()[kind]
    raw = sign_with_eth_account(
        USER_KEYS[1],
        nonce=4,
        kind=kind,
        payload=payload,
        value=10 if kind == "offering" else 0,
        tip=2,
    )
    tx = decode_transaction(raw, CHAIN_ID, MAX_PAYLOAD)
    assert (tx.kind, tx.sender, tx.nonce, tx.to) == (kind, USERS[1], 4, ADDRESS_BY_KIND[kind])
    assert tx.hash == keccak(raw) and tx.data == rlp.encode(payload)
    assert tx.fee == 2 * tx.intrinsic_gas


def test_fast_signer_matches_eth_account():
    data = rlp.encode(sample_payloads()["offering"])
    ours = sign_work_transaction(
        USER_KEYS[0], chain_id=CHAIN_ID, nonce=1, kind="offering", data=data, value=3
    )
    theirs = sign(
        make_work_tx_fields(chain_id=CHAIN_ID, nonce=1, kind="offering", data=data, value=3)
    )
    assert ours == theirs


def test_sender_cache_and_batch_recovery():
    raws = [sign(wallet_fields(nonce=n), key) for n, key in enumerate(USER_KEYS)]
    senders = recover_senders(raws + [b"\x02junk"])
    assert senders == USERS + [None]
    clear_sender_cache()
    remember_senders(raws, senders)
    assert [decode_transaction(raw, CHAIN_ID, MAX_PAYLOAD).sender for raw in raws] == USERS


def test_malformed_rlp():
    with pytest.raises(MalformedTransaction):
        decode_transaction(b"\x02\xc3\x01\x02\x03", CHAIN_ID, MAX_PAYLOAD)
    with pytest.raises(MalformedTransaction):
        decode_transaction(b"", CHAIN_ID, MAX_PAYLOAD)
    raw = sign(wallet_fields())
    with pytest.raises(MalformedTransaction):
        decode_transaction(raw + b"\x00", CHAIN_ID, MAX_PAYLOAD)
    with pytest.raises(MalformedTransaction):
        decode_transaction(raw[:-5], CHAIN_ID, MAX_PAYLOAD)


def _resign(raw: bytes, **changes) -> bytes:
    """Rebuild a signed tx with some of its 12 RLP fields changed (without signing again)."""
    items = rlp.decode(raw[1:])
    names = [
        "chain_id",
        "nonce",
        "tip",
        "max_fee",
        "gas",
        "to",
        "value",
        "data",
        "access_list",
        "y",
        "r",
        "s",
    ]
    for name, value in changes.items():
        items[names.index(name)] = value
    return raw[:1] + rlp.encode(items)


def test_bad_signature():
    raw = sign(wallet_fields())
    with pytest.raises(BadSignature):
        decode_transaction(_resign(raw, r=0), CHAIN_ID, MAX_PAYLOAD)
    s = rlp.decode(raw[1:])[11]
    high_s = SECP256K1_N - int.from_bytes(s, "big")
    y = 1 - int.from_bytes(rlp.decode(raw[1:])[9], "big")
    with pytest.raises(BadSignature) as info:
        decode_transaction(_resign(raw, s=high_s, y=y), CHAIN_ID, MAX_PAYLOAD)
    assert info.value.got == high_s
    # A tampered field recovers someone else: not an error at decode, but never the signer.
    tampered = decode_transaction(_resign(raw, nonce=9), CHAIN_ID, MAX_PAYLOAD)
    assert tampered.sender != USERS[0]


def test_wrong_chain_id():
    with pytest.raises(WrongChainId) as info:
        decode_transaction(sign(wallet_fields(chainId=1)), CHAIN_ID, MAX_PAYLOAD)
    assert (info.value.got, info.value.expected) == (1, CHAIN_ID)


def test_plain_value_transfer_and_missing_to():
    transfer = sign(wallet_fields(to=to_checksum_address(USERS[1]), value=5, data=b""))
    with pytest.raises(ValueTransferNotAllowed) as info:
        decode_transaction(transfer, CHAIN_ID, MAX_PAYLOAD)
    assert info.value.got == USERS[1]
    zero_value = sign(wallet_fields(to=to_checksum_address(USERS[1])))
    with pytest.raises(ValueTransferNotAllowed):
        decode_transaction(zero_value, CHAIN_ID, MAX_PAYLOAD)
    fields = wallet_fields()
    del fields["to"]  # contract creation
    with pytest.raises(ValueTransferNotAllowed):
        decode_transaction(sign(fields), CHAIN_ID, MAX_PAYLOAD)


def test_value_on_a_non_offering_kind():
    with pytest.raises(ValueOnNonOfferingKind) as info:
        decode_transaction(sign(wallet_fields(value=1)), CHAIN_ID, MAX_PAYLOAD)
    assert (info.value.got, info.value.expected) == (1, 0)


@pytest.mark.parametrize(
    "address", [POOL_ADDRESS, (0x10FF).to_bytes(20, "big"), (1).to_bytes(20, "big")]
)
def test_unknown_system_address(address):
    with pytest.raises(UnknownSystemAddress):
        decode_transaction(
            sign(wallet_fields(to=to_checksum_address(address))), CHAIN_ID, MAX_PAYLOAD
        )


def test_oversized_payload():
    raw = sign(wallet_fields(data=b"\x01" * (MAX_PAYLOAD + 1), gas=200_000))
    with pytest.raises(OversizedPayload) as info:
        decode_transaction(raw, CHAIN_ID, MAX_PAYLOAD)
    assert info.value.got == MAX_PAYLOAD + 1


def test_unsupported_types():
    legacy = {
        "chainId": CHAIN_ID,
        "nonce": 0,
        "to": to_checksum_address(ADDRESS_BY_KIND["attestation"]),
        "value": 0,
        "data": b"",
        "gas": 50_000,
        "gasPrice": 0,
    }
    with pytest.raises(UnsupportedTransactionType) as info:
        decode_transaction(sign(legacy), CHAIN_ID, MAX_PAYLOAD)
    # Named as the user's library calls it (type 0, not the RLP list's first byte), with what to do instead.
    assert info.value.got == 0 and str(info.value).startswith("legacy (type 0) transaction: magicoin accepts "
                                                               "EIP-1559 (type 2) transactions; send with type: 2")
    access_list = dict(legacy, type=1, accessList=[])
    with pytest.raises(UnsupportedTransactionType) as info:
        decode_transaction(sign(access_list), CHAIN_ID, MAX_PAYLOAD)
    assert info.value.got == 1


def test_fee_fields():
    with pytest.raises(InvalidFee):
        decode_transaction(
            sign(wallet_fields(maxFeePerGas=1, maxPriorityFeePerGas=2)), CHAIN_ID, MAX_PAYLOAD
        )
    with pytest.raises(InvalidFee):
        decode_transaction(sign(wallet_fields(gas=21_000)), CHAIN_ID, MAX_PAYLOAD)


def test_predecoded_transactions_still_get_chain_checks():
    import pickle

    from chain.transactions import predecode_transactions, remember_transactions

    good = sign(wallet_fields(nonce=11))
    big = sign(wallet_fields(nonce=12, data=b"\x01" * (MAX_PAYLOAD + 1), gas=200_000))
    transfer = sign(wallet_fields(to=to_checksum_address(USERS[1]), value=5, data=b""))
    clear_sender_cache()
    expected = decode_transaction(good, CHAIN_ID, MAX_PAYLOAD)
    clear_sender_cache()
    decoded = pickle.loads(pickle.dumps(predecode_transactions([good, big, transfer, b"\x02junk"])))
    assert decoded[0] == expected and decoded[1] is not None and decoded[2:] == [None, None]
    assert decoded[0].payload == sample_payloads()["attestation"]  # decoded in the worker too
    assert (
        decoded[1].payload is None
    )  # b"\x01" * n is no attestation: validate_transaction will say why
    remember_transactions(decoded)
    assert decode_transaction(good, CHAIN_ID, MAX_PAYLOAD) is decoded[0]
    with pytest.raises(WrongChainId):
        decode_transaction(good, CHAIN_ID + 1, MAX_PAYLOAD)
    with pytest.raises(OversizedPayload):
        decode_transaction(big, CHAIN_ID, MAX_PAYLOAD)
    with pytest.raises(ValueTransferNotAllowed):
        decode_transaction(transfer, CHAIN_ID, MAX_PAYLOAD)


VALID_RAW = [
    sign_with_eth_account(USER_KEYS[0], nonce=1, kind=k, payload=p, value=int(k == "offering"))
    for k, p in sample_payloads().items()
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(VALID_RAW),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=4),
    st.integers(0, 50),
)
def test_corrupted_transactions_raise_only_typed_errors(raw, flips, cut):
    corrupted = bytearray(raw)
    for index, value in flips:
        if index < len(corrupted):
            corrupted[index] = value
    try:
        decode_transaction(bytes(corrupted[: len(corrupted) - cut]), CHAIN_ID, MAX_PAYLOAD)
    except TransactionError:
        pass
