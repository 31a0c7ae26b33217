"""One llama.cpp context on one model file: prompts, greedy decoding, teacher-forced logits.

`LocalModel` is synchronous and not thread-safe: a worker serialises access to
it with a `trio.CapacityLimiter(1)` and calls it from `trio.to_thread`. It drives
llama-cpp-python's low-level bindings directly (model and context parameters,
tokeniser, the chat template stored in the GGUF) and the batch API (`llama_batch_init`, per-token `logits` flags,
`llama_decode`, `llama_get_logits_ith`) for everything numeric, so that

- generation is greedy argmax over raw logits, with a fixed batch layout
  (prompt in chunks of `n_batch`, then one token per decode) and a cleared
  KV cache per job: the same job gives the same tokens on every run and
  engine settings; and
- verification runs prompt+output as one teacher-forced pass, asking llama.cpp
  for logits only at the positions that predict an output token (the output
  projection over a 49152-token vocabulary is a large share of a 135M model's
  compute, so skipping it for prompt positions matters), and starts that pass
  after the longest prefix already in the KV cache (see `score_output`).

`EngineSettings` are the operator's knobs (threads, GPU layers, context and
batch size): they change speed and rounding, never which jobs fit (that is the
protocol's `CONTEXT_TOKENS`), and the verifier's tolerance absorbs the
rounding (generator and verifier may run different settings).

The context tracks which tokens its KV cache holds (`cached_tokens`), the way
llama.cpp's server does for `cache_prompt`, so that prefix reuse can never
pair a cache with the wrong tokens.
"""
from __future__ import annotations

import codecs
import ctypes
import logging
import os
from typing import Callable, Iterator, NamedTuple, Sequence

import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from inference.exceptions import (
    EngineSettingsError,
    InferenceError,
    InvalidOutputText,
    MissingChatTemplate,
    ModelFormatError,
    PromptTooLong,
)
from inference.models import ModelFile, resolve_model_file

# Protocol constants: every node must agree on which jobs fit (a job rejected by
# one validator for length must be rejected by all), so the context window is
# fixed here rather than taken from the model's training length.
CONTEXT_TOKENS = 2048
# The default prefill chunk size. Chunking is part of the arithmetic (it changes
# rounding), so generation is reproducible only under one batch layout; the
# verifier's tolerance absorbs the difference when `EngineSettings.n_batch` differs.
BATCH_TOKENS = 512
# How far below the best token's logit an honest token may score (nats): `inference.verifier` states the
# calibration; it lives here because turning text into tokens (`tokenize_output`) uses it too.
GAP_TOLERANCE_NATS = 0.75
# tokenize_output checks guesses in chunks of up to n_batch - 1 tokens.
MIN_BATCH_TOKENS = 8

logger = logging.getLogger("inference.engine")


class LlamaDecodeError(InferenceError):
    def __init__(self, code: int, n_tokens: int) -> None:
        self.code = code
        self.n_tokens = n_tokens
        super().__init__(f"llama_decode returned {code} for a batch of {n_tokens} tokens")


class TokenScores(NamedTuple):
    """Teacher-forced statistics for each claimed output token, in output order."""

    gaps: np.ndarray  # float32: best logit minus the claimed token's logit (>= 0, nats)
    logprobs: np.ndarray  # float32: log-probability of the claimed token
    argmax: np.ndarray  # int32: the model's best token at that position
    runner_up: np.ndarray  # int32: second-best token (-1 unless asked for)


TokenChooser = Callable[[int, np.ndarray], int]


def choose_greedy(step: int, logits: np.ndarray) -> int:
    # np.argmax takes the first of equal maxima: ties break the same way everywhere.
    return int(np.argmax(logits))


