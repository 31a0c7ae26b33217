"""The inference gateway: the network's front door for chat jobs (`node.abc.InferenceGatewayAPI`).

A chat request becomes a signed `inference_request` transaction from this
node's key (so it is recorded on chain as a job, then audited and rewarded
like any other). The worker that serves the client is the one the chain
assigns, read from the job's record once a block holds the request; the
gateway does not wait for that block to start, though. It predicts the
assignment first (the mempool's pending transactions, then the new request,
applied to a scratch copy of the head state, routed by `economy.router` as at
inclusion) and starts that worker at once, so the prompt is processed and the
first tokens decoded while the request waits for its block. When the block
comes, the chain's record decides: the same worker (the usual case) keeps its
stream; another one (the pending set or the loads moved between prediction
and inclusion) replaces it, and the speculative decode is cancelled (a guessed
worker that refuses or cannot be reached is replaced the same way). So the
response always names the chain's worker, and the added latency is the wait
for the block minus the decoding already done meanwhile. That wait is short:
a proposer that sees a request arrive builds 50 ms into the height rather than
at the block interval (`node.consensus_driver.REQUEST_BUILD_DELAY`).

The completion is pushed by that worker: the gateway opens a p2p stream
(`chat_stream` with the signed request) and the worker starts decoding at
once, sending the tokens as they come, so each reaches the gateway one hop
after it is decoded; when the worker is this node, its duties' generator is
read directly. The request enters this node's mempool before the worker is
asked (a refused transaction never starts a job) and is gossiped once the
worker has accepted, so that checking it does not delay the worker's start. The first item is the worker's acceptance (so a refusal is an
error before anything is answered to the client), the last says done with the
worker's own finish reason and the rendered prompt's token count, or an error.
Every item is checked (`parse_chat_item`); a
worker that sends junk is penalised on p2p and the stream ends with
`InvalidStreamItem`; a worker that disconnects ends it with `WorkerUnreachable`;
a worker that reports an error ends it with `WorkerFailed`, whose text (the
worker's, so outside input) is capped before any client sees it.
Leaving the stream early cancels the job at the worker.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import trio
from eth_utils import keccak

from chain.abc import BlockContext
from chain.blocks import ZERO_ADDRESS
from chain.builder import simulate_transactions
from chain.payloads import compute_work_id
from chain.transactions import sign_work_transaction
from economy import (
    JobStatus,
    get_job,
    get_registered_workers,
    get_waiting_job_count,
    get_worker_record,
    validate_waiting_room,
)
from genesis import ModelCard
from inference.exceptions import InferenceError
from inference.jobs import JobSpec
from node.abc import ChatChunk, ChatJob, InferenceGatewayAPI
from node.consensus_blocks import now_ms
from node.duties import METHOD_CHAT_STREAM
from node.exceptions import GatewayError, NoWorkerAvailable, WorkerUnreachable
from p2p import P2PError, Topic
from primitives.errors import compute_text_excerpt

logger = logging.getLogger("node.gateway")

# The longest a worker may stay silent: waiting for its model (other jobs first), or between tokens.
CHAT_ITEM_TIMEOUT = 120.0
# The longest the gateway waits for a block to hold the request and assign it (the client waits meanwhile).
ASSIGNMENT_TIMEOUT = 60.0
MAX_SIMULATED_TXS = 1000  # at most one block's worth of pending transactions is replayed to predict the worker
MAX_ITEM_TEXT = 1024  # characters of text one token can complete
PENALTY_BAD_STREAM = 25  # as p2p's penalty for an invalid message: four and the worker is banned
FINISH_REASONS = ("stop", "length")
MAX_WORKER_ERROR = 200  # characters of a worker's error text passed on to a client (the rest is cut, size told)
MAX_PROMPT_TOKENS = 1 << 20  # far above any context a worker can hold: a count beyond it is junk


class InvalidStreamItem(GatewayError):
    """A worker's chat stream sent an item that breaks the stream's format or bounds."""


class WorkerRefused(WorkerUnreachable):
    """The worker answered the job's stream with an error instead of accepting it (queue full, stopping...)."""


class WorkerFailed(GatewayError):
    """The worker accepted the job and then reported an error instead of finishing it."""


class AssignmentTimeout(NoWorkerAvailable):
    """No block assigned the request to a worker in time (not included, or queued for capacity)."""


class ChatItem(NamedTuple):
    tokens: tuple[int, ...]
    texts: tuple[str, ...]
    done: bool
    finish_reason: str
    error: str  # the worker's text, already capped to MAX_WORKER_ERROR characters
    prompt_tokens: int  # on the final item: the rendered prompt's token count, as the worker tokenised it


