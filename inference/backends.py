"""Generation backends: where a worker's greedy decoding runs.

The worker always holds the GGUF itself (`LocalModel`): it names the model by
sha256, renders prompts with the GGUF's chat template, tokenises, verifies and
annotates locally. Only *generation* is delegated, to one of

- `LocalBackend`: the in-process llama.cpp context (greedy argmax, token by
  token, in a worker thread holding the model's limiter); or
- `OpenAIBackend`: any OpenAI-compatible server (llama.cpp's llama-server,
  llama-cpp-python's server, Ollama's /v1, LM Studio, vLLM) given by URL. It
  is sent the protocol-rendered prompt text on `/v1/completions` (so the
  server's own chat formatting never applies) with greedy settings, and its
  streamed text is turned back into tokens with the protocol's rule
  (`LocalModel.tokenize_output`), so the claim is verifiable whichever
  front end produced it.

A server is untrusted input: every answer is size-capped, parsed and
shape-checked, silence is bounded by a timeout, and each failure is a typed
`BackendError`. `check_backend_model` is the start-up check that the server
serves the model this node claims: fixed probe jobs must be accepted by the
local verifier, and the server's prompt token count must match ours.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import aclosing
from typing import Any, AsyncIterator, Callable, NamedTuple, Sequence
from urllib.parse import urlsplit

import httpx
import trio

from inference.engine import LocalModel
from inference.exceptions import (
    BackendError,
    BackendModelMismatch,
    BackendModelNotServed,
    BackendProtocolError,
    BackendResponseTooLarge,
    BackendServerError,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnreachable,
)
from inference.jobs import JobOutput, JobSpec, get_prompt_tokens, make_job_output
from inference.verifier import VerificationResult, Verifier
from primitives.limits import decode_json_bounded

logger = logging.getLogger("inference.backends")

# The fixed job the worker times at start-up to declare its capacity.
CAPACITY_PROBE_CHAT = (("user", "Write a short paragraph about the history of bread."),)
CAPACITY_PROBE_TOKENS = 48

# Start-up probes: short, varied (French, a system turn, multi-byte Chinese), so
# that another model, tokenizer or template shows up in at least one of them.
# Measured on SmolLM2-135M Q4_1 as the node's model, best score of each probe
# when the server runs a requantisation: Q4_0 0.75 / 0.905 / 0.333, Q2_K 0.5 /
# 0.75 / 0.667 (refused, each probe alone would do); Q8_0 1.0 on all three,
# accepted: a Q8_0 copy of a Q4_1 file keeps its weights, so it is the same
# model for every verifier, which is what the check is for.
BACKEND_PROBE_CHATS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Quelle est la capitale de l'Italie ?"),),
    (("system", "You are a terse assistant."), ("user", "List three colours of the rainbow.")),
    (("user", "用一句话介绍长城。"),),
)
BACKEND_PROBE_TOKENS = 24

# Caps on what a server may send (its answers are untrusted input).
MAX_JSON_BYTES = 1 << 20  # /v1/models, a non-streamed completion
MAX_SSE_LINE_BYTES = 64 << 10
STREAM_BYTES_BASE = 64 << 10
STREAM_BYTES_PER_TOKEN = 4 << 10  # one SSE event per token is ~300 bytes with llama-cpp-python's server
TEXT_BYTES_PER_TOKEN = 256  # far above any vocabulary's longest piece
MAX_MODELS_LISTED = 4096

DEFAULT_CONNECT_TIMEOUT = 5.0
# The longest a server may stay silent (no data event) while serving a job:
# prefill of a long prompt on a slow machine, or a wait behind its other clients.
DEFAULT_IDLE_TIMEOUT = 120.0

# Greedy on every front end we know: temperature 0 is llama.cpp's greedy
# sampler; top_k 1 and a fixed seed make it greedy on front ends that still
# sample at temperature 0; penalties off (llama-cpp-python's server defaults
# repeat_penalty to 1.1, which would change the argmax).
GREEDY_PARAMETERS = {
    "temperature": 0.0,
    "top_k": 1,
    "top_p": 1.0,
    "min_p": 0.0,
    "seed": 0,
    "repeat_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}


class JobRun:
    """One job as a backend sees it: the model and its limiter, the prompt, and where tokens go.

    `emit(token, text)` must be called on the trio loop; a backend decoding in
    a thread posts with `emit_from_thread` and never waits for the loop.
    `deliver(token, text, index)` is the worker's, run on the loop. `tokens` are the streamed
    (for a remote backend: provisional) token ids, never more than max_tokens.
    """

    def __init__(self, model: LocalModel, model_limiter: trio.CapacityLimiter, job: JobSpec,
                 deliver: Callable[[int, str, int], None]) -> None:
        self.model = model
        self.model_limiter = model_limiter
        self.job = job
        self.max_tokens = job.max_tokens
        self._deliver = deliver
        self.trio_token = trio.lowlevel.current_trio_token()
        self.prompt_tokens: list[int] = []
        self.tokens: list[int] = []
        self.busy_seconds = 0.0  # time the backend spent computing this job

    def prepare_prompt(self) -> list[int]:
        """The job's prompt tokens (raises PromptTooLong); safe in any thread (tokenising reads the vocabulary only)."""
        self.prompt_tokens = get_prompt_tokens(self.model, self.job)
        return self.prompt_tokens

    def emit(self, token: int, text: str) -> None:
        index = len(self.tokens)
        self.tokens.append(token)
        self._deliver(token, text, index)

    def emit_from_thread(self, token: int, text: str) -> None:
        index = len(self.tokens)
        self.tokens.append(token)
        self.trio_token.run_sync_soon(self._deliver, token, text, index)