def get_default_thread_count() -> int:
    """Every core this process may use but one, and at least one.

    ggml's threads meet at spin barriers after every operation, so a thread
    descheduled by anything else on its core stalls its partners for a whole
    time slice. Measured here with other processes busy: 1 thread 11.9 tok/s,
    2 threads 0.6 tok/s on the same job. A node's own event loop (consensus,
    p2p, RPC) needs a core, so the model gets the rest: 1 thread on this
    project's 2-core machine. Several workers on one machine (a devnet) should
    split the cores explicitly (`--worker.threads`); a worker with the machine
    to itself and nothing else to do may take all of them.
    """
    return max(1, len(os.sched_getaffinity(0)) - 1)


class EngineSettings(NamedTuple):
    """How llama.cpp runs a model here: speed knobs an operator may set (`--worker.*`).

    0 for `n_threads` means the default (`get_default_thread_count`).
    `n_ctx` is the llama context's size, at least the protocol's window;
    `n_gpu_layers` > 0 offloads that many layers when llama.cpp was built
    with a GPU backend (see `supports_gpu_offload`), else runs on the CPU.
    """

    n_threads: int = 0
    n_gpu_layers: int = 0
    n_ctx: int = CONTEXT_TOKENS
    n_batch: int = BATCH_TOKENS

    def resolve(self) -> "EngineSettings":
        """The settings the engine will actually use (validated; automatic values filled in; GPU only if built)."""
        validate_engine_settings(self)
        threads = self.n_threads or get_default_thread_count()
        gpu_layers = self.n_gpu_layers
        if gpu_layers > 0 and not supports_gpu_offload():
            logger.warning("--worker.gpu-layers %d asked, but this llama.cpp build has no GPU backend: "
                           "running on the CPU (rebuild llama-cpp-python with e.g. CMAKE_ARGS=-DGGML_CUDA=on)",
                           gpu_layers)
            gpu_layers = 0
        return self._replace(n_threads=threads, n_gpu_layers=gpu_layers)

    def to_json(self) -> dict:
        return {"threads": self.n_threads, "gpuLayers": self.n_gpu_layers, "ctx": self.n_ctx, "batch": self.n_batch}


def validate_engine_settings(settings: EngineSettings) -> None:
    for name in ("n_threads", "n_gpu_layers", "n_ctx", "n_batch"):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise EngineSettingsError(name, value, "an integer")
    if settings.n_threads < 0:
        raise EngineSettingsError("n_threads", settings.n_threads, ">= 0 (0: automatic)")
    if settings.n_gpu_layers < 0:
        raise EngineSettingsError("n_gpu_layers", settings.n_gpu_layers, ">= 0 (0: CPU only)")
    # A smaller context would refuse jobs that every other node accepts.
    if settings.n_ctx < CONTEXT_TOKENS:
        raise EngineSettingsError("n_ctx", settings.n_ctx, f">= {CONTEXT_TOKENS} (the protocol's context window)")
    if not MIN_BATCH_TOKENS <= settings.n_batch <= settings.n_ctx:
        raise EngineSettingsError("n_batch", settings.n_batch, f"{MIN_BATCH_TOKENS}..n_ctx ({settings.n_ctx})")


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build has a GPU backend (CUDA, Metal, Vulkan, ...) to offload layers to."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def make_engine_settings(settings: EngineSettings | None, n_threads: int | None) -> EngineSettings:
    """`settings`, or the defaults; the older `n_threads=` keyword overrides its thread count."""
    settings = settings or EngineSettings()
    return settings._replace(n_threads=n_threads) if n_threads else settings


_backend_ready = False


def _init_backend() -> None:
    global _backend_ready
    if not _backend_ready:
        # llama.cpp's load chatter goes through llama-cpp-python's logger; keep errors only.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        _backend_ready = True


