"""The consensus wire codec on its own: payload round trips, gossip verdicts, and a peer's junk."""
from __future__ import annotations

import rlp

from chain.chain import Chain
from chain.db import open_database
from consensus.votes import NIL, PREVOTE, make_proposal, make_vote, sign_proposal, sign_vote
from economy import make_work_rules
from genesis.keys import get_address
from node.consensus_wire import (
    FUTURE_HEIGHTS_ACCEPTED,
    KIND_PROPOSAL,
    KIND_VOTE,
    MAX_PULLED_MESSAGES,
    compute_height_verdict,
    compute_proposal_verdict,
    compute_vote_verdict,
    decode_optional_block,
    decode_proposal_message,
    decode_vote_message,
    encode_height_messages,
    encode_optional,
    encode_proposal_message,
    encode_vote_message,
    iter_pulled_messages,
)
from p2p import ValidationResult
from tests.node.nodekit import CHAIN_ID, VALIDATOR_KEYS, make_test_genesis

KEY = VALIDATOR_KEYS[0]


def make_block():
    return Chain.from_genesis(open_database(None), make_test_genesis(), make_work_rules).head_block


def make_signed_proposal(block_hash: bytes, height: int = 1):
    return sign_proposal(make_proposal(height, 0, -1, block_hash, get_address(KEY)), KEY, CHAIN_ID)


def make_signed_vote(height: int = 1):
    return sign_vote(make_vote(PREVOTE, height, 0, NIL, get_address(KEY)), KEY, CHAIN_ID)


def test_proposal_and_vote_payloads_round_trip():
    block = make_block()
    proposal = make_signed_proposal(block.hash)
    assert decode_proposal_message(encode_proposal_message(proposal, block)) == (proposal, block)
    vote = make_signed_vote()
    assert decode_vote_message(encode_vote_message(vote)) == vote


def test_a_proposal_must_carry_the_block_it_names():
    block = make_block()
    payload = encode_proposal_message(make_signed_proposal(b"\x01" * 32), block)
    assert compute_proposal_verdict(payload, CHAIN_ID, 0, 1) == ValidationResult.REJECT


def test_gossip_verdicts_by_height_and_signature():
    block = make_block()
    good = encode_proposal_message(make_signed_proposal(block.hash), block)
    assert compute_proposal_verdict(good, CHAIN_ID, 0, 1) == ValidationResult.ACCEPT
    assert compute_proposal_verdict(good, CHAIN_ID + 1, 0, 1) == ValidationResult.REJECT  # another chain's signature
    assert compute_proposal_verdict(good, CHAIN_ID, 1, 2) == ValidationResult.IGNORE  # already decided
    assert compute_vote_verdict(encode_vote_message(make_signed_vote()), CHAIN_ID, 0, 1) == ValidationResult.ACCEPT
    assert compute_vote_verdict(b"\xc0junk", CHAIN_ID, 0, 1) == ValidationResult.REJECT
    ahead = 1 + FUTURE_HEIGHTS_ACCEPTED
    assert compute_height_verdict(ahead, 0, 1) == ValidationResult.ACCEPT
    assert compute_height_verdict(ahead + 1, 0, 1) == ValidationResult.IGNORE


def test_height_messages_leave_out_proposals_without_their_block_and_pulled_junk_is_skipped():
    block = make_block()
    held, missing, vote = make_signed_proposal(block.hash), make_signed_proposal(b"\x02" * 32), make_signed_vote()
    encoded = encode_height_messages([held, missing, vote], {block.hash: block}.get)
    assert [kind for kind, _ in encoded] == [KIND_PROPOSAL, KIND_VOTE]
    junk = [[KIND_VOTE], "text", [9, b"unknown kind"], [KIND_VOTE, 5]]
    assert list(iter_pulled_messages(junk + encoded)) == [tuple(item) for item in encoded]
    flood = [[KIND_VOTE, rlp.encode(vote)]] * (MAX_PULLED_MESSAGES + 5)
    assert len(list(iter_pulled_messages(flood))) == MAX_PULLED_MESSAGES


def test_optional_bodies():
    block = make_block()
    assert decode_optional_block(encode_optional(block)) == block
    assert encode_optional(None) == b"" and decode_optional_block(b"") is None


def test_well_signed_messages_from_outside_the_validator_set_are_rejected():
    block = make_block()
    proposal = encode_proposal_message(make_signed_proposal(block.hash), block)
    vote = encode_vote_message(make_signed_vote())
    signer = get_address(KEY)

    def outsiders_only(height: int) -> set[bytes]:
        return {b"\x99" * 20}

    def members(height: int) -> set[bytes]:
        return {signer}

    assert compute_proposal_verdict(proposal, CHAIN_ID, 0, 1, outsiders_only) == ValidationResult.REJECT
    assert compute_vote_verdict(vote, CHAIN_ID, 0, 1, outsiders_only) == ValidationResult.REJECT
    assert compute_proposal_verdict(proposal, CHAIN_ID, 0, 1, members) == ValidationResult.ACCEPT
    assert compute_vote_verdict(vote, CHAIN_ID, 0, 1, members) == ValidationResult.ACCEPT
    # A height whose set is not known yet (past the next epoch start) is judged by height alone.
    assert compute_vote_verdict(vote, CHAIN_ID, 0, 1, lambda height: None) == ValidationResult.ACCEPT
    # Already decided stays IGNORE (no penalty) whoever signed it.
    assert compute_proposal_verdict(proposal, CHAIN_ID, 1, 2, outsiders_only) == ValidationResult.IGNORE
