"""The light client's own signature path (direct encoding, coincurve) agrees with consensus.votes."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from node.devchain import VALIDATOR_KEYS as KEYS
from consensus.votes import PRECOMMIT, compute_vote_signing_hash, get_address, make_vote, recover_vote_signer, sign_vote
from node.light.verify import compute_precommit_signing_hash, recover_signer

ints = st.integers(min_value=0, max_value=2**64)


@settings(max_examples=40, deadline=None)
@given(chain_id=ints, height=ints, round=st.integers(min_value=0, max_value=1000),
       block_hash=st.binary(min_size=32, max_size=32), key_index=st.integers(min_value=0, max_value=3),
       flip=st.integers(min_value=0, max_value=64))
def test_signing_hash_and_recovery_match_consensus_votes(chain_id, height, round, block_hash, key_index, flip):
    key = KEYS[key_index]
    vote = sign_vote(make_vote(PRECOMMIT, height, round, block_hash, get_address(key)), key, max(chain_id, 1))
    digest = compute_precommit_signing_hash(max(chain_id, 1), height, round, block_hash, vote.validator)
    assert digest == compute_vote_signing_hash(vote, max(chain_id, 1))
    assert recover_signer(digest, vote.signature) == vote.validator
    # A corrupted signature recovers to someone else (or nobody), exactly as consensus.votes says.
    corrupted = bytearray(vote.signature)
    corrupted[flip] ^= 0x01
    assert recover_signer(digest, bytes(corrupted)) == recover_vote_signer(vote.copy(signature=bytes(corrupted)),
                                                                          max(chain_id, 1))


def test_recover_signer_refuses_malformed_signatures():
    digest = b"\x01" * 32
    assert recover_signer(digest, b"\x00" * 65) is None
    assert recover_signer(digest, b"\x01" * 64 + b"\x05") is None
    assert recover_signer(digest, b"\x01" * 10) is None