class LocalModel:
    """A loaded model with its own llama.cpp context."""

    def __init__(
        self, model_file: ModelFile, *, settings: EngineSettings | None = None, n_threads: int | None = None
    ) -> None:
        self._model = self._ctx = self._batch = None  # `close` may run on a half-built instance
        # Validate before touching llama.cpp: a bad setting is the operator's error, not a load failure.
        self.settings = make_engine_settings(settings, n_threads).resolve()
        _init_backend()
        self.file = model_file
        self.sha256 = model_file.sha256
        self.n_threads = self.settings.n_threads
        self.n_batch = self.settings.n_batch
        self._model = None
        self._ctx = None
        self._batch = None
        self._model = self._load_model()
        self._ctx = self._make_context()
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = CONTEXT_TOKENS  # the protocol's window (which jobs fit), whatever the llama context holds
        self.eos_token = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.bos_token = int(llama_cpp.llama_vocab_bos(self._vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        # Token ids at KV positions 0..len-1 of sequence 0, in order.
        self._kv_tokens: list[int] = []
        self.tokens_decoded = 0  # all tokens ever passed to llama_decode (how much compute the cache saved)
        self._formatter = self._make_chat_formatter()

    def _load_model(self):
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = self.settings.n_gpu_layers
        # Extra buffer types repack weights for AMX and friends. On hosts that
        # advertise AMX but do not grant it to the process, ggml's AMX matmul
        # segfaults on the first multi-token batch (seen on this project's
        # build machine), and for Q4_1 it buys nothing we rely on; the plain
        # CPU kernels are the portable, reproducible path.
        params.use_extra_bufts = False
        model = llama_cpp.llama_model_load_from_file(str(self.file.path).encode(), params)
        if not model:
            raise ModelFormatError(str(self.file.path), self.sha256, "llama.cpp could not load it")
        return model

    def _make_context(self):
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = self.settings.n_ctx
        params.n_batch = self.n_batch
        params.n_ubatch = self.n_batch
        params.n_seq_max = 1
        params.n_threads = self.n_threads
        params.n_threads_batch = self.n_threads
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(self._model, params)
        if not ctx:
            raise ModelFormatError(str(self.file.path), self.sha256, "llama.cpp could not create a context")
        return ctx

    def close(self) -> None:
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model is not None:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()

    def __enter__(self) -> "LocalModel":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- text ---------------------------------------------------------------

    def _make_chat_formatter(self) -> Jinja2ChatFormatter:
        # The template is data in the GGUF, so another model brings its own
        # prompt format; nothing here knows SmolLM2's ChatML.
        template = llama_cpp.llama_model_chat_template(self._model, None)
        if not template:
            raise MissingChatTemplate(str(self.file.path))
        self.chat_template = template.decode("utf-8")
        return Jinja2ChatFormatter(
            template=self.chat_template,
            eos_token=self.get_token_text(self.eos_token),
            bos_token=self.get_token_text(self.bos_token) if self.bos_token >= 0 else "",
            add_generation_prompt=True,
        )

    def get_token_text(self, token: int) -> str:
        return llama_cpp.llama_vocab_get_text(self._vocab, token).decode("utf-8", errors="replace")

    def render_chat(self, messages: Sequence[tuple[str, str]]) -> str:
        rendered = self._formatter(messages=[{"role": role, "content": content} for role, content in messages])
        return rendered.prompt

    def tokenize_chat(self, messages: Sequence[tuple[str, str]]) -> list[int]:
        prompt = self.render_chat(messages)
        bos_text = self.get_token_text(self.bos_token) if self.bos_token >= 0 else ""
        add_bos = self._add_bos and not (bos_text and prompt.startswith(bos_text))
        # parse_special: the template's control markers (<|im_start|> ...) must
        # map to their special tokens, not to their spelling.
        return self._tokenize(prompt.encode("utf-8"), add_bos=add_bos, parse_special=True)

    @property
    def adds_bos(self) -> bool:
        """Whether this vocabulary asks for a BOS token before a prompt (llama.cpp front ends add it themselves)."""
        return self._add_bos

    def tokenize_text(self, text: str) -> list[int]:
        """Tokens of plain text continuing a prompt (no BOS; control markers stay literal text)."""
        return self._tokenize(text.encode("utf-8"), add_bos=False, parse_special=False)

    def _tokenize(self, data: bytes, *, add_bos: bool, parse_special: bool) -> list[int]:
        capacity = len(data) + 8
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, capacity, add_bos, parse_special)
            if n >= 0:
                return list(buffer[:n])
            capacity = -n

    def get_token_bytes(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if n < 0:
            buffer = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:n]

    def detokenize(self, tokens: Sequence[int]) -> str:
        # Byte-level BPE pieces concatenate exactly; decoding once at the end
        # keeps characters that span tokens whole.
        return b"".join(self.get_token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def make_text_decoder(self) -> codecs.IncrementalDecoder:
        """A UTF-8 decoder for streaming: a character split across tokens comes out whole."""
        return codecs.getincrementaldecoder("utf-8")(errors="replace")

    def is_end_of_generation(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def validate_fits_context(self, prompt_tokens: int, max_tokens: int) -> None:
        if prompt_tokens + max_tokens > self.n_ctx:
            raise PromptTooLong(prompt_tokens, max_tokens, self.n_ctx)

    # --- batches ------------------------------------------------------------

    @property
    def cached_tokens(self) -> tuple[int, ...]:
        """The tokens whose keys and values the context's cache holds, from position 0."""
        return tuple(self._kv_tokens)

    def _clear_memory(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        self._kv_tokens = []

    def _truncate_memory(self, length: int) -> None:
        """Drop every cached position from `length` on; positions before it stay."""
        if length == 0:
            self._clear_memory()
        elif length < len(self._kv_tokens):
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(self._ctx), 0, length, -1)
            del self._kv_tokens[length:]

    def _decode(self, tokens: Sequence[int], start_pos: int, wants_logits: Sequence[bool]) -> None:
        assert 0 < len(tokens) <= self.n_batch and len(tokens) == len(wants_logits)
        assert start_pos == len(self._kv_tokens), "a batch must continue the cached sequence"
        batch = self._batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start_pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if wants_logits[i] else 0
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            # A failed batch may have left part of itself in the cache.
            self._clear_memory()
            raise LlamaDecodeError(code, len(tokens))
        self._kv_tokens.extend(int(t) for t in tokens)
        self.tokens_decoded += len(tokens)

    def _get_logits(self, batch_index: int) -> np.ndarray:
        pointer = llama_cpp.llama_get_logits_ith(self._ctx, batch_index)
        return np.ctypeslib.as_array(ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))

    def _prefill(self, tokens: Sequence[int]) -> int:
        """Decode a prompt from an empty cache; logits only for its last token.

        Returns the batch index of that last token's logits.
        """
        self._clear_memory()
        for start in range(0, len(tokens), self.n_batch):
            chunk = tokens[start : start + self.n_batch]
            is_last_chunk = start + len(chunk) == len(tokens)
            self._decode(chunk, start, [is_last_chunk and i == len(chunk) - 1 for i in range(len(chunk))])
        return (len(tokens) - 1) % self.n_batch

    # --- generation -----------------------------------------------------------

    def iter_greedy(self, prompt_tokens: Sequence[int], max_tokens: int) -> Iterator[int]:
        """Greedy tokens for a prompt, ending with an end-of-generation token or at max_tokens.

        The end-of-generation token, when reached, is yielded (it is part of the
        claimed output: it proves the output was not cut short). Closing the
        iterator early leaves the context dirty; the next job clears it.
        """
        return self.iter_decode(prompt_tokens, max_tokens, choose_greedy)

    def iter_decode(self, prompt_tokens: Sequence[int], max_tokens: int, choose: TokenChooser) -> Iterator[int]:
        """Decode token by token, `choose(step, logits)` picking each next token.

        Workers only ever use `choose_greedy`; other choosers exist to build the
        cheat set the verifier is calibrated and tested against.
        """
        assert prompt_tokens and max_tokens > 0
        self.validate_fits_context(len(prompt_tokens), max_tokens)
        logits_index = self._prefill(prompt_tokens)
        position = len(prompt_tokens)
        for step in range(max_tokens):
            token = int(choose(step, self._get_logits(logits_index)))
            yield token
            if step + 1 == max_tokens or self.is_end_of_generation(token):
                return
            self._decode([token], position, [True])
            logits_index = 0
            position += 1

    # --- teacher forcing ------------------------------------------------------

    def score_output(
        self, prompt_tokens: Sequence[int], output_tokens: Sequence[int], *, with_runner_up: bool = False
    ) -> TokenScores:
        """Score claimed output tokens in one teacher-forced pass over prompt+output.

        Position p of the sequence predicts token p+1, so the positions that need
        logits are the last prompt token and every output token but the last.
        """
        assert prompt_tokens and output_tokens
        sequence = list(prompt_tokens) + list(output_tokens[:-1])
        first_scored = len(prompt_tokens) - 1
        n_out = len(output_tokens)
        gaps = np.empty(n_out, dtype=np.float32)
        logprobs = np.empty(n_out, dtype=np.float32)
        argmax = np.empty(n_out, dtype=np.int32)
        runner_up = np.full(n_out, -1, dtype=np.int32)
        # Keys and values depend only on the tokens before them, so a cached
        # prefix (typically the chat template's system turn, shared by most
        # jobs) need not be recomputed; logits exist only for positions decoded
        # now, so the pass restarts at the first scored position at the latest.
        # The cache may come from another batch layout: its values then differ
        # by rounding, the same kind of noise batched-vs-sequential decoding
        # already brings and the tolerance is calibrated for.
        start = min(compute_common_prefix_length(self._kv_tokens, sequence), first_scored)
        self._truncate_memory(start)
        while start < len(sequence):
            chunk = sequence[start : start + self.n_batch]
            self._decode(chunk, start, [start + i >= first_scored for i in range(len(chunk))])
            for i in range(max(0, first_scored - start), len(chunk)):
                k = start + i - first_scored
                logits = self._get_logits(i)
                claimed = output_tokens[k]
                best = int(np.argmax(logits))
                top = float(logits[best])
                gaps[k] = top - float(logits[claimed])
                logprobs[k] = float(logits[claimed]) - compute_logsumexp(logits, top)
                argmax[k] = best
                if with_runner_up:
                    runner_up[k] = get_runner_up(logits, best)
            start += len(chunk)
        return TokenScores(gaps, logprobs, argmax, runner_up)

    def score_continuations(self, prompt_tokens: Sequence[int], continuations: Sequence[Sequence[int]]) -> list[float]:
        """Total log-probability of each continuation after one shared prompt.

        The prompt is decoded once; for each continuation the cache is cut back
        to the prompt (`llama_memory_seq_rm`) and only the continuation is decoded.
        """
        assert prompt_tokens and all(continuations)
        self.validate_fits_context(len(prompt_tokens), max(len(c) for c in continuations))
        last = self._prefill(prompt_tokens)
        first_row = self._get_logits(last).copy()
        first_norm = compute_logsumexp(first_row, float(np.max(first_row)))
        totals = []
        for continuation in continuations:
            total = float(first_row[continuation[0]]) - first_norm
            rest = list(continuation[:-1])
            if len(continuation) > 1:
                self._truncate_memory(len(prompt_tokens))
                self._decode(rest, len(prompt_tokens), [True] * len(rest))
                for i, token in enumerate(continuation[1:]):
                    row = self._get_logits(i)
                    total += float(row[token]) - compute_logsumexp(row, float(np.max(row)))
            totals.append(total)
        return totals

    def compute_continuation_logprob(self, prompt_tokens: Sequence[int], continuation: Sequence[int]) -> float:
        """Total log-probability of `continuation` following `prompt_tokens`."""
        return float(np.sum(self.score_output(prompt_tokens, continuation).logprobs, dtype=np.float64))

    # --- text outputs: model-consistent tokenisation ----------------------------------

    _pieces: "PieceIndex | None" = None  # built on first use by `_get_piece_index`

    def tokenize_output(
        self, prompt_tokens: Sequence[int], text: str, *, ended: bool, tolerance: float | None = None
    ) -> list[int]:
        """The output tokens that spell `text` after `prompt_tokens`, as this model generated them.

        Front ends (llama-server, Ollama, LM Studio, llama-cpp-python's server)
        return text, not token ids, and plain re-tokenisation (`tokenize_text`)
        does not recover what the model generated: BPE picks the canonical
        segmentation of each word, while a model is free to generate another
        spelling of the same bytes ("j" + "eur" where BPE gives "je" + "ur";
        "'" + ");" for "');"; "\n" + "\n" for "\n\n"), and teacher-forcing the
        canonical one can put a token far outside the verifier's tolerance
        (10.2 nats for "je"). This is the protocol's rule for text, position
        by position over the text's bytes:

        1. the plain BPE token of the rest of the text, if its log-probability
           is within `tolerance` of the best token's;
        2. else the text-consistent token (one whose bytes start the rest of
           the text) with the highest logit (lowest id on a tie), if within
           tolerance; the rest of the text is then re-tokenised after it;
        3. else (no spelling is within tolerance: the position counts against
           the claim whatever is chosen) the BPE token;

        then, when `ended` (finish_reason "stop"), the highest-logit
        end-of-generation token. An honest greedy output is always recovered
        in the sense that matters: its own token at each position is within
        tolerance and text-consistent, so rule 3 never applies to it; the
        calibration outputs come back token for token. It gives a cheat
        nothing that claiming tokens does not: a worker that submits token ids
        may already pick any segmentation of its text.

        The BPE guesses are checked in one batched teacher-forced pass (logits
        at every output position, reusing the KV cache's prefix); each switch
        (rule 2) re-decodes from that position in chunks that start at
        TEXT_CHUNK_MIN and double while guesses hold. A text that no token
        spells within tolerance costs one pass, like scoring it.

        A text cut inside a character: a trailing U+FFFD (how llama-server and
        `bytes.decode(errors="replace")` show an incomplete character) stands
        for bytes that are not known, so it is dropped and the end is not
        claimed (`ended` is ignored). When the text may be cut short (not
        `ended`) and, at a position where nothing is within tolerance, the
        model's best token runs past the end of the text, the last token was
        cut (a front end that drops an incomplete character, errors="ignore"):
        that tail is dropped rather than scored as a wrong token. A U+FFFD
        inside the text is taken literally.

        `tolerance` defaults to GAP_TOLERANCE_NATS (the verifier's). The result
        is deterministic for one model file and engine settings. Raises
        InvalidOutputText when the text is not encodable or not spellable with
        this vocabulary, PromptTooLong when it cannot fit the context.
        """
        if tolerance is None:
            tolerance = GAP_TOLERANCE_NATS

        assert prompt_tokens, "an output continues a prompt"
        data, is_complete = get_output_bytes(text)
        ended = ended and is_complete
        if not data and not ended:
            return []
        pieces = self._get_piece_index()
        prompt = [int(t) for t in prompt_tokens]
        output: list[int] = []
        done = 0  # bytes of `data` spelt by `output`
        guess = self._guess_output_tokens(data)  # tokens meant to spell data[done:]
        chunk = self.n_batch - 1  # most guesses hold: first try them all in one pass
        # Every round appends at least one token that spells at least one byte
        # (or ends), so there are at most len(data) + 1 rounds.
        while True:
            # Logits are needed from the position that predicts output[len(output)] on.
            first_needed = len(prompt) + len(output) - 1
            room = self.n_ctx - first_needed - 1
            if room < 0:
                raise PromptTooLong(len(prompt), len(output) + 1, self.n_ctx)
            ahead = guess[: min(chunk, room, self.n_batch - 1)]
            self._decode_for_rows(prompt + output + ahead, first_needed)
            held = 0  # guessed tokens confirmed this round
            for row in range(len(ahead) + 1):
                logits = self._get_logits(row)
                rest = data[done:]
                if not rest:
                    if ended:
                        output.append(get_best_of(logits, pieces.eog_tokens))
                    return output
                guessed = guess[row] if row < len(guess) else -1
                chosen = self._choose_output_token(logits, rest, guessed, pieces, tolerance, may_be_cut=not ended)
                if chosen is None:
                    return output
                token, size = chosen
                output.append(token)
                done += size
                if row < len(guess) and token == guess[row]:
                    held = row + 1
                    continue
                held = -1
                break
            if held < 0:
                # The guess left the model's spelling: guess the rest afresh from here.
                guess = self._guess_output_tokens(data[done:])
                chunk = TEXT_CHUNK_MIN
            else:
                guess = guess[held:]
                chunk = min(2 * chunk, self.n_batch - 1)

    def _decode_for_rows(self, sequence: list[int], first_needed: int) -> int:
        """Decode `sequence` with logits at positions first_needed.. (batch rows 0..), reusing the cached prefix.

        Positions before `first_needed` are decoded without logits in batches
        of n_batch; the caller keeps sequence[first_needed:] within one batch.
        """
        assert len(sequence) - first_needed <= self.n_batch
        start = min(compute_common_prefix_length(self._kv_tokens, sequence), first_needed)
        self._truncate_memory(start)
        while start < first_needed:
            part = sequence[start : min(first_needed, start + self.n_batch)]
            self._decode(part, start, [False] * len(part))
            start += len(part)
        tail = sequence[first_needed:]
        self._decode(tail, first_needed, [True] * len(tail))
        return len(tail)

    def _guess_output_tokens(self, data: bytes) -> list[int]:
        """Plain BPE tokens for `data`, the guess `tokenize_output` checks position by position.

        `data` may start inside a character (after a byte-level token); llama.cpp
        tokenises code points, so leading continuation bytes are guessed as
        single-byte tokens and the rest, valid UTF-8 from a character boundary,
        is tokenised normally. A wrong guess only costs a re-decode.
        """
        pieces = self._get_piece_index()
        guess = []
        lead = 0
        while lead < len(data) and 0x80 <= data[lead] < 0xC0:
            guess.append(min(pieces.by_bytes.get(data[lead : lead + 1], (0,))))
            lead += 1
        if lead < len(data):
            guess.extend(self._tokenize(data[lead:], add_bos=False, parse_special=False))
        return guess

    def _choose_output_token(
        self, logits: np.ndarray, rest: bytes, guessed: int, pieces: "PieceIndex", tolerance: float, *, may_be_cut: bool
    ) -> tuple[int, int] | None:
        """(token, bytes it spells) for the next output position, or None when the text ends inside a token.

        In order: the guessed (plain BPE) token if it spells the start of
        `rest` within tolerance; else the best text-consistent token if within
        tolerance; else, nothing being within tolerance, the position counts
        against the claim whatever is chosen, so the cut rule applies, then the
        guess stands (no re-decode: a cheat costs one pass, not one per token).
        """
        top = int(np.argmax(logits))
        top_logit = float(logits[top])
        guessed_bytes = pieces.bytes_of.get(guessed, b"")
        guess_spells = bool(guessed_bytes) and rest.startswith(guessed_bytes)
        if guess_spells and top_logit - float(logits[guessed]) <= tolerance:
            return guessed, len(guessed_bytes)
        token, size = self._get_best_spelling(logits, rest, pieces)
        if top_logit - float(logits[token]) <= tolerance:
            return token, size
        top_bytes = pieces.bytes_of.get(top, b"")
        if may_be_cut and len(top_bytes) > len(rest) and top_bytes.startswith(rest):
            return None
        return (guessed, len(guessed_bytes)) if guess_spells else (token, size)

    def _get_best_spelling(self, logits: np.ndarray, rest: bytes, pieces: "PieceIndex") -> tuple[int, int]:
        """The highest-logit token whose bytes start `rest` (lowest id on a tie), and its length in bytes."""
        best, best_size, best_logit = -1, 0, -np.inf
        for size in range(1, min(pieces.max_bytes, len(rest)) + 1):
            for token in pieces.by_bytes.get(rest[:size], ()):
                logit = float(logits[token])
                if logit > best_logit or (logit == best_logit and token < best):
                    best, best_size, best_logit = token, size, logit
        if best < 0:
            raise InvalidOutputText(
                "no token of this model spells the text here",
                got=rest[:16], expected="bytes that start some token's piece",
            )
        return best, best_size

    def get_max_piece_bytes(self) -> int:
        """The most bytes one text token spells (a bound on text per token)."""
        return self._get_piece_index().max_bytes

    def _get_piece_index(self) -> "PieceIndex":
        """Which tokens spell which bytes, built once per model (a pass over the vocabulary)."""
        if self._pieces is None:
            by_bytes: dict[bytes, list[int]] = {}
            bytes_of: dict[int, bytes] = {}
            eog_tokens = []
            for token in range(self.n_vocab):
                if self.is_end_of_generation(token):
                    eog_tokens.append(token)
                    continue
                # Control tokens render as b"" without `special`: they never spell text.
                piece = self.get_token_bytes(token)
                if piece:
                    by_bytes.setdefault(piece, []).append(token)
                    bytes_of[token] = piece
            if not eog_tokens:
                eog_tokens = [self.eos_token]
            self._pieces = PieceIndex(
                by_bytes={k: tuple(v) for k, v in by_bytes.items()},
                bytes_of=bytes_of,
                max_bytes=max(len(k) for k in by_bytes),
                eog_tokens=tuple(eog_tokens),
            )
        return self._pieces


def compute_common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def compute_logsumexp(logits: np.ndarray, top: float) -> float:
    return top + float(np.log(np.sum(np.exp(logits - top), dtype=np.float64)))


def get_runner_up(logits: np.ndarray, best: int) -> int:
    top_two = np.argpartition(logits, -2)[-2:]
    other = [int(t) for t in top_two if int(t) != best]
    return other[0] if other else int(top_two[0])


# --- text outputs (see `LocalModel.tokenize_output`) ------------------------------

# Guessed tokens checked per round after a fix; doubles while guesses hold. Small
# because a fix throws away the rest of the round's batch.
TEXT_CHUNK_MIN = 8
REPLACEMENT_CHARACTER = "\ufffd"


class PieceIndex(NamedTuple):
    by_bytes: dict[bytes, tuple[int, ...]]  # piece bytes -> every text token spelling exactly them
    bytes_of: dict[int, bytes]  # text token -> its piece
    max_bytes: int  # longest piece
    eog_tokens: tuple[int, ...]  # end-of-generation tokens (they spell nothing)


def get_output_bytes(text: str) -> tuple[bytes, bool]:
    """(UTF-8 bytes of a claimed output text, whether the text is whole).

    Trailing U+FFFD is how front ends show a last character cut short (its
    bytes are unknown), so it is dropped and the text is marked not whole.
    """
    if not isinstance(text, str):
        raise InvalidOutputText("expected a string", got=type(text).__name__, expected="str")
    stripped = text.rstrip(REPLACEMENT_CHARACTER)
    try:
        data = stripped.encode("utf-8")
    except UnicodeEncodeError as error:  # lone surrogates, e.g. from a JSON "\ud800"
        raise InvalidOutputText(
            "text is not encodable as UTF-8", got=repr(error.object[error.start : error.end]), expected="Unicode scalar values"
        ) from error
    return data, stripped == text


def get_best_of(logits: np.ndarray, tokens: Sequence[int]) -> int:
    """The highest-logit token among `tokens`, lowest id on a tie (as np.argmax breaks ties)."""
    return min(tokens, key=lambda t: (-float(logits[t]), t))


def load_model(
    path: str | os.PathLike | None = None,
    *,
    settings: EngineSettings | None = None,
    n_threads: int | None = None,
    expected_sha256: bytes | None = None,
):
    """Resolve a model file (`inference.models`) and open a llama.cpp context on it.

    `n_threads` is kept for callers that set only that; it overrides `settings.n_threads`.
    """
    return LocalModel(resolve_model_file(path, expected_sha256), settings=settings, n_threads=n_threads)
