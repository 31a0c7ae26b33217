"""Equivocation evidence: the pure check that two votes prove a validator double-signed.

Two votes are evidence when one validator of the set signed both, for the same
height, round and vote type, on different values (a nil vote counts as a
value). The chain's evidence transaction calls `validate_evidence` and then
slashes the offender; the BFT state machine records such pairs as it sees them.
"""
from __future__ import annotations

import rlp
from eth_utils import keccak

from consensus.validators import ValidatorSet
from primitives.errors import compute_error_summary
from primitives.limits import decode_rlp_bounded
from consensus.votes import ConsensusError, Vote, validate_vote_signature


class InvalidEvidence(ConsensusError):
    def __init__(self, reason: str, got: object, expected: object) -> None:
        super().__init__(f"invalid evidence, {reason}: got {got!r}, expected {expected!r}")
        self.reason = reason
        self.got = got
        self.expected = expected


def compute_evidence_id(vote_a: Vote, vote_b: Vote) -> bytes:
    """Order-independent id, so the same pair submitted twice is recognised."""
    first, second = sorted((rlp.encode(vote_a), rlp.encode(vote_b)))
    return keccak(first + second)


def validate_evidence(vote_a: Vote, vote_b: Vote, chain_id: int, validator_set: ValidatorSet) -> bytes:
    """Raise InvalidEvidence (or a signature error) unless the pair proves equivocation.

    Returns the offender's address.
    """
    # Both votes must be by the same validator, or nobody is proven to have lied.
    if vote_a.validator != vote_b.validator:
        raise InvalidEvidence("validator", vote_b.validator.hex(), vote_a.validator.hex())
    # Only a member of the set could have had its vote counted.
    if vote_a.validator not in validator_set:
        raise InvalidEvidence("membership", vote_a.validator.hex(), "a member of the validator set")
    # Conflict needs the same slot: votes at different (height, round, type) are legitimate.
    for field in ("height", "round", "vote_type"):
        if getattr(vote_a, field) != getattr(vote_b, field):
            raise InvalidEvidence(field, getattr(vote_b, field), getattr(vote_a, field))
    # Identical values are a duplicate, not a conflict.
    if vote_a.block_hash == vote_b.block_hash:
        raise InvalidEvidence("block_hash", vote_b.block_hash.hex(), f"different from {vote_a.block_hash.hex()}")
    # Each vote must really carry the offender's signature, or anyone could frame anyone.
    validate_vote_signature(vote_a, chain_id)
    validate_vote_signature(vote_b, chain_id)
    return vote_a.validator


def decode_evidence_votes(vote_a: bytes, vote_b: bytes) -> tuple[Vote, Vote]:
    """Decode the evidence payload's RLP-encoded votes, raising InvalidEvidence on junk."""
    try:
        return decode_rlp_bounded(vote_a, sedes=Vote), decode_rlp_bounded(vote_b, sedes=Vote)
    except (rlp.exceptions.RLPException, TypeError) as exc:
        raise InvalidEvidence("encoding", compute_error_summary(exc), "two RLP-encoded votes") from exc
