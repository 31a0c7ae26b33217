"""Signed consensus messages: votes, proposals and commits, and their verification.

This module owns the wire/signing form of every message the BFT protocol signs,
and the pure check that a commit (the quorum certificate carried by the next
block as `last_commit`) is backed by more than 2/3 of a validator set's weight.
It imports only rlp and eth-keys/eth-utils so `chain/` can verify blocks
without pulling in trio or the state machine.

Signing domain: keccak(DOMAIN_TAG + rlp([chain_id, *fields_without_signature])).
The chain id is inside the signed bytes so a vote cannot be replayed on another
chain, and each message kind has its own tag so a vote can never be read as a
proposal.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import rlp
from eth_keys import KeyAPI
from eth_keys.backends import CoinCurveECCBackend
from coincurve import PublicKey as CoincurvePublicKey
from rlp.sedes import Binary, CountableList, big_endian_int

from consensus.exceptions import (  # noqa: F401 - re-exported: votes raise these
    CommitMismatch,
    ConsensusError,
    DuplicateSigner,
    InsufficientWeight,
    InvalidCommit,
    InvalidMessage,
    InvalidSignature,
    UnknownValidator,
)
from consensus.validators import ValidatorSet
from primitives.encoding import encode_rlp_list, encode_rlp_string, encode_rlp_uint
from primitives.hashing import keccak

KEYS = KeyAPI(CoinCurveECCBackend)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

PREVOTE = 1
PRECOMMIT = 2
VOTE_TYPES = (PREVOTE, PRECOMMIT)
NIL = b""  # a vote for no block

VOTE_DOMAIN = b"magicoin/vote"
PROPOSAL_DOMAIN = b"magicoin/proposal"

address_sedes = Binary.fixed_length(20)
hash_or_nil_sedes = Binary(min_length=0, max_length=32)
signature_sedes = Binary.fixed_length(65, allow_empty=True)


class Vote(rlp.Serializable):
    fields = [
        ("vote_type", big_endian_int),
        ("height", big_endian_int),
        ("round", big_endian_int),
        ("block_hash", hash_or_nil_sedes),
        ("validator", address_sedes),
        ("signature", signature_sedes),
    ]

    @property
    def is_nil(self) -> bool:
        return self.block_hash == NIL


class Proposal(rlp.Serializable):
    """A proposal for `block_hash` at (height, round).

    RLP has no negative integers, so `pol_round` is stored as `pol_round + 1`
    (0 means "no proof-of-lock round", the paper's -1); read it through
    `get_pol_round`.
    """

    fields = [
        ("height", big_endian_int),
        ("round", big_endian_int),
        ("pol_round_plus_one", big_endian_int),
        ("block_hash", Binary.fixed_length(32)),
        ("proposer", address_sedes),
        ("signature", signature_sedes),
    ]

    @property
    def pol_round(self) -> int:
        return self.pol_round_plus_one - 1


class CommitSig(rlp.Serializable):
    fields = [("validator", address_sedes), ("signature", Binary.fixed_length(65))]


class Commit(rlp.Serializable):
    """More than 2/3 of the weight precommitting `block_hash` at (height, round).

    Signatures are sorted by validator address, one per validator.
    """

    fields = [
        ("height", big_endian_int),
        ("round", big_endian_int),
        ("block_hash", Binary.fixed_length(32)),
        ("signatures", CountableList(CommitSig)),
    ]


EMPTY_COMMIT = Commit(0, 0, b"\x00" * 32, [])


# --- signing ---------------------------------------------------------------

def compute_vote_signing_hash(vote: Vote, chain_id: int) -> bytes:
    return compute_signing_hash_of(chain_id, vote.vote_type, vote.height, vote.round, vote.block_hash, vote.validator)


def compute_signing_hash_of(chain_id: int, vote_type: int, height: int, round: int, block_hash: bytes,
                            validator: bytes) -> bytes:
    """keccak(VOTE_DOMAIN + rlp([chain_id, type, height, round, block_hash, validator])).

    Written out with the primitives encoders (byte-identical to rlp.encode): a
    commit of a large set checks one signature per member for every block.
    """
    numbers = (chain_id, vote_type, height, round)
    if all(type(n) is int and n >= 0 for n in numbers) and type(block_hash) is bytes and type(validator) is bytes:
        body = encode_rlp_list(b"".join(map(encode_rlp_uint, numbers)) + encode_rlp_string(block_hash)
                               + encode_rlp_string(validator))
    else:
        body = rlp.encode([chain_id, vote_type, height, round, block_hash, validator])
    return keccak(VOTE_DOMAIN + body)


def compute_proposal_signing_hash(proposal: Proposal, chain_id: int) -> bytes:
    body = [
        chain_id,
        proposal.height,
        proposal.round,
        proposal.pol_round_plus_one,
        proposal.block_hash,
        proposal.proposer,
    ]
    return keccak(PROPOSAL_DOMAIN + rlp.encode(body))


def _sign(digest: bytes, private_key: bytes) -> bytes:
    return KEYS.PrivateKey(private_key).sign_msg_hash(digest).to_bytes()


@lru_cache(maxsize=1 << 16)
def _recover(digest: bytes, signature: bytes) -> bytes | None:
    # Memoised because every node of a simulation (and a node re-checking a
    # commit it already counted vote by vote) recovers the same signatures.
    # coincurve directly: eth-keys' objects around it cost several times the recovery itself.
    if len(signature) != 65 or signature[64] > 1:
        return None
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:64], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        return None
    try:
        public_key = CoincurvePublicKey.from_signature_and_message(signature, digest, hasher=None)
    except Exception:  # coincurve raises ValueError, or a bare Exception for an unrecoverable signature
        return None
    return keccak(public_key.format(compressed=False)[1:])[-20:]


def get_address(private_key: bytes) -> bytes:
    return KEYS.PrivateKey(private_key).public_key.to_canonical_address()


def validate_vote_fields(vote: Vote) -> None:
    """Check what RLP decoding cannot: the vote type and the nil/32-byte hash."""
    if vote.vote_type not in VOTE_TYPES:
        raise InvalidMessage("vote_type", vote.vote_type, VOTE_TYPES)
    validate_hash_and_signature_lengths(vote.block_hash, vote.signature)


def validate_hash_and_signature_lengths(block_hash: bytes, signature: bytes) -> None:
    if len(block_hash) not in (0, 32):
        raise InvalidMessage("block_hash length", len(block_hash), (0, 32))
    if len(signature) != 65:
        raise InvalidMessage("signature length", len(signature), 65)


def make_vote(vote_type: int, height: int, round: int, block_hash: bytes, validator: bytes) -> Vote:
    return Vote(vote_type, height, round, block_hash, validator, b"")


def sign_vote(vote: Vote, private_key: bytes, chain_id: int) -> Vote:
    signature = _sign(compute_vote_signing_hash(vote, chain_id), private_key)
    return vote.copy(signature=signature)


def recover_vote_signer(vote: Vote, chain_id: int) -> bytes | None:
    if len(vote.signature) != 65:
        return None
    return _recover(compute_vote_signing_hash(vote, chain_id), vote.signature)


def validate_vote_signature(vote: Vote, chain_id: int) -> None:
    """The vote is well formed and signed by the validator it names."""
    validate_vote_fields(vote)
    validate_signed_by(compute_vote_signing_hash(vote, chain_id), vote.signature, vote.validator)


def validate_signed_by(digest: bytes, signature: bytes, validator: bytes) -> None:
    signer = _recover(digest, signature)
    if signer != validator:
        raise InvalidSignature(signer, validator)


def make_proposal(height: int, round: int, pol_round: int, block_hash: bytes, proposer: bytes) -> Proposal:
    if pol_round < -1:
        raise InvalidMessage("pol_round", pol_round, ">= -1")
    return Proposal(height, round, pol_round + 1, block_hash, proposer, b"")


def sign_proposal(proposal: Proposal, private_key: bytes, chain_id: int) -> Proposal:
    signature = _sign(compute_proposal_signing_hash(proposal, chain_id), private_key)
    return proposal.copy(signature=signature)


def validate_proposal_signature(proposal: Proposal, chain_id: int) -> None:
    if len(proposal.signature) != 65:
        raise InvalidMessage("signature length", len(proposal.signature), 65)
    if proposal.pol_round >= proposal.round:
        # The paper requires vr < r: a proof of lock can only come from an earlier round.
        raise InvalidMessage("pol_round", proposal.pol_round, f"< round {proposal.round}")
    signer = _recover(compute_proposal_signing_hash(proposal, chain_id), proposal.signature)
    if signer != proposal.proposer:
        raise InvalidSignature(signer, proposal.proposer)


# --- commits ---------------------------------------------------------------

def compute_commit(height: int, round: int, block_hash: bytes, precommits: Iterable[Vote]) -> Commit:
    """Assemble a commit from precommits for `block_hash` (caller checked the quorum)."""
    by_validator = {
        v.validator: v.signature
        for v in precommits
        if v.vote_type == PRECOMMIT and v.height == height and v.round == round and v.block_hash == block_hash
    }
    signatures = [CommitSig(addr, by_validator[addr]) for addr in sorted(by_validator)]
    return Commit(height, round, block_hash, signatures)


def compute_commit_hash(commit: Commit) -> bytes:
    return keccak(rlp.encode(commit))


def get_commit_votes(commit: Commit) -> list[Vote]:
    """The precommit votes a commit stands for (so a node can replay them)."""
    return [
        Vote(PRECOMMIT, commit.height, commit.round, commit.block_hash, s.validator, s.signature)
        for s in commit.signatures
    ]


def validate_commit(
    commit: Commit,
    validator_set: ValidatorSet,
    chain_id: int,
    height: int,
    block_hash: bytes,
) -> None:
    """`commit` proves that more than 2/3 of `validator_set` precommitted `block_hash` at `height`."""
    # The commit must be for the block the caller expects, not merely some valid commit.
    if commit.height != height:
        raise CommitMismatch("height", commit.height, height)
    if commit.block_hash != block_hash:
        raise CommitMismatch("block_hash", commit.block_hash, block_hash)

    weight = 0
    previous = b""
    for sig in commit.signatures:
        # Sorted and unique, so a signer can never be counted twice.
        if sig.validator <= previous:
            if sig.validator == previous:
                raise DuplicateSigner(sig.validator)
            raise CommitMismatch("signature order", sig.validator.hex(), f"> {previous.hex()}")
        previous = sig.validator

        member_weight = validator_set.get_weight(sig.validator)
        if member_weight == 0:
            raise UnknownValidator(sig.validator)

        # The precommit this signature stands for, checked without building a Vote for it.
        validate_hash_and_signature_lengths(commit.block_hash, sig.signature)
        digest = compute_signing_hash_of(chain_id, PRECOMMIT, commit.height, commit.round, commit.block_hash,
                                         sig.validator)
        validate_signed_by(digest, sig.signature, sig.validator)
        weight += member_weight

    # A quorum is strictly more than 2/3 of the total weight.
    if not 3 * weight > 2 * validator_set.total_weight:
        raise InsufficientWeight(weight, validator_set.total_weight)
