"""The OpenAI-compatible API: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions` and
`POST /v1/completions`, routed here by `node.http`.

A request becomes a job on chain through the node's
`InferenceGatewayAPI.submit_chat` (signed request tx, routing, the assigned
worker's streamed output); this module only translates between OpenAI's JSON
and that call. The response id is `"job-" + job id hex` and a `magicoin`
object names the job, the worker the chain assigned and the request
transaction, so the caller can follow the job's audit with `muagic_getJob`.

`usage` is the worker's own count: `prompt_tokens` is the rendered prompt (the
model's chat template applied to the messages) as the worker tokenised it,
`completion_tokens` the tokens it generated (its end-of-generation token
included: the chain's claim counts it), `total_tokens` their sum. Streams send
it in a last chunk with empty `choices` when `stream_options.include_usage` is
set, as OpenAI does. `finish_reason` is the worker's: "stop" when it emitted
end-of-generation, "length" when it reached max_tokens.

Legacy text completions (`/v1/completions`): a job on chain holds chat
messages, never raw text, so the `prompt` (a string, or a list of one string)
becomes a single user message, rendered by the model's chat template like any
chat; the response's `magicoin.prompt_as` says so (`"user_message"`). `echo`,
`suffix`, `best_of` > 1 and logprobs are refused rather than ignored, since they
would change what the text means. `max_tokens` defaults to 16, as OpenAI's.

Decoding is greedy by protocol (a verifier must reproduce it), so sampling
fields (`temperature`, `top_p`, `seed`, ...) are accepted and ignored; `n` must
be 1. Errors use OpenAI's `{"error": {message, type, param, code}}` shape; a
worker's failure is a 502 (or an error event in a stream) whose `code` names
the gateway's typed error, and whose message carries the worker's text capped
by the gateway.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import trio

from chain.exceptions import ChainError
from economy import NetworkBusy, compute_model_name
from genesis import ModelCard
from inference.exceptions import InferenceError
from node.abc import ChatChunk, ChatJob, NodeAPI
from node.asgi import HTTPLimits, Receive, Send, read_body, send_json
from node.exceptions import (
    GatewayError,
    NodeError,
    NoWorkerAvailable,
    WorkerUnreachable,
)
from primitives.errors import compute_text_excerpt
from primitives.limits import MAX_JSON_DEPTH, BoundedInputError, decode_json_bounded

log = logging.getLogger("magicoin.openai")

DEFAULT_MODEL_ID = "default"
DEFAULT_MAX_TOKENS = 256
DEFAULT_TEXT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_TOKENS_LIMIT = 2048  # inference.jobs.MAX_TOKENS_LIMIT: no job can ask for more
MAX_MESSAGES = 64
CHAT_ROLES = ("system", "user", "assistant")
COMPLETION_TIMEOUT = 600.0  # the whole completion, first token to last
MODELS_PATH = "/v1/models"
PROMPT_AS_USER_MESSAGE = "user_message"  # how a text completion's prompt is put into a job (see the docstring)


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


class CompletionRequest(NamedTuple):
    messages: tuple[tuple[str, str], ...]
    max_tokens: int
    model_sha256: bytes | None  # None: the default model
    stream: bool
    include_usage: bool
    text: bool = False  # a legacy text completion (/v1/completions): the prompt is one user message


ChatRequest = CompletionRequest  # the name this module's callers used before text completions


class Tally:
    """What a job's chunks add up to: the text, the tokens, and the worker's finish reason and prompt size."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.completion_tokens = 0
        self.finish_reason = ""
        self.prompt_tokens = 0

    def add(self, chunk: ChatChunk) -> None:
        self.texts.append(chunk.text)
        self.completion_tokens += len(chunk.token_ids)
        if chunk.finish_reason:
            self.finish_reason, self.prompt_tokens = chunk.finish_reason, chunk.prompt_tokens

    @property
    def text(self) -> str:
        return "".join(self.texts)

    def validate_finished(self) -> None:
        """The worker said how it ended; a stream that stops without saying so is not a complete answer."""
        if not self.finish_reason:
            raise GatewayError("the completion ended without the worker's finish reason",
                               got=self.completion_tokens, expected="a final chunk with a finish reason")


