"""Votes, proposals and commits: signing domain, recovery, and commit verification errors."""
import pytest
import rlp
from eth_utils import keccak

from consensus.validators import ValidatorSet
from consensus.votes import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    Commit,
    CommitMismatch,
    CommitSig,
    DuplicateSigner,
    InsufficientWeight,
    InvalidMessage,
    InvalidSignature,
    Proposal,
    UnknownValidator,
    Vote,
    compute_commit,
    compute_commit_hash,
    get_address,
    get_commit_votes,
    make_proposal,
    make_vote,
    recover_vote_signer,
    sign_proposal,
    sign_vote,
    validate_commit,
    validate_proposal_signature,
    validate_vote_signature,
)

CHAIN_ID = 1337
KEYS = [keccak(b"votes-test" + bytes([i])) for i in range(4)]
ADDRS = [get_address(k) for k in KEYS]
BLOCK = keccak(b"block")


def make_set(weights=(1, 1, 1, 1)):
    return ValidatorSet(zip(ADDRS, weights))


def precommit(i, height=5, round=0, block_hash=BLOCK, chain_id=CHAIN_ID):
    return sign_vote(make_vote(PRECOMMIT, height, round, block_hash, ADDRS[i]), KEYS[i], chain_id)


def commit_of(signers, **kw):
    votes = [precommit(i, **kw) for i in signers]
    return compute_commit(votes[0].height, votes[0].round, votes[0].block_hash, votes)


def test_vote_roundtrips_and_recovers_its_signer():
    vote = sign_vote(make_vote(PREVOTE, 3, 1, BLOCK, ADDRS[0]), KEYS[0], CHAIN_ID)
    assert len(vote.signature) == 65 and vote.signature[64] in (0, 1)
    decoded = rlp.decode(rlp.encode(vote), sedes=Vote)
    assert decoded == vote
    assert recover_vote_signer(decoded, CHAIN_ID) == ADDRS[0]
    validate_vote_signature(decoded, CHAIN_ID)


def test_nil_vote_is_signed_like_any_other():
    vote = sign_vote(make_vote(PREVOTE, 3, 0, NIL, ADDRS[1]), KEYS[1], CHAIN_ID)
    assert vote.is_nil
    validate_vote_signature(vote, CHAIN_ID)


def test_vote_cannot_be_replayed_on_another_chain():
    vote = sign_vote(make_vote(PREVOTE, 3, 1, BLOCK, ADDRS[0]), KEYS[0], CHAIN_ID)
    with pytest.raises(InvalidSignature) as info:
        validate_vote_signature(vote, CHAIN_ID + 1)
    assert info.value.expected == ADDRS[0]
    assert info.value.got != ADDRS[0]


def test_vote_claiming_another_validator_is_rejected():
    forged = sign_vote(make_vote(PREVOTE, 3, 1, BLOCK, ADDRS[1]), KEYS[0], CHAIN_ID)
    with pytest.raises(InvalidSignature) as info:
        validate_vote_signature(forged, CHAIN_ID)
    assert info.value.got == ADDRS[0] and info.value.expected == ADDRS[1]


def test_vote_fields_are_checked():
    bad_type = Vote(3, 1, 0, BLOCK, ADDRS[0], b"\x00" * 65)
    with pytest.raises(InvalidMessage) as info:
        validate_vote_signature(bad_type, CHAIN_ID)
    assert info.value.got == 3
    short_hash = Vote(PREVOTE, 1, 0, b"\x01" * 5, ADDRS[0], b"\x00" * 65)
    with pytest.raises(InvalidMessage):
        validate_vote_signature(short_hash, CHAIN_ID)


def test_proposal_encodes_minus_one_pol_round_and_verifies():
    proposal = sign_proposal(make_proposal(4, 2, -1, BLOCK, ADDRS[2]), KEYS[2], CHAIN_ID)
    assert proposal.pol_round == -1 and proposal.pol_round_plus_one == 0
    decoded = rlp.decode(rlp.encode(proposal), sedes=Proposal)
    validate_proposal_signature(decoded, CHAIN_ID)
    with_pol = sign_proposal(make_proposal(4, 2, 1, BLOCK, ADDRS[2]), KEYS[2], CHAIN_ID)
    assert with_pol.pol_round == 1
    validate_proposal_signature(with_pol, CHAIN_ID)


def test_proposal_pol_round_must_precede_its_round():
    bad = sign_proposal(make_proposal(4, 2, 2, BLOCK, ADDRS[2]), KEYS[2], CHAIN_ID)
    with pytest.raises(InvalidMessage):
        validate_proposal_signature(bad, CHAIN_ID)


def test_vote_signature_is_not_a_proposal_signature():
    # Same key, overlapping fields: the domain tags keep the two kinds apart.
    vote = sign_vote(make_vote(PREVOTE, 4, 2, BLOCK, ADDRS[2]), KEYS[2], CHAIN_ID)
    proposal = make_proposal(4, 2, -1, BLOCK, ADDRS[2]).copy(signature=vote.signature)
    with pytest.raises(InvalidSignature):
        validate_proposal_signature(proposal, CHAIN_ID)


