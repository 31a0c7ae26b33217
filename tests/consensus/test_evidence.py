"""Equivocation evidence: what counts, what does not, and what the state machine records."""
import pytest
import rlp
from eth_utils import keccak

from consensus.evidence import (
    InvalidEvidence,
    compute_evidence_id,
    decode_evidence_votes,
    validate_evidence,
)
from consensus.validators import ValidatorSet
from consensus.votes import NIL, PRECOMMIT, PREVOTE, InvalidSignature, get_address, make_vote, sign_vote

CHAIN_ID = 1337
KEYS = [keccak(b"evidence-test" + bytes([i])) for i in range(3)]
ADDRS = [get_address(k) for k in KEYS]
VS = ValidatorSet(zip(ADDRS[:2], (1, 1)))
X, Y = keccak(b"x"), keccak(b"y")


def vote(i=0, vote_type=PREVOTE, height=7, round=1, block_hash=X, chain_id=CHAIN_ID):
    return sign_vote(make_vote(vote_type, height, round, block_hash, ADDRS[i]), KEYS[i], chain_id)


def test_conflicting_votes_are_evidence():
    assert validate_evidence(vote(block_hash=X), vote(block_hash=Y), CHAIN_ID, VS) == ADDRS[0]
    # A nil vote is a value too: prevoting nil and X in one round is equivocation.
    assert validate_evidence(vote(block_hash=NIL), vote(block_hash=X), CHAIN_ID, VS) == ADDRS[0]
    assert validate_evidence(vote(vote_type=PRECOMMIT), vote(vote_type=PRECOMMIT, block_hash=Y), CHAIN_ID, VS)


@pytest.mark.parametrize(
    "other, reason",
    [
        (dict(i=1, block_hash=Y), "validator"),
        (dict(height=8, block_hash=Y), "height"),
        (dict(round=2, block_hash=Y), "round"),
        (dict(vote_type=PRECOMMIT, block_hash=Y), "vote_type"),
        (dict(block_hash=X), "block_hash"),
    ],
)
def test_non_conflicting_pairs_are_not_evidence(other, reason):
    with pytest.raises(InvalidEvidence) as info:
        validate_evidence(vote(), vote(**other), CHAIN_ID, VS)
    assert info.value.reason == reason


def test_non_member_cannot_be_accused():
    with pytest.raises(InvalidEvidence) as info:
        validate_evidence(vote(i=2), vote(i=2, block_hash=Y), CHAIN_ID, VS)
    assert info.value.reason == "membership"


def test_forged_vote_cannot_frame_a_validator():
    forged = sign_vote(make_vote(PREVOTE, 7, 1, Y, ADDRS[0]), KEYS[1], CHAIN_ID)
    with pytest.raises(InvalidSignature):
        validate_evidence(vote(), forged, CHAIN_ID, VS)


def test_votes_from_another_chain_are_not_evidence_here():
    with pytest.raises(InvalidSignature):
        validate_evidence(vote(chain_id=1), vote(block_hash=Y, chain_id=1), CHAIN_ID, VS)


def test_evidence_id_ignores_order_and_payload_decodes():
    a, b = vote(), vote(block_hash=Y)
    assert compute_evidence_id(a, b) == compute_evidence_id(b, a)
    assert decode_evidence_votes(rlp.encode(a), rlp.encode(b)) == (a, b)
    with pytest.raises(InvalidEvidence):
        decode_evidence_votes(b"\x01\x02", rlp.encode(b))