def get_peer_address(node_id: bytes) -> bytes:
    """The account address of a peer whose p2p identity is its secp256k1 key (64-byte public key)."""
    return keccak(node_id)[12:]


class InferenceGateway(InferenceGatewayAPI):
    def __init__(self, node) -> None:
        self.node = node
        self.head_changed = trio.Event()  # set, and replaced, on every imported block
        self.counters = {"chat_jobs": 0, "worker_switched": 0}  # switched: the chain assigned another worker
        node.importer.add_listener(self.on_block)

    def on_block(self, _block) -> None:
        self.head_changed.set()
        self.head_changed = trio.Event()

    # --- InferenceGatewayAPI ------------------------------------------------------------------

    def get_models(self) -> Sequence[ModelCard]:
        state = self.node.chain.state
        served = {get_worker_record(state, address).model_sha256 for address in get_registered_workers(state)}
        return [card for card in self.node.chain.rules.get_known_models(state) if card.sha256 in served]

    async def submit_chat(self, messages: Sequence[tuple[str, str]], max_tokens: int,
                          model_sha256: bytes | None = None) -> ChatJob:
        started = time.perf_counter()
        model = model_sha256 if model_sha256 is not None else self.get_default_model()
        try:
            job = JobSpec.from_chat(messages, model, max_tokens)
        except InferenceError as error:
            raise GatewayError(f"invalid chat request: {error}", got=None, expected="a valid job") from None
        # The chain's own refusal of an unknown or unauditable model, said before anything is signed.
        self.node.chain.rules.validate_request_model(self.node.chain.state, self.node.address, model, max_tokens)
        raw, job_id = self.sign_request(job)
        predicted = self.route_job(job_id, raw)
        tx_hash = self.node.mempool.add(raw)  # checked, and its nonce taken, before the worker starts
        stream = None
        try:
            stream = await self.start_stream(predicted, raw, job_id, max_tokens)
        except WorkerUnreachable as error:
            # Only the guess failed: the request is on its way to a block, whose worker may well serve it.
            logger.info("chat job=%s predicted worker %s failed: %s", job_id.hex()[:16], predicted.hex(), error)
        finally:
            # Gossiped once the worker has started decoding, so that the peers' (and the worker's
            # own) checks of the transaction do not stand between the request and the worker.
            self.node.p2p.publish(Topic.TRANSACTIONS, raw)
        accepted_ms = (time.perf_counter() - started) * 1000
        try:
            worker = await self.wait_for_assignment(job_id)
            if stream is None or worker != predicted:
                # The chain's record is authoritative: its worker serves the client, the guess stops decoding.
                self.counters["worker_switched"] += worker != predicted
                if stream is not None:
                    await stream.aclose()
                stream = None
                stream = await self.start_stream(worker, raw, job_id, max_tokens)
        except BaseException:
            if stream is not None:
                await stream.aclose()
            raise
        self.counters["chat_jobs"] += 1
        logger.info("chat job=%s worker=%s predicted=%s tx=%s accepted_ms=%.1f assigned_ms=%.1f",
                    job_id.hex()[:16], worker.hex(), predicted.hex(), tx_hash.hex()[:16], accepted_ms,
                    (time.perf_counter() - started) * 1000)
        return ChatJob(job_id, tx_hash, worker, model, stream)

    # --- steps ------------------------------------------------------------------------------

    def get_default_model(self) -> bytes:
        models = self.get_models()
        if not models:
            raise NoWorkerAvailable("no registered worker serves any model", got=0, expected=">= 1 worker")
        return models[0].sha256

    def sign_request(self, job: JobSpec) -> tuple[bytes, bytes]:
        node = self.node
        nonce = node.mempool.get_pending_nonce(node.address)
        raw = sign_work_transaction(node.key, chain_id=node.genesis.chain_id, nonce=nonce, kind="inference_request",
                                    data=job.encode(), gas=1_000_000)
        return raw, compute_work_id(node.address, nonce)

    def route_job(self, job_id: bytes, raw: bytes) -> bytes:
        """The worker the chain will most likely assign: the request applied after the pending txs, on the head
        state (a guess to start decoding early; `wait_for_assignment` reads the chain's answer)."""
        chain = self.node.chain
        state = chain.scratch_state()
        context = BlockContext(number=chain.height + 1, timestamp_ms=max(now_ms(), chain.head.timestamp_ms + 1),
                               proposer=ZERO_ADDRESS, parent_hash=chain.head.hash)
        pending = [raw_tx for raw_tx in self.node.mempool.select(MAX_SIMULATED_TXS) if raw_tx != raw] + [raw]
        # Without the block's caps: the request is routed as if it made the next block even when it waits.
        simulate_transactions(state, context, pending, self.node.genesis, chain.rules, block_limits=False)
        record = get_job(state, job_id)
        if record is None or record.status != JobStatus.ASSIGNED:
            # A chat job is served now or not at all: one that would wait for capacity is refused, never queued.
            waiting = get_waiting_job_count(state) - (record is not None)
            validate_waiting_room(waiting, chain.rules.params)  # the chain's own rule, on what the chain would hold
            raise NoWorkerAvailable(f"no eligible worker has room for this job now ({waiting} jobs waiting for "
                                    "capacity); retry later", got=job_id,
                                    expected="a registered worker for this model with spare capacity")
        return record.worker

    async def wait_for_assignment(self, job_id: bytes) -> bytes:
        """The worker the chain assigned the job to, read from the first head whose state has one."""
        record = None
        with trio.move_on_after(ASSIGNMENT_TIMEOUT):
            while True:
                head_changed = self.head_changed  # taken before reading, so no block can slip between
                record = get_job(self.node.chain.state, job_id)
                if record is not None and record.worker:
                    return record.worker
                if record is not None and record.status not in JobStatus.OPEN:
                    raise NoWorkerAvailable("the job closed on chain before any worker was assigned",
                                            got=record.status, expected="an assigned job")
                await head_changed.wait()
        if record is None:
            raise AssignmentTimeout(f"no block included the request within {ASSIGNMENT_TIMEOUT:.0f} s",
                                    got=job_id, expected="an included inference_request")
        raise AssignmentTimeout(f"the chain queued the job for capacity (no worker had room when a block "
                                f"included it) and assigned nobody within {ASSIGNMENT_TIMEOUT:.0f} s; it waits "
                                "on chain", got=job_id, expected="an assigned job")

    async def start_stream(self, worker: bytes, raw: bytes, job_id: bytes, max_tokens: int) -> ChatStream:
        """Open the job's stream at `worker` and wait for its acceptance (a refusal raises WorkerRefused)."""
        stream = await self.open_stream(worker, raw, job_id, max_tokens)
        try:
            await stream.wait_accepted()
        except BaseException:
            await stream.aclose()
            raise
        return stream

    async def open_stream(self, worker: bytes, raw: bytes, job_id: bytes, max_tokens: int) -> ChatStream:
        """Start the job at the worker: over p2p, or in-process if it is us."""
        node = self.node
        if worker == node.address and node.duties is not None:
            return ChatStream(self, node.duties.stream_chat(node.p2p.node_id, [raw]), None, job_id, max_tokens)
        peer_id = self.get_worker_peer(worker)
        try:
            # Items: the acceptance, at most one per token, the end.
            items = await node.p2p.open_stream(peer_id, METHOD_CHAT_STREAM, [raw], max_items=max_tokens + 2,
                                               item_timeout=CHAT_ITEM_TIMEOUT)
        except P2PError as error:
            raise WorkerUnreachable(f"could not reach the worker: {error}", got=worker.hex(),
                                    expected="a connected worker") from None
        return ChatStream(self, items, peer_id, job_id, max_tokens)

    def get_worker_peer(self, worker: bytes) -> bytes:
        for peer in self.node.p2p.get_peers():
            if get_peer_address(peer.node_id) == worker:
                return peer.node_id
        raise WorkerUnreachable("the assigned worker is not a connected peer", got=worker.hex(), expected="a peer")

    def on_bad_stream(self, peer_id: bytes | None, error: InvalidStreamItem) -> None:
        if peer_id is not None:
            self.node.p2p.apply_penalty(peer_id, PENALTY_BAD_STREAM, f"chat stream: {error}")


