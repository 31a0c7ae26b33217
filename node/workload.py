"""The replay workload: a chain of signed work, a realistic mix of every kind the economy handles.

Owns the workload's genesis (the four devnet validators, funded), the
generator of each next block's transactions from >= 1,000 accounts (worker
registrations, chat requests and their results, attestations by the audit
committees, annotation tasks and annotations, offerings), and building or
exporting such a chain as a proposer would (`node.devchain`). The replay
benchmark times replaying it; the chain tests use it for real signed blocks.
"""
from __future__ import annotations

import os
import random
import shutil
import tempfile

import rlp
from eth_utils import keccak

import economy
from chain.chain import Chain
from chain.db import LevelDB
from chain.payloads import (
    Annotation, AnnotationTask, Attestation, ChatMessage, InferenceRequest, InferenceResult, Offering,
    DeclareModels, RegisterAnnotator, RegisterWorker,
)
from chain.replay import export_blocks
from chain.state import State
from chain.transactions import sign_work_transaction
from consensus.votes import EMPTY_COMMIT
from genesis import DEFAULT_PARAMS, MUAGIC, Genesis, ModelCard, make_genesis
from genesis.keys import devnet_private_key, get_address
from node.devchain import append_block, sign_set_commit

WORKLOAD_CHAIN_ID = 19_777
MODEL_SHA256 = keccak(b"SmolLM2-135M-Instruct.Q4_1.gguf (benchmark stand-in)")
MODEL_CARD = ModelCard(MODEL_SHA256, b"benchmark-stand-in", keccak(b"template"), keccak(b"vocab"), 2048)
VALIDATORS = 4


def make_workload_genesis(chain_id: int = WORKLOAD_CHAIN_ID, epoch_length: int | None = None
                          ) -> tuple[Genesis, list[bytes]]:
    """The workload's genesis and its validators' keys (the first devnet keys, INSECURE)."""
    keys = [devnet_private_key(i) for i in range(VALIDATORS)]
    # Registered annotators carry weight from the prior alone, so posted tasks are drawn at once (no
    # gold answers to play through first) and the mix keeps its annotations.
    params = DEFAULT_PARAMS.copy(annotator_min_gold=0, annotator_prior_correct=2)
    if epoch_length is not None:
        params = params.copy(epoch_length=epoch_length)
    genesis = make_genesis(chain_id, [get_address(k) for k in keys], balance=1_000_000 * MUAGIC, params=params,
                           models=[MODEL_CARD])
    return genesis, keys


class Workload:
    """Generates each next block's candidate transactions from the chain's current state."""

    def __init__(self, genesis: Genesis, validator_keys: list[bytes], accounts: int, seed: int = 1,
                 workers: int = 40, annotators: int = 100) -> None:
        self.genesis = genesis
        self.rng = random.Random(seed)
        self.validator_keys = validator_keys
        self.validators = [get_address(k) for k in validator_keys]
        self.keys = [keccak(b"magicoin-benchmark-account-%d-%d" % (seed, i)) for i in range(accounts)]
        self.addresses = [get_address(k) for k in self.keys]
        self.key_of = dict(zip(self.addresses, self.keys)) | dict(zip(self.validators, validator_keys))
        self.workers = self.addresses[:workers]
        self.annotators = self.addresses[workers:workers + annotators]
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
            for validator in self.validators:  # the genesis validators hold the model: they audit its jobs
                add(validator, "declare_models", DeclareModels([MODEL_SHA256]))
            for worker in self.workers:
                add(worker, "register_worker", RegisterWorker(MODEL_SHA256, 1_000))
            for annotator in self.annotators:
                add(annotator, "register_annotator", RegisterAnnotator(b"model:benchmark"))
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
                # Only the annotators the chain drew for a task may answer it.
                task_id = rng.choice(open_tasks)
                seen = self.annotated.setdefault(task_id, set())
                drawn = [seat.address for seat in economy.get_task(state, task_id).annotators
                         if seat.address not in seen and can_send(seat.address)]
                if not drawn:
                    open_tasks.remove(task_id)
                    continue
                seen.add(drawn[0])
                add(drawn[0], "annotation", Annotation(task_id, 0 if rng.random() < 0.8 else 1))
        return txs


def build_workload_chain(db, *, blocks: int, txs_per_block: int, accounts: int = 1_200, seed: int = 1,
                         progress=None, epoch_length: int | None = None) -> Chain:
    """A chain of `blocks` blocks of signed work in `db`, built and imported as a proposer would."""
    genesis, keys = make_workload_genesis(epoch_length=epoch_length)
    chain = Chain.from_genesis(db, genesis, economy.make_work_rules)
    workload = Workload(genesis, keys, accounts, seed)
    commit = EMPTY_COMMIT
    for number in range(1, blocks + 1):
        state = chain.scratch_state()
        candidates = workload.next_transactions(state, number, txs_per_block)
        # Signed by the set each header names: paid workers join it at epoch boundaries.
        built, commit = append_block(chain, candidates, workload.validators[number % VALIDATORS], commit,
                                     lambda header: sign_set_commit(chain, header, workload.key_of), state)
        if built.skipped:
            raise AssertionError(f"workload produced invalid transactions: {built.skipped[:2]}")
        if progress is not None:
            progress(number)
    return chain


def write_workload_file(path: str | os.PathLike, *, blocks: int, txs_per_block: int, accounts: int = 1_200,
                        seed: int = 1, progress=None) -> tuple[Genesis, int]:
    """Build a workload chain in a scratch database and export it to `path` (concatenated RLP)."""
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