class ProbeResult(NamedTuple):
    prompt: str
    score_ppm: int
    accepted: bool
    n_tokens: int
    server_prompt_tokens: int | None  # what the server reported (usage.prompt_tokens), None if it did not
    local_prompt_tokens: int
    text: str

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "score": self.score_ppm / 1_000_000, "accepted": self.accepted,
                "tokens": self.n_tokens, "serverPromptTokens": self.server_prompt_tokens,
                "localPromptTokens": self.local_prompt_tokens}


# --- the in-process backend -----------------------------------------------------------------------


class LocalBackend:
    """Greedy decoding on the worker's own llama.cpp context (today's behaviour)."""

    kind = "local"
    url = ""
    model_name = ""

    async def start(self, model: LocalModel) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def get_queue_depth(self) -> int:
        return 0  # jobs queue on the model's limiter, which the worker counts

    def describe(self) -> dict:
        return {"kind": self.kind}

    async def generate(self, run: JobRun) -> JobOutput:
        return await trio.to_thread.run_sync(self._decode, run, limiter=run.model_limiter)

    @staticmethod
    def _decode(run: JobRun) -> JobOutput:
        """Runs in a worker thread holding the model's limiter."""
        model = run.model
        started = time.perf_counter()
        try:
            prompt = run.prepare_prompt()
            decoder = model.make_text_decoder()
            for token in model.iter_greedy(prompt, run.max_tokens):
                text = "" if model.is_end_of_generation(token) else decoder.decode(model.get_token_bytes(token))
                run.emit_from_thread(token, text)
                # Raises Cancelled when the job's scope was cancelled (deadline, or the
                # consumer left): the thread stops before decoding another token.
                trio.from_thread.check_cancelled()
            return make_job_output(model, prompt, run.tokens, run.max_tokens)
        finally:
            run.busy_seconds += time.perf_counter() - started

    async def measure_tokens_per_second(self, model: LocalModel, limiter: trio.CapacityLimiter) -> int:
        """Decode rate on the capacity probe, in tokens/s (prefill excluded)."""

        def probe() -> int:
            prompt = model.tokenize_chat(CAPACITY_PROBE_CHAT)
            count = 0
            first_at = None
            for _ in model.iter_greedy(prompt, CAPACITY_PROBE_TOKENS):
                count += 1
                if first_at is None:
                    first_at = time.perf_counter()  # prefill done: time decoding only
            return compute_rate(count - 1, time.perf_counter() - first_at)

        return await trio.to_thread.run_sync(probe, limiter=limiter)


# --- an OpenAI-compatible server ------------------------------------------------------------------


class Completion(NamedTuple):
    """A whole (non-streamed, or assembled) completion from a server."""

    text: str
    finish_reason: str  # "stop" or "length"
    prompt_tokens: int | None  # usage.prompt_tokens, when the server reports it


