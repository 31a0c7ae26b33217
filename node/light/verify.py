"""Pure header verification for the light client: links, commits, validator sets, skips.

Everything here is synchronous and does no I/O: a function takes values the
client already holds (a trusted header, the validator sets it has checked) and
values a server sent, and either returns or raises a `VerificationFailed`
subclass naming what was wrong. The fetching lives in `node.light.client`.

Where commits live: the commit that finalises block N is carried by block N+1
as `last_commit` (and served for any block by `muagic_getCommit`, which for the
head is the commit the node stored when it decided it). The set that signs
block N is the one its header names in `validators_hash`, which must equal
block N-1's `next_validators_hash`; that is how a set change at an epoch
boundary is followed.

Commits are checked the way CometBFT's light client checks them
(`VerifyCommitLight`): signatures are counted in order until they carry more
than 2/3 of the weight; each counted signature must recover to a member of
the set, once. A skip (`validate_skip`) additionally requires the valid
signatures of the *trusted* set's members to carry more than 1/3 of its weight
(`VerifyCommitLightTrusting`), so at least one honest validator the client
already trusts vouches for the far header.
"""
from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

import coincurve
from eth_hash.auto import keccak
from rlp.codec import encode_raw

from chain.blocks import Header
from consensus.validators import ValidatorSet, compute_validators_hash, is_one_third_plus, is_quorum
from consensus.votes import PRECOMMIT, VOTE_DOMAIN, Commit
from node.light.exceptions import (
    CommitBelowQuorum,
    ForgedHeader,
    InvalidHeaderCommit,
    WrongValidatorSet,
)


class NotEnoughTrust(Exception):
    """A far header is valid on its own, but the trusted set's signatures on it carry <= 1/3: bisect.

    Not a lie (the set may simply have changed too much), so not a `VerificationFailed`.
    """

    def __init__(self, height: int, weight: int, total: int) -> None:
        self.height = height
        self.weight = weight
        self.total = total
        super().__init__(f"trusted set signed {weight} of {total} at height {height}: not more than 1/3")


# --- headers -----------------------------------------------------------------------------------

def validate_header_hash(header: Header, claimed_hash: bytes, height: int) -> None:
    """The RLP the server sent re-hashes to the hash it claims, at the height asked for."""
    if header.number != height:
        raise ForgedHeader(height, "number", header.number, height)
    if header.hash != claimed_hash:
        raise ForgedHeader(height, "hash (keccak of the header RLP)", claimed_hash, header.hash)


def validate_adjacent(trusted: Header, header: Header) -> None:
    """`header` is the child of the trusted header: number, parent hash, time, and the announced set."""
    height = trusted.number + 1
    if header.number != height:
        raise ForgedHeader(height, "number", header.number, height)
    if header.parent_hash != trusted.hash:
        raise ForgedHeader(height, "parent_hash", header.parent_hash, trusted.hash)
    if header.timestamp_ms <= trusted.timestamp_ms:
        raise ForgedHeader(height, "timestamp_ms", header.timestamp_ms, f"> {trusted.timestamp_ms}")
    # The set that signs a block is the one its parent announced (an epoch change included).
    if header.validators_hash != trusted.next_validators_hash:
        raise ForgedHeader(height, "validators_hash", header.validators_hash, trusted.next_validators_hash)


def validate_later(trusted: Header, header: Header) -> None:
    """A far header can only be later than the trusted one, in height and in time."""
    if header.number <= trusted.number:
        raise ForgedHeader(header.number, "number", header.number, f"> {trusted.number}")
    if header.timestamp_ms <= trusted.timestamp_ms:
        raise ForgedHeader(header.number, "timestamp_ms", header.timestamp_ms, f"> {trusted.timestamp_ms}")


def validate_parent_link(child: Header, parent: Header) -> None:
    """Backward verification: a header below a verified one is its ancestor by hash."""
    if parent.number != child.number - 1:
        raise ForgedHeader(parent.number, "number", parent.number, child.number - 1)
    if parent.hash != child.parent_hash:
        raise ForgedHeader(parent.number, "hash (the child's parent_hash)", parent.hash, child.parent_hash)


# --- validator sets -------------------------------------------------------------------------------

def validate_validator_set(validator_set: ValidatorSet, expected_hash: bytes, height: int) -> None:
    got = compute_validators_hash(validator_set)
    if got != expected_hash:
        raise WrongValidatorSet(height, got, expected_hash)


# --- commits --------------------------------------------------------------------------------------
# Signature checking is the light client's whole cost, so the precommit signing hash is encoded
# directly (byte-identical to `consensus.votes.compute_vote_signing_hash`, which the tests check) and
# recovered with coincurve (the backend eth-keys uses) without eth-keys' object layers.


