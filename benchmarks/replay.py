"""Replay benchmark: magicoin's full-validation replay on LevelDB against py-evm's block import.

    python -m benchmarks.replay [--blocks 500] [--txs 100] [--accounts 1200] [--quick] [--json]

It builds (or reuses from a cache file) a chain of signed work transactions, a
realistic mix of every kind the economy handles from >= 1,000 accounts, then
replays it from genesis into a fresh LevelDB with full validation (every
signature, commit, root). The baseline imports the same number of signed
EIP-1559 value transfers to one address into py-evm's own Chain (in-memory
database, coincurve backend). Results go to benchmarks/results/replay.json.

`build_workload_chain` is also what the chain tests and the crash test use to
get real signed blocks.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from eth_utils import keccak

from chain.blocks import Block
from chain.builder import build_block
from chain.chain import Chain
from chain.db import LevelDB, MemoryDB
from chain.payloads import (
    Annotation, AnnotationTask, Attestation, ChatMessage, InferenceRequest, InferenceResult, Offering,
    RegisterWorker,
)
from chain.state import State
from chain.transactions import sign_work_transaction
from consensus import economy
from consensus.votes import EMPTY_COMMIT, PRECOMMIT, compute_commit, make_vote, sign_vote
from genesis import MUAGIC, Genesis, make_genesis
from genesis.keys import devnet_private_key, get_address

import rlp

RESULTS = Path(__file__).with_name("results") / "replay.json"
MODEL_SHA256 = keccak(b"SmolLM2-135M-Instruct.Q4_1.gguf (benchmark stand-in)")
VALIDATORS = 4
BLOCK_INTERVAL_MS = 1_000


# --- the workload ---------------------------------------------------------------------------

def make_workload_genesis(chain_id: int = 19_777) -> tuple[Genesis, list[bytes]]:
    keys = [devnet_private_key(i) for i in range(VALIDATORS)]
    genesis = make_genesis(chain_id, [get_address(k) for k in keys], balance=1_000_000 * MUAGIC)
    return genesis, keys


def sign_commit(block: Block, keys: list[bytes], chain_id: int):
    """The commit all validators would produce for `block` (round 0)."""
    votes = [
        sign_vote(make_vote(PRECOMMIT, block.header.number, 0, block.hash, get_address(key)), key, chain_id)
        for key in keys
    ]
    return compute_commit(block.header.number, 0, block.hash, votes)


class Workload:
    """Generates each next block's candidate transactions from the chain's current state."""

    def __init__(self, genesis: Genesis, validator_keys: list[bytes], accounts: int, seed: int = 1,
                 workers: int = 40) -> None:
        self.genesis = genesis
        self.rng = random.Random(seed)
        self.validator_keys = validator_keys
        self.validators = [get_address(k) for k in validator_keys]
        self.keys = [keccak(b"magicoin-benchmark-account-%d-%d" % (seed, i)) for i in range(accounts)]
        self.addresses = [get_address(k) for k in self.keys]
        self.key_of = dict(zip(self.addresses, self.keys)) | dict(zip(self.validators, validator_keys))
        self.workers = self.addresses[:workers]
        self.nonces: dict[bytes, int] = {}
        self.annotated: dict[bytes, set[bytes]] = {}

    def sign(self, sender: bytes, kind: str, payload, value: int = 0) -> bytes:
        nonce = self.nonces.get(sender, 0)
        self.nonces[sender] = nonce + 1
        return sign_work_transaction(self.key_of[sender], chain_id=self.genesis.chain_id, nonce=nonce, kind=kind,
                                     data=rlp.encode(payload), value=value)

    def next_transactions(self, state: State, number: int, count: int) -> list[bytes]:
        rng = self.rng
        limit = self.genesis.params.max_txs_per_account_per_block
        sent: dict[bytes, int] = {}
        txs: list[bytes] = []

        def can_send(sender: bytes) -> bool:
            return sent.get(sender, 0) < limit

        def add(sender: bytes, kind: str, payload, value: int = 0) -> None:
            sent[sender] = sent.get(sender, 0) + 1
            txs.append(self.sign(sender, kind, payload, value))

        if number == 1:
            for worker in self.workers:
                add(worker, "register_worker", RegisterWorker(MODEL_SHA256, 1_000))
        # Answers and attestations for the jobs the chain has assigned or is auditing.
        for job_id in economy.get_open_jobs(state):
            job = economy.get_job(state, job_id)
            if len(txs) >= count * 0.3:
                break
            if job.status == economy.JobStatus.ASSIGNED and can_send(job.worker):
                tokens = [rng.randrange(49_152) for _ in range(min(job.max_tokens, rng.randrange(8, 48)))]
                add(job.worker, "inference_result", InferenceResult(job_id, tokens))
            elif job.status == economy.JobStatus.ATTESTING:
                done = {score.address for score in job.attestations}
                for seat in job.committee:
                    if seat.address not in done and seat.address in self.key_of and can_send(seat.address):
                        add(seat.address, "attestation", Attestation(job_id, rng.randrange(900_000, 1_000_001)))
        open_tasks = list(economy.get_open_tasks(state))
        while len(txs) < count:
            roll = rng.random()
            sender = rng.choice(self.addresses)
            if not can_send(sender):
                continue
            if roll < 0.15:
                messages = [ChatMessage(b"user", b"Summarise block %d in %d words." % (number, rng.randrange(5, 50)))]
                add(sender, "inference_request", InferenceRequest(messages, MODEL_SHA256, rng.randrange(16, 64)))
            elif roll < 0.30:
                labels = [b"relevant", b"off-topic", b"spam"]
                add(sender, "annotation_task", AnnotationTask(b"post %d" % rng.randrange(10**9), labels, 3))
            elif roll < 0.40:
                validator = rng.choice(self.validators)
                if can_send(validator):
                    add(validator, "offering", Offering(b"priority", b""), value=rng.randrange(1, 10**15))
            elif open_tasks:
                task_id = rng.choice(open_tasks)
                seen = self.annotated.setdefault(task_id, set())
                if len(seen) >= 3:
                    open_tasks.remove(task_id)
                elif sender not in seen:
                    seen.add(sender)
                    add(sender, "annotation", Annotation(task_id, 0 if rng.random() < 0.8 else 1))
        return txs


def build_workload_chain(db, *, blocks: int, txs_per_block: int, accounts: int = 1_200, seed: int = 1,
                         progress=None) -> Chain:
    """A chain of `blocks` blocks of signed work in `db`, built and imported as a proposer would."""
    genesis, keys = make_workload_genesis()
    chain = Chain.from_genesis(db, genesis)
    workload = Workload(genesis, keys, accounts, seed)
    commit = None
    for number in range(1, blocks + 1):
        head = chain.head
        proposal_state = State(db, head.state_root, buffer_writes=True, node_cache=chain._node_cache)
        candidates = workload.next_transactions(proposal_state, number, txs_per_block)
        built = build_block(proposal_state, head, candidates, head.timestamp_ms + BLOCK_INTERVAL_MS,
                            workload.validators[number % VALIDATORS], commit or EMPTY_COMMIT, genesis, chain.rules)
        if built.skipped:
            raise AssertionError(f"workload produced invalid transactions: {built.skipped[:2]}")
        commit = sign_commit(built.block, keys, genesis.chain_id)
        chain.import_block(built.block, commit)
        if progress is not None:
            progress(number)
    return chain


def write_workload_file(path: str | os.PathLike, *, blocks: int, txs_per_block: int, accounts: int = 1_200,
                        seed: int = 1, progress=None) -> tuple[Genesis, int]:
    """Build a workload chain in a scratch database and export it to `path` (concatenated RLP)."""
    from chain.replay import export_blocks

    scratch = tempfile.mkdtemp(prefix="magicoin-workload-")
    db = LevelDB(scratch)
    try:
        chain = build_workload_chain(db, blocks=blocks, txs_per_block=txs_per_block, accounts=accounts, seed=seed,
                                     progress=progress)
        with open(path, "wb") as stream:
            count = export_blocks(chain, stream)
        return chain.genesis, count
    finally:
        db.close()
        shutil.rmtree(scratch, ignore_errors=True)
