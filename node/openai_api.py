"""The OpenAI-compatible API: `GET /v1/models` and `POST /v1/chat/completions`, routed here by `node.http`.

A chat request becomes a job on chain through the node's
`InferenceGatewayAPI.submit_chat` (signed request tx, routing, the worker's
streamed output); this module only translates between OpenAI's JSON and that
call. The response id is `"job-" + job id hex` and a `magicoin` object names
the job, the worker and the request transaction, so the caller can follow the
job's audit with `muagic_getJob`.

Decoding is greedy by protocol (a verifier must reproduce it), so sampling
fields (`temperature`, `top_p`, `seed`, ...) are accepted and ignored; `n` must
be 1. Errors use OpenAI's `{"error": {message, type, param, code}}` shape.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, NamedTuple

import trio

from chain.exceptions import ChainError
from economy import NetworkBusy, compute_model_name
from genesis import ModelCard
from inference.exceptions import InferenceError
from node.abc import ChatChunk, ChatJob, NodeAPI
from node.asgi import HTTPLimits, Receive, Send, read_body, send_json
from node.exceptions import GatewayError, NodeError, NoWorkerAvailable, WorkerUnreachable
from primitives.limits import MAX_JSON_DEPTH, BoundedInputError, decode_json_bounded

log = logging.getLogger("magicoin.openai")

DEFAULT_MODEL_ID = "default"
DEFAULT_MAX_TOKENS = 256
MAX_TOKENS_LIMIT = 2048  # inference.jobs.MAX_TOKENS_LIMIT: no job can ask for more
MAX_MESSAGES = 64
CHAT_ROLES = ("system", "user", "assistant")
COMPLETION_TIMEOUT = 600.0  # the whole completion, first token to last


class APIError(Exception):
    """An error returned to the client in OpenAI's shape."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        super().__init__(message)

    def to_json(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


class ChatRequest(NamedTuple):
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    model_sha256: bytes | None  # None: the default model
    stream: bool
    include_usage: bool


# --- parsing ------------------------------------------------------------------------------------------

def make_param_error(message: str, param: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def parse_chat_request(body: bytes, models: list[bytes]) -> ChatRequest:
    try:
        # Size and nesting are bounded before the parser runs (primitives.limits): a deep body cannot crash it.
        request = decode_json_bounded(body, max_size=HTTPLimits().max_chat_body, max_depth=MAX_JSON_DEPTH)
    except BoundedInputError as error:
        raise APIError(400, f"request body refused: {error}", code="invalid_json") from None
    if not isinstance(request, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise make_param_error("stream must be a boolean", "stream")
    options = request.get("stream_options") or {}
    if not isinstance(options, dict):
        raise make_param_error("stream_options must be an object", "stream_options")
    n = request.get("n", 1)
    if n != 1:
        raise make_param_error("only n=1 is supported: decoding is greedy, every choice would be the same", "n")
    return ChatRequest(
        messages=parse_messages(request.get("messages")),
        max_tokens=parse_max_tokens(request),
        model_sha256=parse_model(request.get("model", DEFAULT_MODEL_ID), models),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
    )


def parse_messages(messages: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise make_param_error(f"messages must be a list of 1..{MAX_MESSAGES} messages", "messages")
    parsed = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise make_param_error(f"messages[{index}] must be an object", f"messages[{index}]")
        role = "system" if message.get("role") == "developer" else message.get("role")
        if role not in CHAT_ROLES:
            raise make_param_error(f"messages[{index}].role must be one of {CHAT_ROLES}", f"messages[{index}].role")
        parsed.append((role, parse_content(message.get("content"), index)))
    return tuple(parsed)


def parse_content(content: Any, index: int) -> str:
    """A string, or a list of text parts (images and audio are not served)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise make_param_error("only text content parts are supported", f"messages[{index}].content")
            texts.append(part["text"])
        return "".join(texts)
    raise make_param_error(f"messages[{index}].content must be a string or a list of text parts", f"messages[{index}].content")


def parse_max_tokens(request: dict) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS_LIMIT:
            raise make_param_error(f"{name} must be an integer in 1..{MAX_TOKENS_LIMIT}", name)
        return value
    return DEFAULT_MAX_TOKENS


def parse_model(model: Any, models: list[ModelCard]) -> bytes | None:
    """"default" (or absent) lets the network choose; otherwise a served model's name or sha256 hex."""
    if model in (None, DEFAULT_MODEL_ID):
        return None
    if isinstance(model, str):
        text = (model[2:] if model.startswith("0x") else model).lower()
        for card in models:
            if text in (card.sha256.hex(), compute_model_name(card).lower()):
                return card.sha256
    raise APIError(404, f"the model {str(model)[:80]!r} is not served by any registered worker", param="model",
                   code="model_not_found", type="invalid_request_error")


# --- responses ----------------------------------------------------------------------------------------

def encode_model(model_id: str, card: ModelCard | None = None) -> dict:
    encoded = {"id": model_id, "object": "model", "created": 0, "owned_by": "magicoin"}
    if card is not None:
        encoded.update(sha256=card.sha256.hex(), context_length=card.context_tokens)
    return encoded


def compute_finish_reason(token_count: int, max_tokens: int) -> str:
    # A worker stops at end-of-generation or at max_tokens; reaching max_tokens is "length".
    return "length" if token_count >= max_tokens else "stop"


def encode_magicoin(job: ChatJob) -> dict:
    return {"job_id": "0x" + job.job_id.hex(), "worker": "0x" + job.worker.hex(),
            "request_tx": "0x" + job.request_tx_hash.hex(), "model": job.model_sha256.hex()}


def compute_completion_id(job: ChatJob) -> str:
    return "job-" + job.job_id.hex()


def encode_completion(job: ChatJob, text: str, token_count: int, max_tokens: int, created: int) -> dict:
    return {
        "id": compute_completion_id(job),
        "object": "chat.completion",
        "created": created,
        "model": job.model_sha256.hex(),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "finish_reason": compute_finish_reason(token_count, max_tokens), "logprobs": None}],
        # Prompt tokens are counted by the worker's tokenizer, which this node may not hold.
        "usage": {"completion_tokens": token_count},
        "magicoin": encode_magicoin(job),
    }


def encode_chunk(job: ChatJob, created: int, delta: dict, finish_reason: str | None) -> dict:
    return {
        "id": compute_completion_id(job),
        "object": "chat.completion.chunk",
        "created": created,
        "model": job.model_sha256.hex(),
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        "magicoin": encode_magicoin(job),
    }


def encode_event(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


# --- the handler ----------------------------------------------------------------------------------------

class OpenAIAPI:
    """Serves /v1/models and /v1/chat/completions for one node."""

    def __init__(self, node: NodeAPI) -> None:
        self.node = node
        self.completions = 0
        self.failures = 0

    async def handle(self, scope: dict, receive: Receive, send: Send, limits: HTTPLimits) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        try:
            if path == "/v1/models" and method == "GET":
                await send_json(send, 200, self.get_models())
            elif path == "/v1/chat/completions" and method == "POST":
                body = await read_body(receive, scope, limits.max_chat_body, limits.read_timeout)
                await self.on_chat(self.parse(body), receive, send)
            else:
                raise APIError(404, f"no route {method} {path}", type="not_found", code="unknown_url")
        except APIError as error:
            if error.status >= 500:
                self.failures += 1
            await send_json(send, error.status, error.to_json())

    def get_gateway(self):
        if self.node.inference is None:
            raise APIError(503, "this node serves no inference", type="service_unavailable", code="no_gateway")
        return self.node.inference

    def get_models(self) -> dict:
        cards = self.get_gateway().get_models()
        return {"object": "list",
                "data": [encode_model(DEFAULT_MODEL_ID)] + [encode_model(compute_model_name(c), c) for c in cards]}

    def parse(self, body: bytes) -> ChatRequest:
        return parse_chat_request(body, list(self.get_gateway().get_models()))

    async def submit(self, request: ChatRequest) -> ChatJob:
        try:
            return await self.get_gateway().submit_chat(request.messages, request.max_tokens, request.model_sha256)
        except (NoWorkerAvailable, WorkerUnreachable) as error:
            raise APIError(503, str(error), type="service_unavailable", code=type(error).__name__) from None
        except NetworkBusy as error:
            # Too many jobs already wait for capacity: the client should back off (or offer, on chain).
            raise APIError(503, str(error), type="service_unavailable", code="network_busy") from None
        except (ChainError, NodeError, InferenceError) as error:
            # A plain GatewayError is the gateway refusing the request itself (e.g. a prompt too long).
            raise APIError(400, str(error), code=type(error).__name__) from None

    async def on_chat(self, request: ChatRequest, receive, send) -> None:
        job = await self.submit(request)
        self.completions += 1
        if request.stream:
            await self.stream_completion(job, request, receive, send)
        else:
            await self.send_completion(job, request, send)

    async def send_completion(self, job: ChatJob, request: ChatRequest, send) -> None:
        created = int(time.time())
        texts, count = [], 0
        try:
            with trio.fail_after(COMPLETION_TIMEOUT):
                async with closing_chunks(job.chunks) as chunks:
                    async for chunk in chunks:
                        texts.append(chunk.text)
                        count += len(chunk.token_ids)
        except (GatewayError, trio.TooSlowError) as error:
            raise APIError(502, f"the worker did not complete job 0x{job.job_id.hex()}: {error}",
                           type="upstream_error", code="worker_failed") from None
        await send_json(send, 200, encode_completion(job, "".join(texts), count, request.max_tokens, created))

    async def stream_completion(self, job: ChatJob, request: ChatRequest, receive, send) -> None:
        """Server-sent events, one per chunk; stop generating if the client goes away."""
        created = int(time.time())
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})

        async def emit(data: dict | str) -> None:
            await send({"type": "http.response.body", "body": encode_event(data), "more_body": True})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
            await emit(encode_chunk(job, created, {"role": "assistant", "content": ""}, None))
            count = 0
            try:
                with trio.fail_after(COMPLETION_TIMEOUT):
                    async with closing_chunks(job.chunks) as chunks:
                        async for chunk in chunks:
                            count += len(chunk.token_ids)
                            if chunk.text:
                                await emit(encode_chunk(job, created, {"content": chunk.text}, None))
            except (GatewayError, trio.TooSlowError) as error:
                self.failures += 1
                await emit({"error": {"message": f"the worker did not complete the job: {error}",
                                      "type": "upstream_error", "param": None, "code": "worker_failed"}})
            else:
                await emit(encode_chunk(job, created, {}, compute_finish_reason(count, request.max_tokens)))
                if request.include_usage:
                    usage_chunk = encode_chunk(job, created, {}, None)
                    usage_chunk["choices"] = []
                    usage_chunk["usage"] = {"completion_tokens": count}
                    await emit(usage_chunk)
            await emit("[DONE]")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def closing_chunks(chunks: AsyncIterator[ChatChunk]) -> AsyncIterator[AsyncIterator[ChatChunk]]:
    """Close the completion's stream however we leave it (client gone, timeout, error), so the
    worker stops decoding at once instead of whenever the iterator is garbage collected."""
    try:
        yield chunks
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def watch_disconnect(receive, cancel_scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            cancel_scope.cancel()
            return