class OpenAIBackend:
    """Generation on an OpenAI-compatible server's `/v1/completions`, streamed over SSE.

    `url` is the API base (`http://127.0.0.1:11434/v1`; `/v1` is added when
    missing). `model_name` is the name the server knows the model by; None
    takes the first model `/v1/models` lists. Jobs take turns (one request in
    flight): a server serialises them anyway, and a job's timeouts should not
    count the wait behind this worker's other jobs.
    """

    kind = "openai"

    def __init__(self, url: str, model_name: str | None = None, *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, api_key: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = normalize_base_url(url)
        self.model_name = model_name or ""
        self._wanted_model = model_name
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._api_key = api_key
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self.limiter = trio.CapacityLimiter(1)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, model: LocalModel) -> None:
        """Connect and settle which model to ask for (raises BackendUnreachable, BackendModelNotServed, ...)."""
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        # Reads are bounded by the idle timeout per data event (`_iter_events`), not per socket read.
        timeout = httpx.Timeout(connect=self.connect_timeout, read=self.idle_timeout, write=self.connect_timeout,
                                pool=self.connect_timeout)
        # trust_env=False: a backend is named by its URL alone (no proxy or netrc from the environment).
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers, transport=self._transport,
                                         follow_redirects=False, trust_env=False)
        # httpx logs every request at INFO: one line per job would drown the node's own log.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        served = await self.list_models()
        self.model_name = select_model_name(served, self._wanted_model, self.url)
        logger.info("backend url=%s model=%s (served: %s)", self.url, self.model_name, ", ".join(served[:8]))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def get_queue_depth(self) -> int:
        return self.limiter.statistics().tasks_waiting

    def describe(self) -> dict:
        return {"kind": self.kind, "url": self.url, "model": self.model_name}

    # --- requests -------------------------------------------------------------------------------

    async def list_models(self) -> list[str]:
        body = await self._request_json("GET", "/models", None, MAX_JSON_BYTES)
        return parse_model_list(body, self.url)

    async def complete(self, prompt_text: str, max_tokens: int) -> Completion:
        """One non-streamed greedy completion (servers report usage here; streams often do not)."""
        body = await self._request_json("POST", "/completions", self._make_request(prompt_text, max_tokens, False),
                                        MAX_JSON_BYTES + max_tokens * TEXT_BYTES_PER_TOKEN)
        text, finish_reason = parse_completion_choice(body, self.url)
        if finish_reason is None:
            raise BackendProtocolError("completion has no finish_reason", got=None, expected='"stop" or "length"',
                                       url=self.url)
        validate_text_size(text, max_tokens, self.url)
        return Completion(text, normalize_finish_reason(finish_reason, self.url), parse_prompt_usage(body, self.url))

    async def stream(self, prompt_text: str, max_tokens: int) -> AsyncIterator[tuple[str, str | None, int | None]]:
        """(text delta, finish_reason or None, usage.prompt_tokens or None) per event, until the server's [DONE].

        Raises BackendStreamBroken when the stream ends without a finish_reason.
        """
        payload = self._make_request(prompt_text, max_tokens, True)
        finished = False
        size = 0
        events = self._iter_events("/completions", payload, STREAM_BYTES_BASE + max_tokens * STREAM_BYTES_PER_TOKEN)
        async with aclosing(events):
            async for data in events:
                body = parse_json(data, self.url)
                if isinstance(body, dict) and body.get("choices") == [] and "usage" in body:
                    yield "", None, parse_prompt_usage(body, self.url)  # the usage-only chunk (stream_options)
                    continue
                text, finish_reason = parse_completion_choice(body, self.url)
                size += len(text.encode("utf-8", "surrogatepass"))
                if size > max_tokens * TEXT_BYTES_PER_TOKEN:
                    raise BackendResponseTooLarge("more text than max_tokens can spell", got=f"{size} bytes",
                                                  expected=f"<= {max_tokens * TEXT_BYTES_PER_TOKEN}", url=self.url)
                finished = finished or finish_reason is not None
                yield text, finish_reason, parse_prompt_usage(body, self.url)
        if not finished:
            raise BackendStreamBroken("stream ended without a finish_reason", got="[DONE] or end of stream",
                                      expected="a choice with finish_reason", url=self.url)

    def _make_request(self, prompt_text: str, max_tokens: int, stream: bool) -> dict:
        request = {"model": self.model_name, "prompt": prompt_text, "max_tokens": max_tokens, "stream": stream,
                   **GREEDY_PARAMETERS}
        if stream:
            request["stream_options"] = {"include_usage": True}
        return request

    async def _request_json(self, method: str, path: str, payload: dict | None, max_bytes: int) -> Any:
        client = self._require_client()
        with trio.move_on_after(self.idle_timeout) as scope:
            try:
                async with client.stream(method, self.url + path, json=payload) as response:
                    await self._raise_for_status(response)
                    data = await read_capped(response, max_bytes, self.url)
            except httpx.TimeoutException as error:
                raise BackendTimeout(f"{method} {path} timed out", got=type(error).__name__,
                                     expected=f"an answer within {self.idle_timeout}s", url=self.url) from None
            except httpx.HTTPError as error:
                raise make_transport_error(error, self.url, started=False) from None
        if scope.cancelled_caught:
            raise BackendTimeout(f"{method} {path} took too long", got=f"> {self.idle_timeout}s",
                                 expected=f"an answer within {self.idle_timeout}s", url=self.url)
        return parse_json(data, self.url)

    async def _iter_events(self, path: str, payload: dict, max_bytes: int) -> AsyncIterator[str]:
        """The data of each SSE event of a streamed POST, until `[DONE]`; each must come within the idle timeout."""
        client = self._require_client()
        received = 0
        started = False
        try:
            async with client.stream("POST", self.url + path, json=payload) as response:
                await self._raise_for_status(response)
                started = True
                chunks = response.aiter_bytes()
                parser = SSEParser(self.url)
                while True:
                    # Pings (SSE comments) keep a socket alive but are not progress: only data resets the clock.
                    with trio.move_on_after(self.idle_timeout) as scope:
                        events = []
                        while not events:
                            chunk = await anext(chunks, None)
                            if chunk is None:
                                return  # the server closed the stream; `stream` decides whether that was early
                            received += len(chunk)
                            if received > max_bytes:
                                raise BackendResponseTooLarge("stream too large", got=f"> {max_bytes} bytes",
                                                              expected=f"<= {max_bytes} bytes", url=self.url)
                            events = parser.feed(chunk)
                    if scope.cancelled_caught:
                        raise BackendTimeout("no data from the server", got=f"silent > {self.idle_timeout}s",
                                             expected=f"an event within {self.idle_timeout}s", url=self.url)
                    for data in events:
                        if data.strip() == "[DONE]":
                            return
                        yield data
        except httpx.TimeoutException as error:
            raise BackendTimeout("server timed out", got=type(error).__name__,
                                 expected=f"an event within {self.idle_timeout}s", url=self.url) from None
        except httpx.HTTPError as error:
            raise make_transport_error(error, self.url, started=started) from None

    async def _raise_for_status(self, response: httpx.Response) -> None:
        if response.status_code == 200:
            return
        try:
            body = (await read_capped(response, 4096, self.url, truncate=True)).decode("utf-8", "replace")
        except (BackendError, httpx.HTTPError):
            body = ""
        raise BackendServerError(f"HTTP {response.status_code} from {response.request.method} "
                                 f"{response.request.url.path}", got=f"{response.status_code} {body[:300]}",
                                 expected="200", url=self.url)

    def _require_client(self) -> httpx.AsyncClient:
        if self._client is None:
            raise BackendError("backend not started", got=None, expected="start() first", url=self.url)
        return self._client

    # --- jobs -----------------------------------------------------------------------------------

    async def generate(self, run: JobRun) -> JobOutput:
        async with self.limiter:
            started = time.perf_counter()
            try:
                return await self._generate(run)
            finally:
                run.busy_seconds += time.perf_counter() - started

    async def _generate(self, run: JobRun) -> JobOutput:
        model = run.model
        prompt = await trio.to_thread.run_sync(run.prepare_prompt)
        prompt_text = get_backend_prompt_text(model, run.job.get_chat())
        decoder = model.make_text_decoder()
        pieces: list[str] = []
        finish_reason = None
        events = self.stream(prompt_text, run.max_tokens)
        async with aclosing(events):
            async for text, reason, server_prompt_tokens in events:
                validate_prompt_usage(server_prompt_tokens, len(prompt), self.url)
                pieces.append(text)
                finish_reason = reason or finish_reason
                self._emit_provisional(run, text, decoder)
        output_tokens = await self._tokenize_output(run, prompt, "".join(pieces), finish_reason)
        if model.is_end_of_generation(output_tokens[-1]) and len(run.tokens) < run.max_tokens:
            run.emit(output_tokens[-1], "")  # as local decoding streams it: the output ended, it was not cut
        return make_job_output(model, prompt, output_tokens, run.max_tokens)

    @staticmethod
    def _emit_provisional(run: JobRun, text: str, decoder) -> None:
        """Stream a text delta as tokens: ids are provisional (the claim is `tokenize_output`'s), text is exact."""
        if not text:
            return
        model = run.model
        for token in model.tokenize_text(text):
            if len(run.tokens) >= run.max_tokens:
                return  # the channel holds max_tokens; the final tokenisation decides the claim
            run.emit(token, decoder.decode(model.get_token_bytes(token)))

    async def _tokenize_output(self, run: JobRun, prompt: Sequence[int], text: str, finish_reason: str | None) -> list[int]:
        ended = normalize_finish_reason(finish_reason, self.url) == "stop"
        # tokenize_output runs the model (a constrained teacher-forced pass): it takes the model's turn.
        tokens = await trio.to_thread.run_sync(lambda: run.model.tokenize_output(prompt, text, ended=ended),
                                               limiter=run.model_limiter)
        if not tokens:
            raise BackendProtocolError("server produced no output", got=repr(text[:40]),
                                       expected="at least one token", url=self.url)
        if len(tokens) > run.max_tokens:
            # A prefix of a greedy output is a greedy output: claim what the job allows.
            logger.info("backend text is %d tokens here, max_tokens %d: claiming the first %d",
                        len(tokens), run.max_tokens, run.max_tokens)
            tokens = tokens[: run.max_tokens]
        return tokens

    async def measure_tokens_per_second(self, model: LocalModel, limiter: trio.CapacityLimiter) -> int:
        """Streamed decode rate of the capacity probe through the server (time to first event excluded)."""
        prompt_text = get_backend_prompt_text(model, CAPACITY_PROBE_CHAT)
        first_at = None
        count = 0
        events = self.stream(prompt_text, CAPACITY_PROBE_TOKENS)
        async with self.limiter, aclosing(events):
            async for text, _reason, _usage in events:
                if first_at is None:
                    first_at = time.perf_counter()
                    continue
                count += len(model.tokenize_text(text)) if text else 0
        return compute_rate(count, time.perf_counter() - first_at) if first_at is not None else 0


