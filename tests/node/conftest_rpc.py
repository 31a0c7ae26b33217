"""A chain with every kind of work on LevelDB, and a small NodeAPI over it, for the RPC/HTTP/OpenAI tests.

`RPCTestNode` is the NodeAPI the HTTP server sees: the real `Chain`, the real
`node.mempool.Mempool`, and a block producer (`produce`) that builds blocks from
the mempool with `chain.builder` and imports them with commits signed by the
genesis validators, standing in for consensus (which the node engineer's
`node.consensus_service` runs in a real node).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import rlp
import trio
from eth_utils import keccak

from chain.builder import build_block
from chain.chain import Chain
from chain.db import LevelDB
from chain.payloads import (
    Annotation, AnnotationTask, Attestation, ChatMessage, DeclareModels, Evidence, InferenceRequest, InferenceResult, Offering,
    RegisterAnnotator, RegisterWorker, compute_work_id,
)
from chain.state import State
from chain.transactions import sign_work_transaction
import economy
from economy import EconomyParams, WorkRules
from consensus.votes import EMPTY_COMMIT, PRECOMMIT, compute_commit, make_vote, sign_vote
from genesis import DEFAULT_MODEL_CARD, DEFAULT_PARAMS, MUAGIC, ModelCard, make_genesis
from genesis.keys import devnet_private_key, get_address
from node.abc import InferenceGatewayAPI, NodeAPI, SyncStatus
from node.mempool import Mempool

CHAIN_ID = 31_337
MODEL = keccak(b"rpc-test-model")
VALIDATOR_KEYS = [devnet_private_key(i) for i in range(4)]
VALIDATORS = [get_address(k) for k in VALIDATOR_KEYS]
WORKER_KEY = keccak(b"rpc-test-worker")
REQUESTER_KEY = keccak(b"rpc-test-requester")
ANNOTATOR_KEYS = [keccak(b"rpc-test-annotator-%d" % i) for i in range(3)]
KEYS = {get_address(k): k for k in VALIDATOR_KEYS + [WORKER_KEY, REQUESTER_KEY] + ANNOTATOR_KEYS}
# No gold set here: a prior above chance and no gold minimum give registered annotators weight at once.
PARAMS = DEFAULT_PARAMS.copy(max_block_txs=64, annotator_min_gold=0, annotator_prior_correct=2)
# The stand-in model of the work history, known to the chain through the genesis like the default model.
MODEL_CARD = ModelCard(MODEL, b"rpc-test-model", keccak(b"test-template"), keccak(b"test-vocab"), 2048)
GENESIS = make_genesis(CHAIN_ID, VALIDATORS, params=PARAMS, timestamp_ms=1_700_000_000_000,
                       models=[DEFAULT_MODEL_CARD, MODEL_CARD])


class RPCTestNode(NodeAPI):
    def __init__(self, path, inference: InferenceGatewayAPI | None = None, genesis=GENESIS) -> None:
        self.genesis = genesis
        self.db = LevelDB(path)
        self.chain = Chain.from_genesis(self.db, genesis, lambda _genesis: WorkRules(EconomyParams.from_genesis(genesis.params),
                                                                                  models=genesis.models))
        self.mempool = Mempool(genesis, lambda: self.chain.state)
        self.inference = inference
        self.submitted: list[bytes] = []
        self.sync_status: SyncStatus | None = None

    # --- NodeAPI --------------------------------------------------------------------------------

    def submit_transaction(self, raw_tx: bytes) -> bytes:
        tx_hash = self.mempool.add(raw_tx)
        self.submitted.append(tx_hash)
        return tx_hash

    def get_sync_status(self) -> SyncStatus | None:
        return self.sync_status

    def get_status(self) -> dict:
        return {"height": self.chain.height, "peers": 3, "mempool": len(self.mempool), "role": "test"}

    # --- standing in for consensus ---------------------------------------------------------------

    def commit_for_head(self):
        head = self.chain.head
        if head.number == 0:
            return EMPTY_COMMIT
        members = set(self.chain.get_validator_set(head.validators_hash).addresses)
        votes = [sign_vote(make_vote(PRECOMMIT, head.number, 0, head.hash, a), KEYS[a], self.genesis.chain_id)
                 for a in VALIDATORS if a in members]
        return compute_commit(head.number, 0, head.hash, votes)

    def produce(self, raw_txs: Sequence[bytes] | None = None):
        """Build the next block from raw_txs (default: the mempool's selection) and import it with a commit."""
        parent = self.chain.head
        if raw_txs is None:
            raw_txs = self.mempool.select(self.genesis.params.max_block_txs)
        state = State(self.db, parent.state_root, buffer_writes=True)
        built = build_block(state, parent, list(raw_txs), parent.timestamp_ms + 1000, VALIDATORS[0],
                            self.commit_for_head(), self.genesis, self.chain.rules)
        self.chain.import_block(built.block)
        self.chain.store_commit(built.block.hash, self.commit_for_latest(built.block.header))
        self.mempool.on_block([tx.hash for tx in built.transactions])
        return built

    def commit_for_latest(self, header):
        votes = [sign_vote(make_vote(PRECOMMIT, header.number, 0, header.hash, a), KEYS[a], self.genesis.chain_id)
                 for a in self.chain.get_validator_set(header.validators_hash).addresses]
        return compute_commit(header.number, 0, header.hash, votes)

    async def run_producer(self, interval: float = 0.05, wants_block=None) -> None:
        """Seal a block whenever the mempool holds transactions (a one-node stand-in for consensus),
        or an empty one when `wants_block()` says so (the economy draws audits a block after a result)."""
        while True:
            if len(self.mempool) or (wants_block is not None and wants_block()):
                self.produce()
            await trio.sleep(interval)

    def has_results_awaiting_audit_draw(self) -> bool:
        state = self.chain.state
        return any(economy.get_job(state, job_id).status == economy.JobStatus.RESULTED
                   for job_id in economy.get_open_jobs(state))

    def close(self) -> None:
        self.db.close()


class Nonces:
    def __init__(self, node: RPCTestNode) -> None:
        self.node = node

    def sign(self, key: bytes, kind: str, payload, value: int = 0, nonce: int | None = None) -> bytes:
        address = get_address(key)
        if nonce is None:
            nonce = self.node.mempool.get_pending_nonce(address)
        return sign_work_transaction(key, chain_id=self.node.genesis.chain_id, nonce=nonce, kind=kind,
                                     data=rlp.encode(payload), value=value)


class WorkHistory(NamedTuple):
    job_id: bytes
    task_id: bytes
    tx_hashes: dict  # kind -> a tx hash of that kind
    failed_tx: bytes  # an included transaction whose work the economy refused
    committee: tuple


def build_work_history(node: RPCTestNode) -> WorkHistory:
    """Blocks carrying every kind of work: a job through audit to acceptance, an annotated task, an offering,
    evidence of a double sign, and a refused annotation (a failed receipt)."""
    signer = Nonces(node)
    worker, requester = get_address(WORKER_KEY), get_address(REQUESTER_KEY)
    hashes: dict[str, bytes] = {}

    def block(*txs: tuple[str, bytes]):
        built = node.produce([raw for _, raw in txs])
        assert not built.skipped, built.skipped
        for kind, raw in txs:
            hashes.setdefault(kind, keccak(raw))
        return built

    block(*declare_models_txs(signer, [MODEL]),
          ("register_worker", signer.sign(WORKER_KEY, "register_worker", RegisterWorker(MODEL, 100))),
          *[("register_annotator", signer.sign(k, "register_annotator", RegisterAnnotator(b"person")))
            for k in ANNOTATOR_KEYS])
    job_id = compute_work_id(requester, 0)
    task_id = compute_work_id(requester, 1)
    request = InferenceRequest([ChatMessage(b"user", b"Name a colour.")], MODEL, 16)
    task = AnnotationTask(b"is the sky blue?", [b"yes", b"no"], 3)
    block(("inference_request", signer.sign(REQUESTER_KEY, "inference_request", request, nonce=0)),
          ("annotation_task", signer.sign(REQUESTER_KEY, "annotation_task", task, nonce=1)))
    assert economy.get_job(node.chain.state, job_id).worker == worker
    block(("inference_result", signer.sign(WORKER_KEY, "inference_result", InferenceResult(job_id, [5, 6, 7, 2]))))
    job = economy.get_job(node.chain.state, job_id)
    if job.status != economy.JobStatus.ATTESTING:
        block()  # the audit is drawn once the hash of the result's block exists
        job = economy.get_job(node.chain.state, job_id)
    committee = tuple(seat.address for seat in job.committee)
    assert committee, "a new worker is on probation: its first job is audited"
    bad_annotation = signer.sign(WORKER_KEY, "annotation", Annotation(task_id, 7))  # only labels 0..1 exist
    built = block(*[("attestation", signer.sign(KEYS[a], "attestation", Attestation(job_id, 1_000_000)))
                    for a in committee],
                  *[("annotation", signer.sign(k, "annotation", Annotation(task_id, 0))) for k in ANNOTATOR_KEYS],
                  ("annotation_failed", bad_annotation))
    assert [i for i, _ in built.failures] == [len(built.transactions) - 1]
    vote_a = sign_vote(make_vote(PRECOMMIT, 1, 5, b"\xaa" * 32, VALIDATORS[3]), VALIDATOR_KEYS[3], CHAIN_ID)
    vote_b = sign_vote(make_vote(PRECOMMIT, 1, 5, b"\xbb" * 32, VALIDATORS[3]), VALIDATOR_KEYS[3], CHAIN_ID)
    block(("offering", signer.sign(VALIDATOR_KEYS[1], "offering", Offering(b"thanks", job_id), value=5 * MUAGIC)),
          ("evidence", signer.sign(VALIDATOR_KEYS[2], "evidence", Evidence(rlp.encode(vote_a), rlp.encode(vote_b)))))
    return WorkHistory(job_id, task_id, hashes, keccak(bad_annotation), committee)


# --- inference on the default model, standing in for the network's worker and auditors -------------------

class LocalModelGateway(InferenceGatewayAPI):
    """An InferenceGatewayAPI whose worker is a local llama.cpp model (the network gateway is the node's).

    `submit_chat` does what the real gateway does on chain: signs the job spec as
    an inference_request from the node's requester account, submits it, and routes
    it with `economy.router` over the state's workers; the "worker" is this
    process, which streams greedy tokens and, once the job is assigned to it in a
    block, posts the inference_result with the same tokens.
    """

    def __init__(self, node: RPCTestNode, model, nursery, requester_key: bytes = REQUESTER_KEY,
                 worker_key: bytes = WORKER_KEY) -> None:
        self.node = node
        self.model = model
        self.nursery = nursery
        self.requester_key = requester_key
        self.worker_key = worker_key
        self.limiter = trio.CapacityLimiter(1)  # one llama.cpp context: one job at a time
        self.results: dict[bytes, tuple[int, ...]] = {}

    def get_models(self):
        return [self.node.chain.rules.get_model_card(self.node.chain.state, self.model.sha256)]

    async def submit_chat(self, messages, max_tokens, model_sha256=None):
        from economy.router import route
        from inference.jobs import JobSpec
        from node.abc import ChatJob
        from node.exceptions import NoWorkerAvailable

        model_sha256 = model_sha256 or self.model.sha256
        spec = JobSpec.from_chat(messages, model_sha256, max_tokens)
        requester = get_address(self.requester_key)
        nonce = self.node.mempool.get_pending_nonce(requester)
        raw = sign_work_transaction(self.requester_key, chain_id=self.node.genesis.chain_id, nonce=nonce,
                                    kind="inference_request", data=spec.encode())
        job_id = compute_work_id(requester, nonce)
        params = self.node.chain.rules.params
        snapshot = economy.get_routing_snapshot(self.node.chain.state, params, self.node.chain.height + 1,
                                                excluded=[requester])
        worker = route(job_id, model_sha256, snapshot, economy.compute_job_cost(max_tokens, params))
        if worker is None:
            raise NoWorkerAvailable("no registered worker can take the job", got=model_sha256.hex(),
                                    expected="a worker serving this model with free capacity")
        tx_hash = self.node.submit_transaction(raw)
        return ChatJob(job_id, tx_hash, worker, model_sha256, self.stream(job_id, spec.get_chat(), max_tokens))

    async def stream(self, job_id: bytes, chat, max_tokens: int):
        from node.abc import ChatChunk

        model = self.model
        tokens: list[int] = []
        async with self.limiter:
            prompt = await trio.to_thread.run_sync(model.tokenize_chat, chat)
            iterator = model.iter_greedy(prompt, max_tokens)
            decoder = model.make_text_decoder()
            while (token := await trio.to_thread.run_sync(next, iterator, None)) is not None:
                tokens.append(token)
                text = "" if model.is_end_of_generation(token) else decoder.decode(model.get_token_bytes(token))
                yield ChatChunk(text, (token,))
        # The end as a worker reports it: its own stop reason and the rendered prompt's size.
        ended = bool(tokens) and model.is_end_of_generation(tokens[-1])
        yield ChatChunk("", (), "stop" if ended else "length", len(prompt))
        self.results[job_id] = tuple(tokens)
        self.nursery.start_soon(self.post_result, job_id, tuple(tokens))

    async def post_result(self, job_id: bytes, tokens: tuple[int, ...]) -> None:
        worker = get_address(self.worker_key)
        with trio.fail_after(30):
            while (job := economy.get_job(self.node.chain.state, job_id)) is None or job.status != \
                    economy.JobStatus.ASSIGNED:
                await trio.sleep(0.05)
        assert job.worker == worker, "the test network has one worker"
        self.node.submit_transaction(Nonces(self.node).sign(self.worker_key, "inference_result",
                                                            InferenceResult(job_id, list(tokens))))


async def run_auditors(node: RPCTestNode, model, limiter: trio.CapacityLimiter, interval: float = 0.1) -> None:
    """Committee members (the genesis validators) re-run audited jobs on the model and attest.

    The score is the share of claimed tokens that the auditor's own greedy run
    reproduces, in ppm: a stand-in for `inference.verifier`, which the node's
    validator duty uses in a real node.
    """
    from chain.payloads import decode_payload
    from node.rpc_muagic import find_creating_transaction

    attested: set[tuple[bytes, bytes]] = set()
    while True:
        state = node.chain.state
        for job_id in economy.get_open_jobs(state):
            job = economy.get_job(state, job_id)
            if job.status != economy.JobStatus.ATTESTING:
                continue
            _, request = find_creating_transaction(node, job.created_block, job.requester, job_id, "inference_request")
            claimed = decode_payload("inference_result", _get_tx_data(node, job.result_tx)).output_tokens
            chat = [(m.role.decode(), m.content.decode()) for m in request.messages]
            async with limiter:
                prompt = await trio.to_thread.run_sync(model.tokenize_chat, chat)
                mine = await trio.to_thread.run_sync(lambda: list(model.iter_greedy(prompt, job.max_tokens)))
            same = sum(1 for a, b in zip(mine, claimed) if a == b) if len(mine) == len(claimed) else 0
            score = 1_000_000 * same // max(1, len(claimed))
            for seat in job.committee:
                if (job_id, seat.address) not in attested and seat.address in KEYS:
                    node.submit_transaction(Nonces(node).sign(KEYS[seat.address], "attestation",
                                                              Attestation(job_id, score)))
                    attested.add((job_id, seat.address))
        await trio.sleep(interval)


def _get_tx_data(node: RPCTestNode, tx_hash: bytes) -> bytes:
    from chain.transactions import decode_transaction

    raw = node.chain.get_transaction(tx_hash)[2]
    return decode_transaction(raw, node.genesis.chain_id, node.genesis.params.max_payload_size).data


def declare_models_txs(signer: "Nonces", models: list[bytes]) -> list[tuple[str, bytes]]:
    """The genesis validators declare they hold `models`: committees for a model are drawn among its holders."""
    return [("declare_models", signer.sign(key, "declare_models", DeclareModels(models))) for key in VALIDATOR_KEYS]


def register_worker(node: RPCTestNode, model_sha256: bytes, key: bytes = WORKER_KEY, capacity: int = 200) -> None:
    signer = Nonces(node)
    txs = [raw for _, raw in declare_models_txs(signer, [model_sha256])]
    built = node.produce(txs + [signer.sign(key, "register_worker", RegisterWorker(model_sha256, capacity))])
    assert not built.failures and not built.skipped
