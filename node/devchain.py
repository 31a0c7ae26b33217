"""Chains built locally, block by block, each finalised by a really signed commit.

Owns the pieces that tools, benchmarks and tests share to get real signed
blocks without running consensus: signing a block's commit with the
validators' keys, appending the next block to a `Chain` (built by
`chain.builder`, then imported with its commit as a node would), a
multi-validator development genesis with its keys (INSECURE, public), signed
offering and evidence transactions, and `ChainNode`, which serves a built
chain through the full node's JSON-RPC (`node.rpc`, `node.http`).

`node.workload` builds on this for the replay workload's work mix.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, NamedTuple, Sequence

import rlp
from eth_utils import keccak

from chain.builder import BuiltBlock, build_block
from chain.blocks import Header
from chain.chain import Chain
from chain.db import LevelDB
from chain.payloads import Evidence, Offering
from chain.state import State
from chain.transactions import sign_work_transaction
from consensus.votes import EMPTY_COMMIT, PRECOMMIT, Commit, compute_commit, make_vote, sign_vote
from economy import make_work_rules
from genesis import DEFAULT_PARAMS, Genesis, make_genesis
from genesis.keys import get_address
from node.mempool import Mempool

DEV_CHAIN_ID = 4343
# INSECURE, public: the keys of the development validators (the seed is the light benchmark's, where they began).
VALIDATOR_KEYS = tuple(keccak(b"light-bench-validator-%d" % i) for i in range(16))
BLOCK_INTERVAL_MS = 1_000

MakeTx = Callable[[Chain], bytes]  # a signed transaction built against the chain as it is when the block is made


def make_dev_genesis(validators: int = 4, epoch_length: int = 100) -> Genesis:
    """`validators` equal validators from VALIDATOR_KEYS, with a short epoch so sets can change in a test."""
    params = DEFAULT_PARAMS.copy(epoch_length=epoch_length)
    return make_genesis(DEV_CHAIN_ID, [get_address(k) for k in VALIDATOR_KEYS[:validators]], params=params,
                        timestamp_ms=1_700_000_000_000)


# --- commits --------------------------------------------------------------------------------------

def sign_commit(header: Header, keys: Iterable[bytes], chain_id: int) -> Commit:
    """The round-0 commit for `header` with a precommit signed by every key (members of the set or not)."""
    votes = [sign_vote(make_vote(PRECOMMIT, header.number, 0, header.hash, get_address(key)), key, chain_id)
             for key in keys]
    return compute_commit(header.number, 0, header.hash, votes)


def sign_set_commit(chain: Chain, header: Header, keys_by_address: dict[bytes, bytes],
                    signers: Sequence[bytes] | None = None) -> Commit:
    """The commit for `header` signed by the members of the set it names (only `signers` among them, if given)."""
    members = chain.get_validator_set(header.validators_hash).addresses
    chosen = members if signers is None else [a for a in members if a in signers]
    return sign_commit(header, [keys_by_address[a] for a in chosen], chain.genesis.chain_id)


# --- blocks ---------------------------------------------------------------------------------------

def append_block(chain: Chain, raw_txs: Sequence[bytes], proposer: bytes, last_commit: Commit,
                 sign: Callable[[Header], Commit], state: State | None = None) -> tuple[BuiltBlock, Commit]:
    """Build the block after the head from `raw_txs`, one interval later, and import it with its signed commit.

    `state` is the head's scratch state when the caller already read it to choose the transactions.
    """
    head = chain.head
    built = build_block(state if state is not None else chain.scratch_state(), head, raw_txs,
                        head.timestamp_ms + BLOCK_INTERVAL_MS, proposer, last_commit, chain.genesis, chain.rules)
    commit = sign(built.block.header)
    chain.import_block(built.block, commit)
    return built, commit


class BuiltChain(NamedTuple):
    chain: Chain
    db: LevelDB
    keys: dict[bytes, bytes]


def build_signed_chain(path: Path, genesis: Genesis, blocks: int, *, keys: Sequence[bytes] = VALIDATOR_KEYS,
                       txs_at: dict[int, list[MakeTx]] | None = None, progress=None) -> BuiltChain:
    """A chain of `blocks` blocks on LevelDB at `path`, each finalised by a commit its set really signed.

    `txs_at` maps a height to the callables making the transactions placed in that block.
    """
    db = LevelDB(path)
    chain = Chain.from_genesis(db, genesis, make_work_rules)
    keys_by_address = {get_address(k): k for k in keys}
    last_commit = EMPTY_COMMIT
    for number in range(chain.height + 1, chain.height + blocks + 1):
        raw_txs = [make(chain) for make in (txs_at or {}).get(number, [])]
        proposer = chain.head.proposer if number > 1 else get_address(keys[0])
        _, last_commit = append_block(chain, raw_txs, proposer, last_commit,
                                      lambda header: sign_set_commit(chain, header, keys_by_address))
        if progress is not None:
            progress(number)
    return BuiltChain(chain, db, keys_by_address)


# --- transactions ---------------------------------------------------------------------------------

def make_offering(key: bytes, amount: int, purpose: bytes = b"bench") -> MakeTx:
    """A signed offering from `key` at its current nonce."""
    def make(chain: Chain) -> bytes:
        address = get_address(key)
        return sign_work_transaction(key, chain_id=chain.genesis.chain_id, nonce=chain.state.get_nonce(address),
                                     kind="offering", data=rlp.encode(Offering(purpose, b"")), value=amount)
    return make


def make_evidence(submitter_key: bytes, accused_key: bytes, nonce_offset: int = 0) -> MakeTx:
    """An evidence tx: two conflicting precommits signed by `accused_key` (it slashes the accused).

    `nonce_offset` counts the submitter's transactions placed before this one in the same block.
    """
    def make(chain: Chain) -> bytes:
        accused = get_address(accused_key)
        votes = [sign_vote(make_vote(PRECOMMIT, 1, 7, block_hash, accused), accused_key, chain.genesis.chain_id)
                 for block_hash in (b"\xaa" * 32, b"\xbb" * 32)]
        submitter = get_address(submitter_key)
        nonce = chain.state.get_nonce(submitter) + nonce_offset
        return sign_work_transaction(submitter_key, chain_id=chain.genesis.chain_id, nonce=nonce, kind="evidence",
                                     data=rlp.encode(Evidence(rlp.encode(votes[0]), rlp.encode(votes[1]))))
    return make


# --- serving --------------------------------------------------------------------------------------

class ChainNode:
    """A NodeAPI over a built chain, for serving it with the full node's JSON-RPC (no consensus, no peers)."""

    inference = None

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.genesis = chain.genesis
        self.mempool = Mempool(chain.genesis, lambda: chain.state)

    def submit_transaction(self, raw_tx: bytes) -> bytes:
        return self.mempool.add(raw_tx)

    def get_sync_status(self):
        return None

    def get_status(self) -> dict:
        return {"height": self.chain.height, "role": "built chain"}