# --- start-up check -------------------------------------------------------------------------------


async def check_backend_model(backend: OpenAIBackend, model: LocalModel, verifier: Verifier,
                              limiter: trio.CapacityLimiter) -> list[ProbeResult]:
    """Run the probe jobs through the backend and score them locally; raise BackendModelMismatch unless all pass."""
    results = []
    for chat in BACKEND_PROBE_CHATS:
        result = await run_probe(backend, model, verifier, limiter, chat)
        logger.info("backend probe score=%.3f accepted=%s tokens=%d prompt_tokens=%s/%d prompt=%r",
                    result.score_ppm / 1e6, result.accepted, result.n_tokens, result.server_prompt_tokens,
                    result.local_prompt_tokens, result.prompt[:40])
        results.append(result)
    rejected = [r for r in results if not r.accepted]
    if rejected:
        raise BackendModelMismatch(
            f"the backend's model {backend.model_name!r} is not the model this node claims "
            f"(sha256 {model.sha256.hex()}): {len(rejected)} of {len(results)} probe outputs rejected",
            got=[round(r.score_ppm / 1e6, 3) for r in results],
            expected=f"every probe score >= {verifier.threshold_ppm / 1e6}", url=backend.url)
    return results


async def run_probe(backend: OpenAIBackend, model: LocalModel, verifier: Verifier, limiter: trio.CapacityLimiter,
                    chat: Sequence[tuple[str, str]]) -> ProbeResult:
    job = JobSpec.from_chat(chat, model.sha256, BACKEND_PROBE_TOKENS)
    prompt = get_prompt_tokens(model, job)
    completion = await backend.complete(get_backend_prompt_text(model, chat), BACKEND_PROBE_TOKENS)
    # Another tokenizer or chat template shows in the prompt's length before any output does.
    if completion.prompt_tokens is not None and completion.prompt_tokens != len(prompt):
        raise BackendModelMismatch(
            f"the backend tokenises the probe prompt differently from model sha256 {model.sha256.hex()[:16]}",
            got=f"{completion.prompt_tokens} prompt tokens", expected=f"{len(prompt)}", url=backend.url)

    def score() -> tuple[list[int], VerificationResult]:
        tokens = model.tokenize_output(prompt, completion.text, ended=completion.finish_reason == "stop")
        return tokens, verifier.evaluate(job, tokens[: job.max_tokens])

    tokens, verdict = await trio.to_thread.run_sync(score, limiter=limiter)
    return ProbeResult(chat[-1][1], verdict.score_ppm, verdict.accepted, len(tokens), completion.prompt_tokens,
                       len(prompt), completion.text)


