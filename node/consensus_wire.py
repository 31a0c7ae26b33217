"""The consensus wire format: gossip payloads and request/response bodies, as pure functions.

Owns how proposals (with their block), votes, a height's messages, commits
and candidate blocks look on the p2p topics and in the three consensus
request methods, and the verdicts on gossip before it is forwarded. Shapes
(docs/ARCHITECTURE.md, "Wire use of p2p by the node"):

- PROPOSALS gossip: `rlp([rlp(Proposal), rlp(Block)])`; VOTES gossip: `rlp(Vote)`;
- `consensus_messages` -> `[height, [[KIND_PROPOSAL | KIND_VOTE, payload], ...]]`;
- `get_commit [block_hash]` -> `rlp(Commit)` or `b""`;
- `get_candidate [block_hash]` -> `rlp(Block)` or `b""`.

Decoders raise rlp's errors or ValueError on junk; the caller decides what a
sender's junk costs it. Nothing here holds state or does I/O.
"""
from __future__ import annotations

from typing import Any, Callable, Container, Iterable, Iterator

import rlp

from chain.blocks import Block
from consensus.votes import Commit, Proposal, Vote, validate_proposal_signature, validate_vote_signature
from p2p import BadRequest, ValidationResult
from primitives.limits import decode_rlp_bounded

METHOD_CONSENSUS_MESSAGES = "consensus_messages"
METHOD_GET_COMMIT = "get_commit"
METHOD_GET_CANDIDATE = "get_candidate"
KIND_PROPOSAL = 1
KIND_VOTE = 2
# Gossip this far ahead of our consensus height is forwarded: peers may be a block ahead of us.
FUTURE_HEIGHTS_ACCEPTED = 2
# A peer's answer to consensus_messages is read this far at most; a height has far fewer messages.
MAX_PULLED_MESSAGES = 1000
# The validator set that signs `height`, or None where it is not known yet.
GetValidators = Callable[[int], "Container[bytes] | None"]


# --- gossip payloads --------------------------------------------------------------------------

def encode_proposal_message(proposal: Proposal, block: Block) -> bytes:
    return rlp.encode([rlp.encode(proposal), rlp.encode(block)])


def decode_proposal_message(payload: bytes) -> tuple[Proposal, Block]:
    """Raises rlp's errors (or ValueError) for junk; the caller rejects the sender's message."""
    # Peers' bytes: depth and item count are bounded before pyrlp decodes them (primitives.limits).
    encoded_proposal, encoded_block = decode_rlp_bounded(payload)
    proposal = decode_rlp_bounded(encoded_proposal, sedes=Proposal)
    block = decode_rlp_bounded(encoded_block, sedes=Block)
    if block.hash != proposal.block_hash:
        raise ValueError("proposal's block does not hash to its block_hash")
    return proposal, block


def encode_vote_message(vote: Vote) -> bytes:
    return rlp.encode(vote)


def decode_vote_message(payload: bytes) -> Vote:
    return decode_rlp_bounded(payload, sedes=Vote)


# --- gossip verdicts --------------------------------------------------------------------------

def compute_height_verdict(height: int, chain_height: int, consensus_height: int) -> ValidationResult:
    """Forward only what can still matter: nothing already decided, nothing implausibly far ahead."""
    if height <= chain_height or height > consensus_height + FUTURE_HEIGHTS_ACCEPTED:
        return ValidationResult.IGNORE
    return ValidationResult.ACCEPT


def compute_signer_verdict(signer: bytes, height: int, get_validators: GetValidators | None) -> ValidationResult:
    """A correctly signed message from an account outside the height's validator set is junk.

    Without this a non-validator could flood every node with well-signed votes and proposals
    (each carrying a block up to the frame limit) that all forward and none score down.
    `get_validators(height)` is None where the set is not known yet (a height past the next
    epoch boundary): such messages are judged by height alone.
    """
    validators = get_validators(height) if get_validators is not None else None
    if validators is not None and signer not in validators:
        return ValidationResult.REJECT
    return ValidationResult.ACCEPT


def compute_proposal_verdict(payload: bytes, chain_id: int, chain_height: int, consensus_height: int,
                             get_validators: GetValidators | None = None) -> ValidationResult:
    try:
        proposal, _block = decode_proposal_message(payload)
        validate_proposal_signature(proposal, chain_id)
    except Exception:
        return ValidationResult.REJECT
    height_verdict = compute_height_verdict(proposal.height, chain_height, consensus_height)
    if height_verdict != ValidationResult.ACCEPT:
        return height_verdict
    return compute_signer_verdict(proposal.proposer, proposal.height, get_validators)


def compute_vote_verdict(payload: bytes, chain_id: int, chain_height: int, consensus_height: int,
                         get_validators: GetValidators | None = None) -> ValidationResult:
    try:
        vote = decode_vote_message(payload)
        validate_vote_signature(vote, chain_id)
    except Exception:
        return ValidationResult.REJECT
    height_verdict = compute_height_verdict(vote.height, chain_height, consensus_height)
    if height_verdict != ValidationResult.ACCEPT:
        return height_verdict
    return compute_signer_verdict(vote.validator, vote.height, get_validators)


# --- consensus_messages -----------------------------------------------------------------------

def encode_height_messages(messages: Iterable[Proposal | Vote],
                           get_block: Callable[[bytes], Block | None]) -> list[list]:
    """A height's messages as [kind, payload] items; a proposal whose block we lack is left out,
    since without its block it helps nobody judge it."""
    encoded = []
    for message in messages:
        if isinstance(message, Proposal):
            block = get_block(message.block_hash)
            if block is not None:
                encoded.append([KIND_PROPOSAL, encode_proposal_message(message, block)])
        else:
            encoded.append([KIND_VOTE, encode_vote_message(message)])
    return encoded


def iter_pulled_messages(messages: list) -> Iterator[tuple[int, bytes]]:
    """The well-formed (kind, payload) items of a peer's answer; malformed items are skipped."""
    for item in messages[:MAX_PULLED_MESSAGES]:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], bytes)):
            continue
        if item[0] in (KIND_PROPOSAL, KIND_VOTE):
            yield item[0], item[1]


# --- get_commit and get_candidate ---------------------------------------------------------------

def parse_block_hash_param(params: Any) -> bytes:
    """get_commit's params: exactly [block_hash]; anything else is the requester's fault."""
    if not (isinstance(params, list) and len(params) == 1 and isinstance(params[0], bytes)):
        raise BadRequest("get_commit params must be [block_hash]", got=params, expected="[bytes32]")
    return params[0]


def parse_candidate_param(params: Any) -> bytes | None:
    """get_candidate's params, read leniently: a malformed request just finds no block."""
    block_hash = params[0] if isinstance(params, list) and params else None
    return block_hash if isinstance(block_hash, bytes) else None


def encode_optional(value: Commit | Block | None) -> bytes:
    return rlp.encode(value) if value is not None else b""


def decode_optional_commit(encoded: bytes) -> Commit | None:
    return decode_rlp_bounded(encoded, sedes=Commit) if encoded else None


def decode_optional_block(encoded: bytes) -> Block | None:
    return decode_rlp_bounded(encoded, sedes=Block) if encoded else None