class CommitSignature(NamedTuple):
    validator: bytes
    signature: bytes


class CommitView(NamedTuple):
    """A commit decoded from its RLP without rlp.Serializable (same fields as `consensus.votes.Commit`)."""

    height: int
    round: int
    block_hash: bytes
    signatures: Sequence[CommitSignature]


def _encode_int(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")  # 0 -> b"", as rlp's big_endian_int


def compute_precommit_signing_hash(chain_id: int, height: int, round: int, block_hash: bytes,
                                   validator: bytes) -> bytes:
    body = [_encode_int(chain_id), _encode_int(PRECOMMIT), _encode_int(height), _encode_int(round), block_hash,
            validator]
    return keccak(VOTE_DOMAIN + encode_raw(body))


def recover_signer(digest: bytes, signature: bytes) -> bytes | None:
    """The address that signed `digest` (65-byte r || s || v, v in {0, 1}), None if it does not recover."""
    if len(signature) != 65 or signature[64] > 1:
        return None
    try:
        public_key = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except (ValueError, TypeError, Exception):  # noqa: BLE001 - coincurve raises plain Exception on bad input
        return None
    return keccak(public_key.format(compressed=False)[1:])[12:]


def iter_commit_signers(commit: Commit | CommitView, chain_id: int) -> Iterable[tuple[bytes, bytes | None]]:
    """(claimed validator, recovered signer) per signature, in commit order, lazily (recovery is the cost)."""
    for sig in commit.signatures:
        digest = compute_precommit_signing_hash(chain_id, commit.height, commit.round, commit.block_hash,
                                                sig.validator)
        yield sig.validator, recover_signer(digest, sig.signature)


def validate_commit_target(commit: Commit, header: Header) -> None:
    height = header.number
    if commit.height != height:
        raise InvalidHeaderCommit(height, "height", commit.height, height)
    if commit.block_hash != header.hash:
        raise InvalidHeaderCommit(height, "block_hash", commit.block_hash, header.hash)


def validate_header_commit(header: Header, commit: Commit, validator_set: ValidatorSet, chain_id: int) -> None:
    """More than 2/3 of `validator_set` (the set the header names) precommitted exactly this header."""
    validate_commit_target(commit, header)
    total = validator_set.total_weight
    weight = 0
    previous = b""
    for validator, signer in iter_commit_signers(commit, chain_id):
        validate_signature_order(header.number, validator, previous)
        previous = validator
        member_weight = validator_set.get_weight(validator)
        if member_weight == 0:
            raise InvalidHeaderCommit(header.number, "signer not in the validator set", validator,
                                      "a member of the set named by validators_hash")
        if signer != validator:
            raise InvalidHeaderCommit(header.number, "bad signature", signer, validator)
        weight += member_weight
        if is_quorum(weight, total):
            return
    raise CommitBelowQuorum(header.number, weight, total)


def validate_signature_order(height: int, validator: bytes, previous: bytes) -> None:
    # Sorted and unique, so no signer is counted twice.
    if validator <= previous:
        raise InvalidHeaderCommit(height, "signatures not sorted and unique", validator, f"> 0x{previous.hex()}")


def compute_trusted_weight(commit: Commit, trusted_set: ValidatorSet, chain_id: int) -> int:
    """The weight of the trusted set's members whose signature on the commit is valid."""
    weight = 0
    seen = set()
    for validator, signer in iter_commit_signers(commit, chain_id):
        if validator in trusted_set and signer == validator and validator not in seen:
            seen.add(validator)
            weight += trusted_set.get_weight(validator)
            if is_one_third_plus(weight, trusted_set.total_weight):
                break
    return weight


def validate_skip(
    trusted: Header,
    trusted_next_set: ValidatorSet,
    header: Header,
    header_set: ValidatorSet,
    commit: Commit,
    chain_id: int,
) -> None:
    """Accept a far header: valid on its own (> 2/3 of its set) and vouched for by > 1/3 of the trusted set.

    Raises `NotEnoughTrust` (bisect) when only the second condition fails, and a
    `VerificationFailed` when the header or its commit is a lie.
    """
    validate_later(trusted, header)
    if header.number == trusted.number + 1:
        validate_adjacent(trusted, header)
    validate_header_commit(header, commit, header_set, chain_id)
    if header.validators_hash == trusted.next_validators_hash:
        return  # the same set signed with > 2/3, which is more than 1/3 of it
    weight = compute_trusted_weight(commit, trusted_next_set, chain_id)
    if not is_one_third_plus(weight, trusted_next_set.total_weight):
        raise NotEnoughTrust(header.number, weight, trusted_next_set.total_weight)