# --- parsing and checks (pure) --------------------------------------------------------------------


class SSEParser:
    """Server-sent events, incrementally: bytes in, the data of each complete event out.

    Lines are capped (MAX_SSE_LINE_BYTES); comments (pings), `event:`, `id:`
    and `retry:` fields are ignored; an event's data lines join with "\\n".
    """

    def __init__(self, url: str = "") -> None:
        self._buffer = b""
        self._data: list[str] = []
        self._url = url

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line, self._buffer = self._buffer[:end].rstrip(b"\r"), self._buffer[end + 1 :]
            event = self._take_line(line)
            if event is not None:
                events.append(event)
        if len(self._buffer) > MAX_SSE_LINE_BYTES:
            raise BackendResponseTooLarge("SSE line too long", got=f"> {MAX_SSE_LINE_BYTES} bytes",
                                          expected=f"<= {MAX_SSE_LINE_BYTES} bytes per line", url=self._url)
        return events

    def _take_line(self, line: bytes) -> str | None:
        if not line:
            data, self._data = self._data, []
            return "\n".join(data) if data else None
        if line.startswith(b":"):
            return None
        field, _, value = line.partition(b":")
        if field == b"data":
            try:
                self._data.append(value[1:].decode("utf-8") if value.startswith(b" ") else value.decode("utf-8"))
            except UnicodeDecodeError:
                raise BackendProtocolError("SSE data is not UTF-8", got=value[:40], expected="UTF-8",
                                           url=self._url) from None
        return None