def test_valid_commit_passes_and_is_sorted():
    commit = commit_of([3, 0, 2])
    assert [s.validator for s in commit.signatures] == sorted(ADDRS[i] for i in (0, 2, 3))
    validate_commit(commit, make_set(), CHAIN_ID, 5, BLOCK)
    assert rlp.decode(rlp.encode(commit), sedes=Commit) == commit
    assert len(get_commit_votes(commit)) == 3


def test_commit_hash_is_keccak_of_rlp_and_depends_on_content():
    a, b = commit_of([0, 1, 2]), commit_of([0, 1, 3])
    assert compute_commit_hash(a) == keccak(rlp.encode(a))
    assert compute_commit_hash(a) != compute_commit_hash(b)


def test_two_thirds_exactly_is_not_enough():
    # 4 of 6 is exactly 2/3: the quorum is strictly more.
    validator_set = make_set((1, 1, 2, 2))
    commit = commit_of([2, 3])
    with pytest.raises(InsufficientWeight) as info:
        validate_commit(commit, validator_set, CHAIN_ID, 5, BLOCK)
    assert info.value.got == 4 and info.value.total == 6
    validate_commit(commit_of([0, 2, 3]), validator_set, CHAIN_ID, 5, BLOCK)


def test_weight_not_count_decides():
    validator_set = make_set((1, 1, 1, 10))
    validate_commit(commit_of([3]), validator_set, CHAIN_ID, 5, BLOCK)
    with pytest.raises(InsufficientWeight):
        validate_commit(commit_of([0, 1, 2]), validator_set, CHAIN_ID, 5, BLOCK)


def test_unknown_signer_is_rejected():
    commit = commit_of([0, 1, 2])
    with pytest.raises(UnknownValidator) as info:
        validate_commit(commit, ValidatorSet(zip(ADDRS[1:], (1, 1, 1))), CHAIN_ID, 5, BLOCK)
    assert info.value.got == ADDRS[0]


def test_duplicate_signer_is_rejected():
    commit = commit_of([0, 1, 2])
    doubled = commit.copy(signatures=[commit.signatures[0]] + list(commit.signatures))
    with pytest.raises(DuplicateSigner):
        validate_commit(doubled, make_set(), CHAIN_ID, 5, BLOCK)


def test_unsorted_signatures_are_rejected():
    commit = commit_of([0, 1, 2])
    shuffled = commit.copy(signatures=list(reversed(commit.signatures)))
    with pytest.raises(CommitMismatch):
        validate_commit(shuffled, make_set(), CHAIN_ID, 5, BLOCK)


def test_bad_signature_in_commit_is_rejected():
    commit = commit_of([0, 1, 2])
    other = precommit(1, block_hash=keccak(b"other"))
    sigs = list(commit.signatures)
    index = next(i for i, s in enumerate(sigs) if s.validator == ADDRS[1])
    sigs[index] = CommitSig(ADDRS[1], other.signature)
    with pytest.raises(InvalidSignature):
        validate_commit(commit.copy(signatures=sigs), make_set(), CHAIN_ID, 5, BLOCK)


def test_commit_for_another_height_or_block_is_rejected():
    commit = commit_of([0, 1, 2])
    with pytest.raises(CommitMismatch) as info:
        validate_commit(commit, make_set(), CHAIN_ID, 6, BLOCK)
    assert (info.value.got, info.value.expected) == (5, 6)
    with pytest.raises(CommitMismatch):
        validate_commit(commit, make_set(), CHAIN_ID, 5, keccak(b"other"))


def test_commit_from_another_chain_is_rejected():
    commit = commit_of([0, 1, 2], chain_id=CHAIN_ID + 1)
    with pytest.raises(InvalidSignature):
        validate_commit(commit, make_set(), CHAIN_ID, 5, BLOCK)


def test_votes_module_does_not_need_trio():
    import subprocess
    import sys

    code = "import sys, consensus.votes, consensus.validators, consensus.evidence; sys.exit('trio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- the fast signing hash and recovery against the reference libraries ------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402


@given(st.integers(0, 2**64), st.integers(0, 3), st.integers(0, 2**64), st.integers(0, 2**32),
       st.sampled_from([b"", b"\x11" * 32]), st.binary(min_size=20, max_size=20))
def test_signing_hash_is_the_rlp_one(chain_id, vote_type, height, round, block_hash, validator):
    import rlp
    from eth_utils import keccak as reference_keccak

    from consensus.votes import VOTE_DOMAIN, compute_signing_hash_of

    expected = reference_keccak(VOTE_DOMAIN + rlp.encode([chain_id, vote_type, height, round, block_hash, validator]))
    assert compute_signing_hash_of(chain_id, vote_type, height, round, block_hash, validator) == expected


@settings(max_examples=60)
@given(st.binary(min_size=32, max_size=32), st.binary(min_size=65, max_size=65), st.integers(1, 2**200))
def test_recovery_matches_eth_keys(digest, junk, secret):
    from eth_keys import KeyAPI
    from eth_keys.backends import CoinCurveECCBackend

    from consensus.votes import _recover

    keys = KeyAPI(CoinCurveECCBackend)
    private = keys.PrivateKey(secret.to_bytes(32, "big"))
    signature = private.sign_msg_hash(digest).to_bytes()
    assert _recover(digest, signature) == private.public_key.to_canonical_address()
    try:
        expected = keys.Signature(junk).recover_public_key_from_msg_hash(digest).to_canonical_address()
    except Exception:
        expected = None
    assert _recover(digest, junk) == expected
