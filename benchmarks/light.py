"""Light-client benchmark: verified headers/s (sequential and skipping), proof check time, peak RSS.

The chain is built locally with `chain.builder` on the real rules and LevelDB,
and every block is finalised by a commit really signed by its validator set
(4 equal validators by default; the genesis epoch is short, so the set is
re-derived from recognition at every epoch boundary and the light client follows
the changes). It is served by the full node's own JSON-RPC dispatcher
(`node.rpc.RPCDispatcher`), either in-process (`DispatcherTransport`, the JSON
bodies are still encoded and decoded) or over loopback HTTP (`node.http`, in a
child process so server and client get a core each).

Figures:
- sequential: every header verified (parent link, validators hash, commit with
  > 2/3 of the weight), headers per second of wall time, fetch included;
- skipping: from genesis to the head CometBFT-style; heights advanced per second
  (the client checks a handful of commits, so this is latency-bound), plus the
  commits it actually checked;
- proof check: eth_getProof (storage key 0) verified against the verified root,
  per account, fetch excluded and included;
- peak RSS of the process after the light-client runs (the builder's chain is
  in LevelDB on disk, but the process also holds the full node's dispatcher in
  the in-process mode, so the figure is an upper bound).

Signature recovery memoised by `consensus.votes` is cleared before each timed
run, so every signature is really recovered.

Run: ``python -m benchmarks.light [--json] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple, Sequence

import rlp
import trio
from eth_utils import keccak

from chain.builder import build_block
from chain.chain import Chain
from chain.db import LevelDB
from chain.payloads import Offering
from chain.transactions import sign_work_transaction
from consensus.votes import EMPTY_COMMIT, PRECOMMIT, Commit, compute_commit, make_vote, sign_vote
from genesis import DEFAULT_PARAMS, MUAGIC, Genesis, make_genesis
from genesis.keys import get_address

RESULTS_PATH = Path(__file__).parent / "results" / "light.json"
CHAIN_ID = 4343
KEYS = tuple(keccak(b"light-bench-validator-%d" % i) for i in range(16))
TARGET_HEADERS_PER_SECOND = 2000


def make_light_genesis(validators: int = 4, epoch_length: int = 100) -> Genesis:
    params = DEFAULT_PARAMS.copy(epoch_length=epoch_length)
    return make_genesis(CHAIN_ID, [get_address(k) for k in KEYS[:validators]], params=params,
                        timestamp_ms=1_700_000_000_000)


def sign_commit(chain: Chain, header, keys_by_address: dict[bytes, bytes], signers: Sequence[bytes] | None = None
                ) -> Commit:
    """A commit for `header` signed by `signers` (default: every member of the set it names)."""
    members = chain.get_validator_set(header.validators_hash).addresses
    chosen = members if signers is None else [a for a in members if a in signers]
    votes = [sign_vote(make_vote(PRECOMMIT, header.number, 0, header.hash, a), keys_by_address[a],
                       chain.genesis.chain_id) for a in chosen]
    return compute_commit(header.number, 0, header.hash, votes)


class BuiltChain(NamedTuple):
    chain: Chain
    db: LevelDB
    keys: dict[bytes, bytes]


def build_signed_chain(path: Path, genesis: Genesis, blocks: int, *, keys: Sequence[bytes] = KEYS,
                       txs_at: dict[int, list] | None = None, progress=None) -> BuiltChain:
    """A chain of `blocks` blocks on LevelDB at `path`, each finalised by a commit its set really signed.

    `txs_at` maps a height to callables `(chain) -> raw tx` placed in that block.
    """
    db = LevelDB(path)
    chain = Chain.from_genesis(db, genesis)
    keys_by_address = {get_address(k): k for k in keys}
    last_commit = EMPTY_COMMIT
    for number in range(chain.height + 1, chain.height + blocks + 1):
        parent = chain.head
        raw_txs = [make(chain) for make in (txs_at or {}).get(number, [])]
        built = build_block(chain.scratch_state(), parent, raw_txs, parent.timestamp_ms + 1000,
                            parent.proposer if number > 1 else get_address(keys[0]), last_commit, genesis,
                            chain.rules)
        commit = sign_commit(chain, built.block.header, keys_by_address)
        chain.import_block(built.block, commit)
        last_commit = commit
        if progress is not None:
            progress(number)
    return BuiltChain(chain, db, keys_by_address)


def make_offering(key: bytes, amount: int, purpose: bytes = b"bench"):
    """A callable building a signed offering from `key` at its current nonce."""
    def make(chain: Chain) -> bytes:
        address = get_address(key)
        return sign_work_transaction(key, chain_id=chain.genesis.chain_id, nonce=chain.state.get_nonce(address),
                                     kind="offering", data=rlp.encode(Offering(purpose, b"")), value=amount)
    return make


def make_evidence(submitter_key: bytes, accused_key: bytes, nonce_offset: int = 0):
    """A callable building an evidence tx: two conflicting precommits signed by `accused_key` (slashes it).

    `nonce_offset` counts the submitter's transactions placed before this one in the same block.
    """
    from chain.payloads import Evidence

    def make(chain: Chain) -> bytes:
        accused = get_address(accused_key)
        votes = [sign_vote(make_vote(PRECOMMIT, 1, 7, block_hash, accused), accused_key, chain.genesis.chain_id)
                 for block_hash in (b"\xaa" * 32, b"\xbb" * 32)]
        submitter = get_address(submitter_key)
        nonce = chain.state.get_nonce(submitter) + nonce_offset
        return sign_work_transaction(submitter_key, chain_id=chain.genesis.chain_id, nonce=nonce, kind="evidence",
                                     data=rlp.encode(Evidence(rlp.encode(votes[0]), rlp.encode(votes[1]))))
    return make


class ChainNode:
    """A NodeAPI over a built chain, for serving it with the full node's JSON-RPC (no consensus, no mempool)."""

    inference = None

    def __init__(self, chain: Chain) -> None:
        from node.mempool import Mempool

        self.chain = chain
        self.genesis = chain.genesis
        self.mempool = Mempool(chain.genesis, lambda: chain.state)

    def submit_transaction(self, raw_tx: bytes) -> bytes:
        return self.mempool.add(raw_tx)

    def get_sync_status(self):
        return None

    def get_status(self) -> dict:
        return {"height": self.chain.height, "role": "benchmark chain"}