class ChatStream:
    """One job's completion from its worker, as ChatChunks: an async iterator with `aclose()`.

    It reads a p2p ResponseStream, or the duties' generator when the worker is
    this node, and checks every item as it comes. Closing it, even before the
    first chunk was read, cancels the job at the worker if it is still decoding.
    """

    def __init__(self, gateway: InferenceGateway, items, peer_id: bytes | None, job_id: bytes,
                 max_tokens: int) -> None:
        self.gateway = gateway
        self.items = items
        self.peer_id = peer_id
        self.job_id = job_id
        self.max_tokens = max_tokens
        self.token_count = 0
        self.pending: ChatItem | None = None  # the first item, when it already carried tokens
        self.done = False  # the worker's final item has arrived
        self.finished = False  # the final chunk has been handed out

    async def wait_accepted(self) -> None:
        """The worker's first item: it took the job, or refused it (WorkerUnreachable)."""
        item = await self.receive()
        if item is None:
            raise WorkerUnreachable("the worker ended the stream without an answer", got=None,
                                    expected="an acceptance")
        if item.error:
            raise WorkerRefused(f"worker refused the job: {item.error}", got=None, expected="an acceptance")
        if item.tokens or item.done:
            self.pending = item

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        """The next tokens; the last chunk carries the worker's finish reason and prompt token count."""
        while True:
            item, self.pending = self.pending, None
            if item is None:
                if self.finished:
                    raise StopAsyncIteration
                item = await self.receive()
            if item is None:
                await self.aclose()
                raise WorkerUnreachable("the worker's stream ended before the job did", got=self.token_count,
                                        expected="a final item")
            if item.error:
                raise WorkerFailed(f"worker failed the job: {item.error}", got=self.token_count,
                                   expected="an output")
            if item.done:
                self.finished = True
                return ChatChunk("".join(item.texts), item.tokens, item.finish_reason, item.prompt_tokens)
            if item.tokens:
                return ChatChunk("".join(item.texts), item.tokens)

    async def receive(self) -> ChatItem | None:
        """The next checked item, None at the end of the stream."""
        try:
            raw_item = await self.items.__anext__()
        except StopAsyncIteration:
            return None
        except P2PError as error:
            raise WorkerUnreachable(f"stream broke: {error}", got=self.token_count, expected="more tokens") from None
        try:
            item = parse_chat_item(raw_item, self.token_count, self.max_tokens, self.done)
        except InvalidStreamItem as error:
            self.gateway.on_bad_stream(self.peer_id, error)
            await self.aclose()
            raise
        self.token_count += len(item.tokens)
        self.done = item.done
        return item

    async def aclose(self) -> None:
        """Stop reading; a job still decoding is cancelled at the worker."""
        await self.items.aclose()