async def read_capped(response: httpx.Response, max_bytes: int, url: str, *, truncate: bool = False) -> bytes:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > max_bytes:
            if truncate:
                return bytes(data[:max_bytes])
            raise BackendResponseTooLarge("response too large", got=f"> {max_bytes} bytes",
                                          expected=f"<= {max_bytes} bytes", url=url)
    return bytes(data)


MAX_JSON_ANSWER_BYTES = 16 << 20  # a model list or a non-streamed completion; far above any real answer

def parse_json(data: bytes | str, url: str) -> Any:
    # Bounded before the parser: installed libraries raise the recursion limit, so a deeply nested answer would
    # run json's C parser off the thread's stack (a segfault, not an exception).
    try:
        return decode_json_bounded(data, max_size=MAX_JSON_ANSWER_BYTES)
    except (ValueError, RecursionError):
        snippet = data[:80] if isinstance(data, str) else data[:80].decode("utf-8", "replace")
        raise BackendProtocolError("answer is not JSON", got=snippet, expected="a JSON object", url=url) from None


def parse_model_list(body: Any, url: str) -> list[str]:
    """Model ids from `/v1/models` ({"data": [{"id": ...}, ...]})."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) > MAX_MODELS_LISTED:
        raise BackendProtocolError("/models is not a model list", got=repr(body)[:80],
                                   expected='{"data": [{"id": str}, ...]}', url=url)
    ids = []
    for entry in data:
        if not (isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry["id"]):
            raise BackendProtocolError("/models entry has no id", got=repr(entry)[:80], expected='{"id": str}', url=url)
        ids.append(entry["id"])
    return ids


def select_model_name(served: Sequence[str], wanted: str | None, url: str) -> str:
    if not served:
        raise BackendModelNotServed("the server lists no models", got=[], expected="at least one model", url=url)
    if wanted is None:
        return served[0]
    if wanted not in served:
        raise BackendModelNotServed("the server does not serve the model asked for (--worker.backend-model)",
                                    got=list(served[:16]), expected=wanted, url=url)
    return wanted


def parse_completion_choice(body: Any, url: str) -> tuple[str, str | None]:
    """(text, finish_reason) of the first choice of a completion (or a streamed chunk of one)."""
    if isinstance(body, dict) and "error" in body:
        raise BackendServerError("server reported an error", got=repr(body["error"])[:300], expected="a completion",
                                 url=url)
    choices = body.get("choices") if isinstance(body, dict) else None
    if not (isinstance(choices, list) and choices and isinstance(choices[0], dict)):
        raise BackendProtocolError("completion has no choices", got=repr(body)[:120],
                                   expected='{"choices": [{"text": str, "finish_reason": ...}]}', url=url)
    choice = choices[0]
    text, finish_reason = choice.get("text"), choice.get("finish_reason")
    if not isinstance(text, str):
        raise BackendProtocolError("choice has no text", got=repr(choice)[:120], expected="text: str", url=url)
    if finish_reason is not None and not isinstance(finish_reason, str):
        raise BackendProtocolError("finish_reason is not a string", got=finish_reason, expected="str or null", url=url)
    return text, finish_reason


def normalize_finish_reason(finish_reason: str | None, url: str) -> str:
    """"stop" (the model ended) or "length" (max_tokens); anything else cannot be a greedy output's end."""
    if finish_reason in ("stop", "eos"):
        return "stop"
    if finish_reason == "length":
        return "length"
    raise BackendProtocolError("unexpected finish_reason", got=finish_reason, expected='"stop" or "length"', url=url)


