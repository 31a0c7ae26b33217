"""The inference gateway: the network's front door for chat jobs (`node.abc.InferenceGatewayAPI`).

A chat request becomes a signed `inference_request` transaction from this
node's key (so it is recorded on chain as a job, then audited and rewarded
like any other). The worker is the one the chain will assign: the gateway
applies the mempool's pending transactions (what the next block will hold:
other requests, results that free capacity, registrations) and then the new
request to a scratch copy of the head state, so the economy routes it with
`consensus.router` exactly as it will at inclusion, and reads the
assignment. (It can still differ if the request misses the next block and
that block's end-of-block duties move loads; the chain's record is then
authoritative and its assigned worker serves the job.) The completion is
streamed from that worker over p2p: `chat_start` hands it the signed
request, then `chat_next` long-polls for the tokens decoded so far.
"""
from __future__ import annotations

import logging
from typing import AsyncIterator, Sequence

from eth_utils import keccak

from chain.abc import BlockContext
from chain.blocks import ZERO_ADDRESS
from chain.exceptions import TransactionError
from chain.payloads import compute_work_id
from chain.state import State
from chain.transactions import decode_transaction, sign_work_transaction
from chain.transition import apply_transaction
from consensus.economy import JobStatus, get_job, get_registered_workers, get_worker_record
from inference.exceptions import InferenceError
from inference.jobs import JobSpec
from node.abc import ChatChunk, ChatJob, InferenceGatewayAPI
from node.consensus_service import now_ms
from node.duties import METHOD_CHAT_NEXT, METHOD_CHAT_START
from node.exceptions import GatewayError, NoWorkerAvailable, WorkerUnreachable
from p2p import P2PError

logger = logging.getLogger("node.gateway")

CHAT_REQUEST_TIMEOUT = 30.0
MAX_SIMULATED_TXS = 1000  # at most one block's worth of pending transactions is replayed to predict the worker


def get_peer_address(node_id: bytes) -> bytes:
    """The account address of a peer whose p2p identity is its secp256k1 key (64-byte public key)."""
    return keccak(node_id)[12:]


class InferenceGateway(InferenceGatewayAPI):
    def __init__(self, node) -> None:
        self.node = node

    # --- InferenceGatewayAPI ------------------------------------------------------------------

    def get_models(self) -> Sequence[bytes]:
        state = self.node.chain.state
        models = []
        for address in get_registered_workers(state):
            model = get_worker_record(state, address).model_sha256
            if model not in models:
                models.append(model)
        return models

    async def submit_chat(self, messages: Sequence[tuple[str, str]], max_tokens: int,
                          model_sha256: bytes | None = None) -> ChatJob:
        model = model_sha256 if model_sha256 is not None else self.get_default_model()
        try:
            job = JobSpec.from_chat(messages, model, max_tokens)
        except InferenceError as error:
            raise GatewayError(f"invalid chat request: {error}", got=None, expected="a valid job") from None
        raw, job_id = self.sign_request(job)
        worker = self.route_job(job_id, raw)
        tx_hash = self.node.submit_transaction(raw)
        call = self.get_caller(worker)
        await self.start_stream(call, raw)
        logger.info("chat job=%s worker=%s tx=%s", job_id.hex()[:16], worker.hex(), tx_hash.hex()[:16])
        return ChatJob(job_id, tx_hash, worker, model, self.iter_chunks(call, job_id))

    # --- steps ------------------------------------------------------------------------------

    def get_default_model(self) -> bytes:
        models = self.get_models()
        if not models:
            raise NoWorkerAvailable("no registered worker serves any model", got=0, expected=">= 1 worker")
        return models[0]

    def sign_request(self, job: JobSpec) -> tuple[bytes, bytes]:
        node = self.node
        nonce = node.mempool.get_pending_nonce(node.address)
        raw = sign_work_transaction(node.key, chain_id=node.genesis.chain_id, nonce=nonce, kind="inference_request",
                                    data=job.encode(), gas=1_000_000)
        return raw, compute_work_id(node.address, nonce)

    def route_job(self, job_id: bytes, raw: bytes) -> bytes:
        """The worker the chain will assign: the request applied after the pending txs, on the head state."""
        chain = self.node.chain
        state = chain.scratch_state()
        context = BlockContext(number=chain.height + 1, timestamp_ms=max(now_ms(), chain.head.timestamp_ms + 1),
                               proposer=ZERO_ADDRESS, parent_hash=chain.head.hash)
        pending = [raw_tx for raw_tx in self.node.mempool.select(MAX_SIMULATED_TXS) if raw_tx != raw] + [raw]
        for index, raw_tx in enumerate(pending):
            self.apply_pending(state, context, raw_tx, index)
        record = get_job(state, job_id)
        if record is None or record.status != JobStatus.ASSIGNED:
            raise NoWorkerAvailable("no eligible worker has room for this job", got=job_id,
                                    expected="a registered worker for this model with spare capacity")
        return record.worker

    def apply_pending(self, state: State, context: BlockContext, raw_tx: bytes, index: int) -> None:
        genesis = self.node.genesis
        checkpoint = state.snapshot()
        try:
            tx = decode_transaction(raw_tx, genesis.chain_id, genesis.params.max_payload_size)
            apply_transaction(state, context, tx, index, genesis, self.node.chain.rules)
        except TransactionError:
            state.revert(checkpoint)  # the builder would leave it out too

    def get_caller(self, worker: bytes):
        """An async (method, params) -> result that reaches the worker: over p2p, or in-process if it is us."""
        node = self.node
        if worker == node.address and node.duties is not None:
            handlers = {METHOD_CHAT_START: node.duties.serve_chat_start, METHOD_CHAT_NEXT: node.duties.serve_chat_next}
            return lambda method, params: handlers[method](node.p2p.node_id, params)
        for peer in node.p2p.get_peers():
            if get_peer_address(peer.node_id) == worker:
                return lambda method, params: node.p2p.request(peer.node_id, method, params,
                                                               timeout=CHAT_REQUEST_TIMEOUT)
        raise WorkerUnreachable("the assigned worker is not a connected peer", got=worker, expected="a peer")

    async def start_stream(self, call, raw: bytes) -> None:
        try:
            await call(METHOD_CHAT_START, [raw])
        except P2PError as error:
            raise WorkerUnreachable(f"worker refused the job: {error}", got=None, expected="a started stream") from None

    async def iter_chunks(self, call, job_id: bytes) -> AsyncIterator[ChatChunk]:
        offset = 0
        while True:
            try:
                tokens, texts, done, _finish_reason, error = await call(METHOD_CHAT_NEXT, [job_id, offset])
            except (P2PError, ValueError, TypeError) as failure:
                raise WorkerUnreachable(f"stream broke: {failure}", got=offset, expected="more tokens") from None
            for token, text in zip(tokens, texts):
                yield ChatChunk(text, (token,))
            offset += len(tokens)
            if done:
                if error:
                    raise WorkerUnreachable(f"worker failed the job: {error}", got=offset, expected="an output")
                return