# --- parsing ------------------------------------------------------------------------------------------

def make_param_error(message: str, param: str, code: str = "invalid_value") -> APIError:
    return APIError(400, message, param=param, code=code)


def decode_request_body(body: bytes) -> dict:
    try:
        # Size and nesting are bounded before the parser runs (primitives.limits): a deep body cannot crash it.
        request = decode_json_bounded(body, max_size=HTTPLimits().max_chat_body, max_depth=MAX_JSON_DEPTH)
    except BoundedInputError as error:
        raise APIError(400, f"request body refused: {error}", code="invalid_json") from None
    if not isinstance(request, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return request


def parse_chat_request(body: bytes, models: list[ModelCard]) -> CompletionRequest:
    request = decode_request_body(body)
    return parse_completion_options(request, parse_messages(request.get("messages")), models, DEFAULT_MAX_TOKENS,
                                    text=False)


def parse_text_request(body: bytes, models: list[ModelCard]) -> CompletionRequest:
    """A legacy completion: its prompt becomes one user message (the chain's jobs hold chat messages)."""
    request = decode_request_body(body)
    validate_text_options(request)
    messages = (("user", parse_prompt(request.get("prompt"))),)
    return parse_completion_options(request, messages, models, DEFAULT_TEXT_MAX_TOKENS, text=True)


def parse_completion_options(request: dict, messages: tuple[tuple[str, str], ...], models: list[ModelCard],
                             default_max_tokens: int, *, text: bool) -> CompletionRequest:
    """The fields chat and text completions share: stream, stream_options, n, max_tokens, model."""
    stream = request.get("stream", False)
    if not isinstance(stream, bool):
        raise make_param_error("stream must be a boolean", "stream")
    options = request.get("stream_options") or {}
    if not isinstance(options, dict):
        raise make_param_error("stream_options must be an object", "stream_options")
    n = request.get("n", 1)
    if n != 1:
        raise make_param_error("only n=1 is supported: decoding is greedy, every choice would be the same", "n")
    return CompletionRequest(
        messages=messages,
        max_tokens=parse_max_tokens(request, default_max_tokens),
        model_sha256=parse_model(request.get("model", DEFAULT_MODEL_ID), models),
        stream=stream,
        include_usage=bool(options.get("include_usage", False)),
        text=text,
    )


def validate_text_options(request: dict) -> None:
    """Refuse what would change the meaning of a legacy completion's text rather than ignore it."""
    if request.get("echo") not in (None, False):
        raise make_param_error("echo is not supported: the text is the completion only", "echo")
    if request.get("suffix") not in (None, ""):
        raise make_param_error("suffix (insertion) is not supported", "suffix")
    if request.get("best_of") not in (None, 1):
        raise make_param_error("only best_of=1 is supported: decoding is greedy", "best_of")
    if request.get("logprobs") not in (None, 0):
        raise make_param_error("logprobs are not returned by this API", "logprobs")


def parse_prompt(prompt: Any) -> str:
    """A string, or a list holding one string (OpenAI's batch form, one prompt per job here)."""
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise make_param_error("prompt must be a string or a list of one string (token ids and batches of "
                               "prompts are not supported)", "prompt")
    return prompt


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


def parse_max_tokens(request: dict, default: int = DEFAULT_MAX_TOKENS) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOKENS_LIMIT:
            raise make_param_error(f"{name} must be an integer in 1..{MAX_TOKENS_LIMIT}", name)
        return value
    return default


def parse_model(model: Any, models: list[ModelCard]) -> bytes | None:
    """"default" (or absent) lets the network choose; otherwise a served model's name or sha256 hex."""
    if model in (None, DEFAULT_MODEL_ID):
        return None
    card = find_model(model, models)
    if card is None:
        raise make_model_not_found(model)
    return card.sha256


def find_model(model: Any, models: list[ModelCard]) -> ModelCard | None:
    """The served model whose name or sha256 hex (with or without 0x, any case) is `model`."""
    if not isinstance(model, str):
        return None
    text = model.removeprefix("0x").lower()
    for card in models:
        if text in (card.sha256.hex(), compute_model_name(card).lower()):
            return card
    return None


def make_model_not_found(model: Any) -> APIError:
    shown = compute_text_excerpt(str(model), 80)
    return APIError(404, f"The model {shown!r} does not exist: no registered worker serves it", param="model",
                    code="model_not_found", type="invalid_request_error")


# --- responses ----------------------------------------------------------------------------------------

def encode_model(model_id: str, card: ModelCard | None = None) -> dict:
    encoded = {"id": model_id, "object": "model", "created": 0, "owned_by": "magicoin"}
    if card is not None:
        encoded.update(sha256=card.sha256.hex(), context_length=card.context_tokens)
    return encoded


def encode_usage(tally: Tally) -> dict:
    return {"prompt_tokens": tally.prompt_tokens, "completion_tokens": tally.completion_tokens,
            "total_tokens": tally.prompt_tokens + tally.completion_tokens}


def encode_magicoin(job: ChatJob, request: CompletionRequest) -> dict:
    encoded = {"job_id": "0x" + job.job_id.hex(), "worker": "0x" + job.worker.hex(),
               "request_tx": "0x" + job.request_tx_hash.hex(), "model": job.model_sha256.hex()}
    if request.text:
        encoded["prompt_as"] = PROMPT_AS_USER_MESSAGE
    return encoded


def compute_completion_id(job: ChatJob) -> str:
    return "job-" + job.job_id.hex()


def encode_completion(job: ChatJob, request: CompletionRequest, tally: Tally, created: int) -> dict:
    if request.text:
        obj = "text_completion"
        choice = {"index": 0, "text": tally.text, "finish_reason": tally.finish_reason, "logprobs": None}
    else:
        obj = "chat.completion"
        choice = {"index": 0, "message": {"role": "assistant", "content": tally.text},
                  "finish_reason": tally.finish_reason, "logprobs": None}
    return {"id": compute_completion_id(job), "object": obj, "created": created, "model": job.model_sha256.hex(),
            "choices": [choice], "usage": encode_usage(tally), "magicoin": encode_magicoin(job, request)}


def encode_chunk(job: ChatJob, request: CompletionRequest, created: int, text: str | None,
                 finish_reason: str | None) -> dict:
    """One streamed chunk; for a chat, `text` None is the opening chunk that names the role."""
    if request.text:
        obj = "text_completion"
        choice = {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
    else:
        obj = "chat.completion.chunk"
        delta = {"role": "assistant", "content": ""} if text is None else ({"content": text} if text else {})
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
    chunk = {"id": compute_completion_id(job), "object": obj, "created": created, "model": job.model_sha256.hex(),
             "choices": [choice], "magicoin": encode_magicoin(job, request)}
    if request.include_usage:
        chunk["usage"] = None  # as OpenAI: every chunk has the field, only the last one fills it
    return chunk


def encode_usage_chunk(job: ChatJob, request: CompletionRequest, created: int, tally: Tally) -> dict:
    chunk = encode_chunk(job, request, created, "", None)
    chunk["choices"] = []
    chunk["usage"] = encode_usage(tally)
    return chunk


def encode_event(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return b"data: " + text.encode() + b"\n\n"


def make_worker_error(job: ChatJob, error: Exception) -> APIError:
    """A job the worker did not complete: 502, coded by the gateway's typed error (its text already capped)."""
    code = "CompletionTimeout" if isinstance(error, trio.TooSlowError) else type(error).__name__
    detail = f"no final token within {COMPLETION_TIMEOUT:.0f} s" if isinstance(error, trio.TooSlowError) else error
    return APIError(502, f"the worker did not complete job 0x{job.job_id.hex()}: {detail}", type="upstream_error",
                    code=code)


# --- the handler ----------------------------------------------------------------------------------------

class OpenAIAPI:
    """Serves /v1/models, /v1/models/{id}, /v1/chat/completions and /v1/completions for one node."""

    def __init__(self, node: NodeAPI) -> None:
        self.node = node
        self.completions = 0
        self.failures = 0

    async def handle(self, scope: dict, receive: Receive, send: Send, limits: HTTPLimits) -> None:
        method, path = scope["method"], scope["path"].rstrip("/")
        try:
            if path == MODELS_PATH and method == "GET":
                await send_json(send, 200, self.get_models())
            elif path.startswith(MODELS_PATH + "/") and method == "GET":
                await send_json(send, 200, self.get_model(path[len(MODELS_PATH) + 1:]))
            elif path in ("/v1/chat/completions", "/v1/completions") and method == "POST":
                body = await read_body(receive, scope, limits.max_chat_body, limits.read_timeout)
                await self.on_completion(self.parse(body, text=path == "/v1/completions"), receive, send)
            else:
                raise APIError(404, f"no route {method} {compute_text_excerpt(path, 80)}", type="not_found",
                               code="unknown_url")
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

    def get_model(self, model_id: str) -> dict:
        """One model as `/v1/models` lists it, found by its id ("default" or its name) or its sha256 hex."""
        if model_id == DEFAULT_MODEL_ID:
            self.get_gateway()  # a node without inference has no models at all
            return encode_model(DEFAULT_MODEL_ID)
        card = find_model(model_id, list(self.get_gateway().get_models()))
        if card is None:
            raise make_model_not_found(model_id)
        return encode_model(compute_model_name(card), card)

    def parse(self, body: bytes, *, text: bool = False) -> CompletionRequest:
        models = list(self.get_gateway().get_models())
        return parse_text_request(body, models) if text else parse_chat_request(body, models)

    async def submit(self, request: CompletionRequest) -> ChatJob:
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

    async def on_completion(self, request: CompletionRequest, receive, send) -> None:
        job = await self.submit(request)
        self.completions += 1
        if request.stream:
            await self.stream_completion(job, request, receive, send)
        else:
            await self.send_completion(job, request, send)

    async def send_completion(self, job: ChatJob, request: CompletionRequest, send) -> None:
        created = int(time.time())
        tally = Tally()
        try:
            with trio.fail_after(COMPLETION_TIMEOUT):
                async with closing_chunks(job.chunks) as chunks:
                    async for chunk in chunks:
                        tally.add(chunk)
            tally.validate_finished()
        except (GatewayError, trio.TooSlowError) as error:
            raise make_worker_error(job, error) from None
        await send_json(send, 200, encode_completion(job, request, tally, created))

    async def stream_completion(self, job: ChatJob, request: CompletionRequest, receive, send) -> None:
        """Server-sent events, one per chunk; stop generating if the client goes away."""
        created = int(time.time())
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})

        async def emit(data: dict | str) -> None:
            await send({"type": "http.response.body", "body": encode_event(data), "more_body": True})

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_disconnect, receive, nursery.cancel_scope)
            if not request.text:
                await emit(encode_chunk(job, request, created, None, None))
            tally = Tally()
            try:
                with trio.fail_after(COMPLETION_TIMEOUT):
                    async with closing_chunks(job.chunks) as chunks:
                        async for chunk in chunks:
                            tally.add(chunk)
                            if chunk.text:
                                await emit(encode_chunk(job, request, created, chunk.text, None))
                tally.validate_finished()
            except (GatewayError, trio.TooSlowError) as error:
                self.failures += 1
                await emit(make_worker_error(job, error).to_json())
            else:
                await emit(encode_chunk(job, request, created, "", tally.finish_reason))
                if request.include_usage:
                    await emit(encode_usage_chunk(job, request, created, tally))
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