def parse_chat_item(item: Any, token_count: int, max_tokens: int, after_done: bool) -> ChatItem:
    """A chat stream item (`node.duties.make_chat_item`), checked against the stream so far."""
    if after_done:
        raise InvalidStreamItem("item after the final one", got=type(item).__name__, expected="the end of the stream")
    if not (isinstance(item, list) and len(item) == 6):
        raise InvalidStreamItem("item is not [tokens, texts, done, finish_reason, error, prompt_tokens]",
                                got=repr(item)[:80], expected="a list of 6")
    tokens, texts, done, finish_reason, error, prompt_tokens = item
    if not (isinstance(tokens, list) and all(type(t) is int and 0 <= t < 2**32 for t in tokens)):
        raise InvalidStreamItem("tokens are not a list of token ids", got=repr(tokens)[:80], expected="[uint32, ...]")
    if not (isinstance(texts, list) and len(texts) == len(tokens)
            and all(isinstance(t, str) and len(t) <= MAX_ITEM_TEXT for t in texts)):
        raise InvalidStreamItem("texts do not match the tokens", got=repr(texts)[:80],
                                expected=f"{len(tokens)} strings of <= {MAX_ITEM_TEXT} characters")
    if token_count + len(tokens) > max_tokens:
        raise InvalidStreamItem("more tokens than the job allows", got=token_count + len(tokens),
                                expected=f"<= {max_tokens}")
    if type(done) is not bool or not isinstance(finish_reason, str) or not isinstance(error, str):
        raise InvalidStreamItem("done, finish_reason or error has the wrong type",
                                got=[type(v).__name__ for v in (done, finish_reason, error)],
                                expected="[bool, str, str]")
    if done and not error and finish_reason not in FINISH_REASONS:
        raise InvalidStreamItem("a finished stream needs a finish reason or an error", got=finish_reason,
                                expected=FINISH_REASONS)
    if not done and (finish_reason or error):
        raise InvalidStreamItem("finish reason or error before the end", got=[finish_reason, error[:80]],
                                expected=["", ""])
    validate_prompt_tokens(prompt_tokens, done and not error)
    # The worker's words reach API clients: capped here, once, whatever the worker sent.
    return ChatItem(tuple(tokens), tuple(texts), done, finish_reason, compute_text_excerpt(error, MAX_WORKER_ERROR),
                    prompt_tokens)


def validate_prompt_tokens(prompt_tokens: Any, is_final: bool) -> None:
    """Only a finished stream's last item counts the prompt: at least one token, within any context."""
    if type(prompt_tokens) is not int:
        raise InvalidStreamItem("prompt_tokens is not an integer", got=type(prompt_tokens).__name__, expected="int")
    expected = range(1, MAX_PROMPT_TOKENS + 1) if is_final else range(1)
    if prompt_tokens not in expected:
        raise InvalidStreamItem("prompt_tokens out of range", got=prompt_tokens,
                                expected=f"1..{MAX_PROMPT_TOKENS} on the final item, 0 before")
