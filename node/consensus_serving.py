"""The three consensus request methods over p2p, both ends: answering peers, and asking them.

Owns `ConsensusServer` (the handlers for `consensus_messages`, `get_commit`,
`get_candidate`, answered from the machine's current height, the candidate
blocks and the chain) and `ConsensusFetcher` (the same requests sent to peers
when this node misses something: a candidate block it was asked to judge, the
head's commit after block sync, or a whole height's messages after a timeout).
The fetcher only returns what it got, checked; the round driver decides what
to do with it.
"""
from __future__ import annotations

from typing import Any, Callable

import rlp
import trio

from chain.blocks import Block
from chain.chain import Chain
from chain.exceptions import ChainError
from consensus.bft import TendermintMachine
from consensus.votes import ConsensusError, validate_commit
from node.consensus_blocks import CandidateBlocks
from node.consensus_wire import (
    METHOD_CONSENSUS_MESSAGES,
    METHOD_GET_CANDIDATE,
    METHOD_GET_COMMIT,
    decode_optional_block,
    decode_optional_commit,
    encode_height_messages,
    encode_optional,
    parse_block_hash_param,
    parse_candidate_param,
)
from p2p import P2PError

PULL_TIMEOUT = 2.0  # seconds a peer has to answer consensus_messages


class ConsensusServer:
    """Answers peers' consensus requests; registered on the p2p service before consensus starts."""

    def __init__(self, chain: Chain, machine: TendermintMachine, candidates: CandidateBlocks) -> None:
        self.chain = chain
        self.machine = machine
        self.candidates = candidates

    def register(self, p2p) -> None:
        p2p.register_handler(METHOD_CONSENSUS_MESSAGES, self.serve_consensus_messages)
        p2p.register_handler(METHOD_GET_COMMIT, self.serve_commit)
        p2p.register_handler(METHOD_GET_CANDIDATE, self.serve_candidate)

    def get_height_messages(self) -> list[list]:
        messages = [m for round_ in range(self.machine.round + 1) for m in self.machine.get_round_messages(round_)]
        return encode_height_messages(messages, self.candidates.get)

    async def serve_consensus_messages(self, node_id: bytes, params: Any) -> list:
        """[our height, messages of our current height] (our height alone tells a laggard to sync)."""
        return [self.machine.height, self.get_height_messages()]

    async def serve_commit(self, node_id: bytes, params: Any) -> bytes:
        block_hash = parse_block_hash_param(params)
        try:
            commit = self.chain.get_commit(block_hash)
        except ChainError:
            return b""
        return encode_optional(commit)

    async def serve_candidate(self, node_id: bytes, params: Any) -> bytes:
        block_hash = parse_candidate_param(params)
        return encode_optional(self.candidates.get(block_hash) if block_hash is not None else None)


class ConsensusFetcher:
    """Asks peers, one after another or all at once, for what consensus is missing."""

    def __init__(self, chain: Chain, machine: TendermintMachine, p2p, on_behind: Callable[[], None]) -> None:
        self.chain = chain
        self.machine = machine
        self.p2p = p2p
        self.on_behind = on_behind

    async def fetch_candidate(self, block_hash: bytes) -> Block | None:
        """The proposed block with this hash from the first peer that holds it."""
        for peer in self.p2p.get_peers():
            try:
                block = decode_optional_block(await self.p2p.request(peer.node_id, METHOD_GET_CANDIDATE, [block_hash]))
            except (P2PError, rlp.exceptions.RLPException):
                continue
            if block is not None and block.hash == block_hash:
                return block
        return None

    async def fetch_head_commit(self) -> bool:
        """After block sync: the head's commit (needed to propose on it) from any peer that has it."""
        head = self.chain.head
        if head.number == 0 or self.chain.get_commit(head.hash) is not None:
            return True
        validator_set = self.chain.get_validator_set(head.validators_hash)
        for peer in self.p2p.get_peers():
            try:
                commit = decode_optional_commit(await self.p2p.request(peer.node_id, METHOD_GET_COMMIT, [head.hash]))
                if commit is None:
                    continue
                validate_commit(commit, validator_set, self.chain.genesis.chain_id, head.number, head.hash)
            except (P2PError, ConsensusError, rlp.exceptions.RLPException):
                continue
            if self.chain.head.hash == head.hash:
                self.chain.store_commit(head.hash, commit)
            return True
        return False

    async def pull_height_messages(self, on_messages: Callable[[list, bytes], None]) -> None:
        """Ask every peer at once (one slow peer must not delay the others) for its current height's
        messages; a peer at our height hands them to `on_messages`, a peer ahead of us means we missed
        a decision."""
        async with trio.open_nursery() as nursery:
            for peer in self.p2p.get_peers():
                nursery.start_soon(self.pull_from_peer, peer.node_id, on_messages)

    async def pull_from_peer(self, node_id: bytes, on_messages: Callable[[list, bytes], None]) -> None:
        try:
            height, messages = await self.p2p.request(node_id, METHOD_CONSENSUS_MESSAGES, [], timeout=PULL_TIMEOUT)
        except (P2PError, TypeError, ValueError):
            return
        if not isinstance(height, int):
            return
        # Compared with our height on arrival, not at asking: we may have moved on meanwhile.
        if height > self.machine.height:
            self.on_behind()
        elif height == self.machine.height and isinstance(messages, list):
            on_messages(messages, node_id)
