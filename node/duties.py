"""The worker, validator and annotator duties of a node, as trio tasks over one loaded model.

Owns: registering this node as a worker (`register_worker` with the model's
sha256 and the capacity the worker measured), serving jobs the chain assigned
to this node (`inference.worker`, then a signed `inference_result`),
attesting as an audit committee member (`inference.verifier` through the
worker, then an `attestation`), registering as an annotator (`register_annotator`,
operator b"model:<sha256 hex>") and annotating, with the local LLM
(`inference.annotator`, then an `annotation`), the tasks the chain drew for this
node's account (gold tasks included: their content is in the genesis), and the worker side of chat
streaming for the inference gateway: `chat_stream`, a p2p stream method that
decodes the signed request's job and pushes its tokens to the requester as
they come (`stream_chat`; the gateway calls it directly when the worker is
its own node).

The duties learn what to do from the chain: every imported block's
`inference_request` and `annotation_task` transactions are remembered (their
payloads hold the prompt and the content, which state keeps only as records
and hashes), and after each block the records say who must act. An output a
worker streamed to a requester is kept, so when the chain assigns it that
job it submits the same tokens instead of decoding again.
"""
from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator, Sequence

import rlp
import trio

from chain.blocks import Block
from chain.exceptions import ChainError
from chain.payloads import (
    Annotation, AnnotationTask, Attestation, DeclareModels, InferenceResult, RegisterAnnotator, RegisterModel,
    MAX_ENGINE_SIZE, RegisterWorker, compute_work_id,
)
from chain.transactions import decode_transaction, sign_work_transaction
from economy import (
    JobStatus, compute_gold_presentation, get_annotator, get_declared_models, get_job, get_job_status_name,
    get_open_tasks, get_task, get_worker_record, is_gold_task,
)
from inference.cards import compute_model_card
from inference.backends import LocalBackend, OpenAIBackend
from inference.engine import EngineSettings
from inference.exceptions import InferenceError
from inference.jobs import JobOutput, JobSpec
from inference.worker import Worker
from node.exceptions import NodeError
from p2p import BadRequest, P2PError

logger = logging.getLogger("node.duties")

METHOD_CHAT_STREAM = "chat_stream"
RESCAN_BLOCKS = 200  # on start-up, look this far back for work that may still be open
MAX_SESSIONS = 256
REGISTRATION_PATIENCE_BLOCKS = 10


class ChatUnavailable(P2PError):
    """This worker cannot take a chat job now (already streaming it, worker busy or stopping).

    A p2p error without penalty: the requester asked nothing wrong.
    """


def make_chat_item(tokens: list[int], texts: list[str], *, done: bool = False, finish_reason: str = "",
                   error: str = "", prompt_tokens: int = 0) -> list:
    """One item of a chat stream: [tokens, texts, done, finish_reason, error, prompt_tokens] (node.gateway checks them).

    The first item of a stream has no tokens: the worker accepted the job and is decoding.
    The last has done=True and either a finish reason ("stop", "length") with the rendered
    prompt's token count (for the API's usage), or an error.
    """
    return [tokens, texts, done, finish_reason, error, prompt_tokens]


class ChatSession:
    """The worker's side of one streamed job: whether it is done (serve_job waits for its output)."""

    def __init__(self, job_id: bytes, job: JobSpec) -> None:
        self.job_id = job_id
        self.job = job
        self.done = trio.Event()
        self.started_at = time.monotonic()


