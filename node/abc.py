"""Interfaces of the node-assembly package, in one place.

The JSON-RPC server, the OpenAI-compatible API, the devnet and the light client
depend on these, not on the concrete services behind them, so each can be built
and tested against a node assembled in-process.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple

from chain.chain import Chain
from genesis import Genesis, ModelCard


class SyncStatus(NamedTuple):
    starting_block: int
    current_block: int
    highest_block: int


class PendingTx(NamedTuple):
    tx_hash: bytes
    sender: bytes
    nonce: int
    raw: bytes


class MempoolAPI(ABC):
    """Bounded pool of validated transactions with per-account limits and eviction."""

    @abstractmethod
    def add(self, raw_tx: bytes) -> bytes:
        """Validate against the head state and add; return the tx hash.

        Raises a `chain.exceptions` error (or `node.exceptions.MempoolError`) that
        says what was wrong; the RPC layer maps it to a JSON-RPC error.
        """

    @abstractmethod
    def get(self, tx_hash: bytes) -> PendingTx | None: ...

    @abstractmethod
    def get_pending_nonce(self, address: bytes) -> int:
        """The next nonce for `address` counting its pending transactions."""

    @abstractmethod
    def select(self, max_txs: int) -> Sequence[bytes]:
        """Raw transactions for the next block, in nonce order per sender."""

    @abstractmethod
    def on_block(self, included_tx_hashes: Sequence[bytes]) -> None:
        """Drop included and now-invalid transactions after a block is imported."""

    @abstractmethod
    def statistics(self) -> dict: ...


class ChatChunk(NamedTuple):
    text: str
    token_ids: tuple[int, ...]
    # Set on the stream's last chunk only (which may carry no tokens), from the worker's own end state:
    # "stop" (it emitted end-of-generation, counted in the tokens) or "length" (max_tokens reached),
    # and the rendered prompt's token count as the worker tokenised it (the API's usage).
    finish_reason: str = ""
    prompt_tokens: int = 0


class ChatJob(NamedTuple):
    """A chat job accepted by the network: its on-chain id and the worker the chain assigned it to."""

    job_id: bytes
    request_tx_hash: bytes
    worker: bytes
    model_sha256: bytes
    # The streamed completion, ends when the worker is done. A consumer that stops early calls its
    # `aclose()` (when it has one, as the gateway's does): the worker then stops decoding at once.
    chunks: AsyncIterator[ChatChunk]


class InferenceGatewayAPI(ABC):
    """The network's front door for inference (used by /v1/chat/completions and p2p_inference)."""

    @abstractmethod
    def get_models(self) -> Sequence[ModelCard]:
        """The cards (`genesis.ModelCard`) of every known model some registered worker serves."""

    @abstractmethod
    async def submit_chat(self, messages: Sequence[tuple[str, str]], max_tokens: int,
                          model_sha256: bytes | None = None) -> ChatJob:
        """Record the request on chain (a signed inference_request tx), route it with
        `economy.router` as the chain does, and stream the assigned worker's output."""


class NodeAPI(ABC):
    """What the RPC layer and tools see of a running node."""

    genesis: Genesis
    chain: Chain
    mempool: MempoolAPI
    inference: InferenceGatewayAPI | None  # None on a node that serves no API jobs

    @abstractmethod
    def submit_transaction(self, raw_tx: bytes) -> bytes:
        """Add to the mempool and gossip it; return the tx hash."""

    @abstractmethod
    def get_sync_status(self) -> SyncStatus | None:
        """None when in sync (eth_syncing's `false`)."""

    @abstractmethod
    def get_status(self) -> dict:
        """Live figures for `muagic_status` and the devnet view (height, peers,
        last finality time, mempool size, role of this node...)."""