def parse_prompt_usage(body: Any, url: str) -> int | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    if usage is None:
        return None
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if prompt_tokens is None:
        return None
    if not isinstance(prompt_tokens, int) or isinstance(prompt_tokens, bool) or prompt_tokens < 0:
        raise BackendProtocolError("usage.prompt_tokens is not a count", got=prompt_tokens, expected="int >= 0", url=url)
    return prompt_tokens


def validate_prompt_usage(server_prompt_tokens: int | None, local_prompt_tokens: int, url: str) -> None:
    """A server that tokenises our prompt to another length runs another tokenizer: its output cannot be ours."""
    if server_prompt_tokens is not None and server_prompt_tokens != local_prompt_tokens:
        raise BackendModelMismatch("the backend counted the prompt differently (another tokenizer or model?)",
                                   got=f"{server_prompt_tokens} prompt tokens",
                                   expected=f"{local_prompt_tokens}", url=url)


def validate_text_size(text: str, max_tokens: int, url: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_tokens * TEXT_BYTES_PER_TOKEN:
        raise BackendResponseTooLarge("more text than max_tokens can spell", got=f"{size} bytes",
                                      expected=f"<= {max_tokens * TEXT_BYTES_PER_TOKEN}", url=url)


def make_transport_error(error: httpx.HTTPError, url: str, *, started: bool) -> BackendError:
    """A connection failure: unreachable before any answer, a broken stream after one began."""
    if started:
        return BackendStreamBroken("connection lost mid-answer", got=f"{type(error).__name__}: {error}",
                                   expected="the rest of the stream", url=url)
    return BackendUnreachable("cannot reach the server", got=f"{type(error).__name__}: {error}",
                              expected="an OpenAI-compatible server listening", url=url)


def normalize_base_url(url: str) -> str:
    """The API base with no trailing slash, ending in /v1 (what OpenAI clients are given)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BackendError("backend URL must be http(s)://host[:port][/v1]", got=url,
                           expected="e.g. http://127.0.0.1:11434/v1")
    base = url.rstrip("/")
    return base if base.endswith("/v1") else base + "/v1"


def get_backend_prompt_text(model: LocalModel, chat: Sequence[tuple[str, str]]) -> str:
    """The prompt as text for a server, so that the server's tokens are `tokenize_chat`'s.

    llama.cpp front ends tokenise a completion prompt with special tokens
    parsed and add BOS themselves when the vocabulary asks for it; a BOS the
    template already rendered would then be doubled, so it is left out here.
    """
    text = model.render_chat(chat)
    bos_text = model.get_token_text(model.bos_token) if model.bos_token >= 0 else ""
    if model.adds_bos and bos_text and text.startswith(bos_text):
        return text[len(bos_text):]
    return text


def compute_rate(count: int, seconds: float) -> int:
    return int(count / seconds) if count > 0 and seconds > 0 and math.isfinite(seconds) else 0


def parse_backend_spec(spec: str, model_name: str | None = None, **options) -> LocalBackend | OpenAIBackend:
    """`local` or `openai:URL` (the `--worker.backend` flag) -> a backend."""
    if spec in ("", "local"):
        return LocalBackend()
    kind, _, url = spec.partition(":")
    if kind == "openai" and url:
        return OpenAIBackend(url, model_name, **options)
    raise BackendError("unknown backend", got=spec, expected="local or openai:URL")