class Duties:
    def __init__(self, worker: Worker, *, serve_jobs: bool = True, attest: bool = True, annotate: bool = True,
                 start_worker: bool = True, verifiers: Sequence[Worker] = ()) -> None:
        self.worker = worker
        # More models this node holds, loaded only to audit jobs on them (`--verify-models`).
        self.verifiers = tuple(verifiers)
        self.start_worker = start_worker  # False: the worker runs elsewhere (shared by in-process nodes)
        self.serve_jobs, self.attest, self.annotate = serve_jobs, attest, annotate
        self.node = None
        self.jobs: dict[bytes, JobSpec] = {}
        self.tasks: dict[bytes, tuple[str, list[str]]] = {}
        self.outputs: dict[bytes, JobOutput] = {}
        self.sessions: dict[bytes, ChatSession] = {}
        self.done: set[tuple[str, bytes]] = set()  # (duty, id) already submitted
        self.in_flight: set[tuple[str, bytes]] = set()
        self.serving: dict[bytes, trio.CancelScope] = {}  # job id -> its serve duty, cancelled when the job moves on
        self.counters = {"jobs_served": 0, "tokens": 0, "attestations": 0, "annotations": 0, "failures": 0,
                         "jobs_cancelled": 0}
        self.registration_sent_at: int | None = None
        self.models_sent_at: int | None = None  # register_model / declare_models, resent after patience
        self.annotator_registration_sent_at: int | None = None
        self._wake = trio.Event()
        self._nursery: trio.Nursery | None = None

    def attach(self, node) -> None:
        """Called by the Node that runs these duties (chain, mempool, p2p, key, metrics)."""
        self.node = node
        node.importer.add_listener(self.on_block)

    @property
    def address(self) -> bytes:
        return self.node.address

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        # The model must outlive every duty: a verify/annotate thread still running when the
        # worker closes its model would crash the process. So the worker runs shielded and is
        # stopped only after the duties' nursery (which waits for their threads) has exited.
        async with trio.open_nursery() as outer:
            worker_scope = trio.CancelScope(shield=True)
            # One scope per instance (a scope is entered once), all cancelled together at the end.
            verifier_scopes = [trio.CancelScope(shield=True) for _ in self.verifiers]
            if self.start_worker:
                await outer.start(self.run_worker, worker_scope)
            for verifier, scope in zip(self.verifiers, verifier_scopes):
                await outer.start(self.run_verifier, verifier, scope)
            try:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    self.node.p2p.register_stream_handler(METHOD_CHAT_STREAM, self.stream_chat)
                    self.rescan_recent_blocks()
                    self.declare_models_if_needed()
                    self.register_worker_if_needed()
                    self.register_annotator_if_needed()
                    task_status.started()
                    await self.act_forever()
            finally:
                self._nursery = None
                worker_scope.cancel()
                for scope in verifier_scopes:
                    scope.cancel()

    async def run_worker(self, scope: trio.CancelScope, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await self.worker.run(task_status=task_status)

    async def run_verifier(self, verifier: Worker, scope: trio.CancelScope, *,
                           task_status=trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await verifier.run(task_status=task_status)

    def get_held_models(self) -> dict[bytes, Worker]:
        """sha256 -> the instance that verifies it: the served model's worker first, then the verifiers."""
        held = {verifier.model_sha256: verifier for verifier in self.verifiers}
        held[self.worker.model_sha256] = self.worker
        return held

    async def act_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            self.declare_models_if_needed()
            self.register_worker_if_needed()
            self.register_annotator_if_needed()
            self.start_due_duties()

    def rescan_recent_blocks(self) -> None:
        chain = self.node.chain
        for number in range(max(1, chain.height - RESCAN_BLOCKS + 1), chain.height + 1):
            self.remember_work(chain.get_block_by_number(number))
        self._wake.set()

    # --- following the chain ------------------------------------------------------------------

    def on_block(self, block: Block) -> None:
        self.remember_work(block)
        self._wake.set()

    def remember_work(self, block: Block) -> None:
        genesis = self.node.genesis
        for raw in block.transactions:
            tx = decode_transaction(raw, genesis.chain_id, genesis.params.max_payload_size)
            try:
                self.remember_transaction(tx)
            except (InferenceError, rlp.exceptions.RLPException) as error:
                # Valid for the chain but not servable here (e.g. more tokens than inference allows):
                # the job waits for another worker or expires.
                logger.info("work not servable here kind=%s tx=%s error=%s", tx.kind, tx.hash.hex()[:16], error)

    def remember_transaction(self, tx) -> None:
        if tx.kind == "inference_request":
            self.jobs[compute_work_id(tx.sender, tx.nonce)] = JobSpec.decode(tx.data)
        elif tx.kind == "annotation_task" and tx.sender != self.address:
            task = rlp.decode(tx.data, sedes=AnnotationTask)
            self.tasks[compute_work_id(tx.sender, tx.nonce)] = (
                task.content.decode("utf-8", "replace"), [label.decode("utf-8", "replace") for label in task.labels])

    def start_due_duties(self) -> None:
        state = self.node.chain.state
        self.cancel_moved_jobs(state)
        for job_id in list(self.jobs):
            record = get_job(state, job_id)
            if record is None or record.status not in JobStatus.OPEN:
                self.forget_job(job_id)
            elif record.status == JobStatus.ASSIGNED and record.worker == self.address and self.serve_jobs:
                self.start_duty("serve", job_id, self.serve_job)
            elif record.status == JobStatus.ATTESTING and self.attest and self.is_unattested_member(record):
                self.start_duty("attest", job_id, self.attest_job)
        open_tasks = set(get_open_tasks(state))
        for task_id in [t for t in self.tasks if t not in open_tasks]:
            del self.tasks[task_id]
        if self.annotate:
            for task_id in open_tasks:
                if self.is_drawn_and_unanswered(get_task(state, task_id)):
                    self.start_duty("annotate", task_id, self.annotate_task)

    def is_assigned_here(self, record) -> bool:
        return record is not None and record.status == JobStatus.ASSIGNED and record.worker == self.address

    def cancel_moved_jobs(self, state) -> None:
        """Stop decoding every job the head block shows is no longer ours (expired, reassigned, answered).

        Its deadline passed, so a result could only be refused: decoding on would
        take the model from the jobs still due here.
        """
        for job_id, scope in list(self.serving.items()):
            record = get_job(state, job_id)
            if not self.is_assigned_here(record) and not scope.cancel_called:
                scope.cancel()
                self.counters["jobs_cancelled"] += 1
                status = "unknown" if record is None else get_job_status_name(record.status)
                logger.info("cancelled job=%s status=%s: no longer assigned here", job_id.hex()[:16], status)

    def is_drawn_and_unanswered(self, record) -> bool:
        """The chain drew this node's account for the task, and it has not answered yet."""
        return (self.address in {seat.address for seat in record.annotators}
                and self.address not in {label.address for label in record.annotations})

    def is_unattested_member(self, record) -> bool:
        return (self.address in {seat.address for seat in record.committee}
                and self.address not in {score.address for score in record.attestations})

    def forget_job(self, job_id: bytes) -> None:
        self.jobs.pop(job_id, None)
        self.outputs.pop(job_id, None)
        self.sessions.pop(job_id, None)

    def start_duty(self, duty: str, work_id: bytes, perform) -> None:
        key = (duty, work_id)
        if key in self.done or key in self.in_flight:
            return
        self.in_flight.add(key)
        self._nursery.start_soon(self.perform_duty, key, perform)

    async def perform_duty(self, key: tuple[str, bytes], perform) -> None:
        try:
            await perform(key[1])
            self.done.add(key)
        except (InferenceError, ChainError, NodeError) as error:
            self.counters["failures"] += 1
            logger.warning("duty failed duty=%s id=%s error=%s", key[0], key[1].hex()[:16], error)
        except Exception:
            # A bug in one duty must not stop consensus or the other duties; it is logged with its trace.
            self.counters["failures"] += 1
            logger.exception("duty crashed duty=%s id=%s", key[0], key[1].hex()[:16])
        finally:
            self.in_flight.discard(key)

    # --- the duties ---------------------------------------------------------------------------

    def declare_models_if_needed(self) -> None:
        """Make the chain know every model held here (`register_model`) and, when auditing, that this node
        holds them (`declare_models`): committees for a model are drawn only among its holders."""
        state, rules = self.node.chain.state, self.node.chain.rules
        held = self.get_held_models()
        unknown = [worker for sha, worker in held.items() if rules.get_model_card(state, sha) is None]
        declared = sorted(get_declared_models(state, self.address))
        wanted = sorted(held) if self.attest else declared
        if not unknown and declared == wanted:
            return
        sent_at = self.models_sent_at
        if sent_at is not None and self.node.chain.height < sent_at + REGISTRATION_PATIENCE_BLOCKS:
            return
        try:
            for worker in unknown:
                self.submit("register_model", RegisterModel(*compute_model_card(worker.model)))
            if declared != wanted:
                self.submit("declare_models", DeclareModels(wanted))
        except (ChainError, NodeError) as error:
            logger.warning("model declaration not sent error=%s; retrying after the next block", error)
            return
        self.models_sent_at = self.node.chain.height

    def get_engine_description(self) -> bytes:
        """How the worker runs, as `register_worker` declares it (informational; `chain.payloads.MAX_ENGINE_SIZE`)."""
        described = self.worker.describe()
        keys = ("backend", "threads", "gpuLayers", "ctx", "batch")
        return " ".join(f"{key}={described[key]}" for key in keys if key in described).encode()[:MAX_ENGINE_SIZE]

    def register_worker_if_needed(self) -> None:
        record = get_worker_record(self.node.chain.state, self.address)
        engine = self.get_engine_description()
        if record is not None and record.model_sha256 == self.worker.model_sha256 and record.engine == engine:
            return
        sent_at = self.registration_sent_at
        if sent_at is not None and self.node.chain.height < sent_at + REGISTRATION_PATIENCE_BLOCKS:
            return  # sent; waiting for a block to include it (resent if it got lost)
        capacity = self.worker.capacity_tokens_per_second
        if capacity < 1:
            logger.warning("worker measured no decode capacity (machine overloaded?); declaring 1 token/s, "
                           "so the router will rarely pick it: declare one with --worker.capacity")
            capacity = 1
        try:
            self.submit("register_worker", RegisterWorker(self.worker.model_sha256, capacity, engine))
        except (ChainError, NodeError) as error:
            logger.warning("worker registration not sent error=%s; retrying after the next block", error)
            return
        self.registration_sent_at = self.node.chain.height

    def register_annotator_if_needed(self) -> None:
        """Offer this node's model as an annotator (only with annotating on); the chain draws its tasks."""
        if not self.annotate or get_annotator(self.node.chain.state, self.address) is not None:
            return
        sent_at = self.annotator_registration_sent_at
        if sent_at is not None and self.node.chain.height < sent_at + REGISTRATION_PATIENCE_BLOCKS:
            return
        operator = b"model:" + self.worker.model_sha256.hex().encode()
        try:
            self.submit("register_annotator", RegisterAnnotator(operator))
        except (ChainError, NodeError) as error:
            logger.warning("annotator registration not sent error=%s; retrying after the next block", error)
            return
        self.annotator_registration_sent_at = self.node.chain.height

    def get_task_content(self, task_id: bytes) -> tuple[str, list[str]]:
        """A task's content and labels: a posted task's from its transaction, a gold task's from the genesis."""
        record = get_task(self.node.chain.state, task_id)
        if record is not None and is_gold_task(record):
            content, labels, _ = compute_gold_presentation(self.node.genesis.gold_tasks[record.gold - 1], task_id)
            return content.decode("utf-8", "replace"), [label.decode("utf-8", "replace") for label in labels]
        if task_id not in self.tasks:
            raise NodeError(f"content of task 0x{task_id.hex()} not seen (older than the rescan window)")
        return self.tasks[task_id]

    async def serve_job(self, job_id: bytes) -> None:
        """Decode (or reuse the streamed output) and post the result, unless the job moves on meanwhile."""
        with trio.CancelScope() as scope:
            self.serving[job_id] = scope
            try:
                output = await self.get_output(job_id)
            except InferenceError:
                if not scope.cancel_called:
                    raise
            finally:
                del self.serving[job_id]
        if scope.cancel_called or not self.is_assigned_here(get_job(self.node.chain.state, job_id)):
            return  # expired or reassigned: a result would only be refused
        self.submit("inference_result", InferenceResult(job_id, list(output.tokens)))
        self.counters["jobs_served"] += 1
        self.node.metrics.jobs_served.inc()

    async def get_output(self, job_id: bytes) -> JobOutput:
        output = self.outputs.get(job_id)
        if output is None:
            session = self.sessions.get(job_id)
            if session is not None:
                await session.done.wait()
                output = self.outputs.get(job_id)
        if output is None:
            output = await self.compute(job_id, self.jobs[job_id])
        return output

    async def compute(self, job_id: bytes, job: JobSpec) -> JobOutput:
        started = time.perf_counter()
        output = await self.worker.complete(job)
        self.record_output(job_id, output, time.perf_counter() - started)
        return output

    def record_output(self, job_id: bytes, output: JobOutput, seconds: float) -> None:
        self.outputs[job_id] = output
        self.counters["tokens"] += len(output.tokens)
        self.node.metrics.tokens.inc(len(output.tokens))
        if seconds > 0:
            self.node.metrics.tokens_per_second.set(len(output.tokens) / seconds)

    async def attest_job(self, job_id: bytes) -> None:
        record = get_job(self.node.chain.state, job_id)
        _block, _index, raw = self.node.chain.get_transaction(record.result_tx)
        genesis = self.node.genesis
        result = rlp.decode(decode_transaction(raw, genesis.chain_id, genesis.params.max_payload_size).data,
                            sedes=InferenceResult)
        verifier = self.get_held_models().get(record.model_sha256)
        if verifier is None:
            # Seated while holding the model, and no longer holding it: a score of 0 would convict an honest
            # worker, so no attestation at all (the committee may then fall short and leave it unverified).
            raise NodeError(f"model 0x{record.model_sha256.hex()[:16]} is not held here; not attesting")
        verdict = await verifier.verify(self.jobs[job_id], list(result.output_tokens))
        self.submit("attestation", Attestation(job_id, verdict.score_ppm))
        self.counters["attestations"] += 1
        self.node.metrics.attestations.inc()
        logger.info("attested job=%s score_ppm=%d", job_id.hex()[:16], verdict.score_ppm)

    async def annotate_task(self, task_id: bytes) -> None:
        content, labels = self.get_task_content(task_id)
        annotation = await self.worker.annotate(content, labels)
        self.submit("annotation", Annotation(task_id, annotation.label_index))
        self.counters["annotations"] += 1
        self.node.metrics.annotations.inc()

    def submit(self, kind: str, payload: rlp.Serializable) -> bytes:
        """Sign with the node key at the next pending nonce, add to the mempool and gossip it."""
        node = self.node
        raw = sign_work_transaction(node.key, chain_id=node.genesis.chain_id,
                                    nonce=node.mempool.get_pending_nonce(self.address), kind=kind,
                                    data=rlp.encode(payload), gas=1_000_000)
        tx_hash = node.submit_transaction(raw)
        logger.info("submitted %s tx=%s", kind, tx_hash.hex()[:16])
        return tx_hash

    # --- chat streaming for the gateway (worker side) -------------------------------------

    async def stream_chat(self, node_id: bytes, params: Any) -> AsyncIterator[list]:
        """[raw inference_request tx] -> chat items (`make_chat_item`) as the job decodes.

        Decoding starts at once (the chain records the request meanwhile) and
        stops if the requester leaves: closing this generator cancels the job.
        A finished output is kept for when the chain assigns the job here.
        """
        job_id, job = self.validate_chat_request(params)
        session = self.open_session(job_id, job)
        started = time.perf_counter()
        try:
            async with self.worker.generate(job) as stream:
                yield make_chat_item([], [])  # accepted: the requester may answer its client now
                async for piece in stream:
                    pieces = [piece] + stream.take_ready()  # batch what decoded while we were sending
                    yield make_chat_item([p.token for p in pieces], [p.text for p in pieces])
            self.record_output(job_id, stream.output, time.perf_counter() - started)
            yield make_chat_item([], [], done=True, finish_reason=stream.output.finish_reason,
                                 prompt_tokens=stream.output.prompt_tokens)
        except InferenceError as error:
            # Refused (queue full, stopping) or failed mid-way: the requester gets the reason.
            yield make_chat_item([], [], done=True, error=str(error))
        finally:
            session.done.set()

    def open_session(self, job_id: bytes, job: JobSpec) -> ChatSession:
        running = self.sessions.get(job_id)
        if running is not None and not running.done.is_set():
            raise ChatUnavailable(f"job 0x{job_id.hex()} is already streaming here")
        if len(self.sessions) >= MAX_SESSIONS:
            self.drop_oldest_session()
        session = self.sessions[job_id] = ChatSession(job_id, job)
        self.jobs.setdefault(job_id, job)
        return session

    def validate_chat_request(self, params: Any) -> tuple[bytes, JobSpec]:
        if not (isinstance(params, list) and len(params) == 1 and isinstance(params[0], bytes)):
            raise BadRequest("chat_stream params must be [raw_tx]", got=type(params).__name__, expected="[bytes]")
        genesis = self.node.genesis
        try:
            tx = decode_transaction(params[0], genesis.chain_id, genesis.params.max_payload_size)
            job = JobSpec.decode(tx.data)
        except (ChainError, InferenceError) as error:
            raise BadRequest(f"not a signed inference request: {error}", got=None, expected="inference_request tx")
        if tx.kind != "inference_request":
            raise BadRequest("not an inference request", got=tx.kind, expected="inference_request")
        if job.model_sha256 != self.worker.model_sha256:
            raise BadRequest("model not served here", got=job.model_sha256.hex(), expected=self.worker.model_sha256.hex())
        return compute_work_id(tx.sender, tx.nonce), job

    def drop_oldest_session(self) -> None:
        oldest = min(self.sessions.values(), key=lambda s: s.started_at)
        del self.sessions[oldest.job_id]

    def get_status(self) -> dict:
        statistics = self.worker.statistics()
        return {
            "workerModel": "0x" + statistics.model_sha256.hex(),
            "workerCapacity": statistics.capacity_tokens_per_second,
            "workerQueue": statistics.queue_depth,
            "workerBusySeconds": round(statistics.busy_seconds, 3),
            "workerBackend": self.worker.describe(),  # backend kind, url, model name and engine settings
            **{f"duty_{name}": value for name, value in self.counters.items()},
        }


def make_duties(model: str | None = None, *, n_threads: int | None = None,
                declared_capacity: int | None = None, verify_models: Sequence[str] = (),
                engine: EngineSettings | None = None, backend: LocalBackend | OpenAIBackend | None = None) -> Duties:
    """`engine`: the llama.cpp settings of every local model; `backend`: where the worker generates (local by default)."""
    verifiers = [Worker(path, settings=engine, n_threads=n_threads, measure_capacity=False) for path in verify_models]
    return Duties(Worker(model, settings=engine, n_threads=n_threads, declared_capacity=declared_capacity,
                         backend=backend), verifiers=verifiers)
