"""One llama.cpp context on one model file: prompts, greedy decoding, teacher-forced logits.

`LocalModel` is synchronous and not thread-safe: a worker serialises access to
it with a `trio.CapacityLimiter(1)` and calls it from `trio.to_thread`. It drives
llama-cpp-python's low-level bindings directly (model and context parameters,
tokeniser, the chat template stored in the GGUF) and the batch API (`llama_batch_init`, per-token `logits` flags,
`llama_decode`, `llama_get_logits_ith`) for everything numeric, so that

- generation is greedy argmax over raw logits, with a fixed batch layout
  (prompt in chunks of `BATCH_TOKENS`, then one token per decode) and a cleared
  KV cache per job: the same job gives the same tokens on every run; and
- verification runs prompt+output as one teacher-forced pass, asking llama.cpp
  for logits only at the positions that predict an output token (the output
  projection over a 49152-token vocabulary is a large share of a 135M model's
  compute, so skipping it for prompt positions matters), and starts that pass
  after the longest prefix already in the KV cache (see `score_output`).

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

from inference.exceptions import InferenceError, MissingChatTemplate, ModelFormatError, PromptTooLong
from inference.models import ModelFile, resolve_model_file

# Protocol constants: every node must agree on which jobs fit (a job rejected by
# one validator for length must be rejected by all), so the context window is
# fixed here rather than taken from the model's training length.
CONTEXT_TOKENS = 2048
# The prefill chunk size is part of the arithmetic (chunking changes rounding),
# so it is fixed too: generation is reproducible only under one batch layout.
BATCH_TOKENS = 512


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

    def __init__(self, model_file: ModelFile, *, n_threads: int | None = None) -> None:
        _init_backend()
        self.file = model_file
        self.sha256 = model_file.sha256
        self.n_threads = n_threads or get_default_thread_count()
        self._model = None
        self._ctx = None
        self._batch = None
        self._model = self._load_model()
        self._ctx = self._make_context()
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.n_ctx = CONTEXT_TOKENS
        self.eos_token = int(llama_cpp.llama_vocab_eos(self._vocab))
        self.bos_token = int(llama_cpp.llama_vocab_bos(self._vocab))
        self._add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self._batch = llama_cpp.llama_batch_init(BATCH_TOKENS, 0, 1)
        # Token ids at KV positions 0..len-1 of sequence 0, in order.
        self._kv_tokens: list[int] = []
        self.tokens_decoded = 0  # all tokens ever passed to llama_decode (how much compute the cache saved)
        self._formatter = self._make_chat_formatter()

    def _load_model(self):
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 0
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
        params.n_ctx = CONTEXT_TOKENS
        params.n_batch = BATCH_TOKENS
        params.n_ubatch = BATCH_TOKENS
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
        assert 0 < len(tokens) <= BATCH_TOKENS and len(tokens) == len(wants_logits)
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
        for start in range(0, len(tokens), BATCH_TOKENS):
            chunk = tokens[start : start + BATCH_TOKENS]
            is_last_chunk = start + len(chunk) == len(tokens)
            self._decode(chunk, start, [is_last_chunk and i == len(chunk) - 1 for i in range(len(chunk))])
        return (len(tokens) - 1) % BATCH_TOKENS

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
            chunk = sequence[start : start + BATCH_TOKENS]
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


def load_model(
    path: str | os.PathLike | None = None,
    *,
    n_threads: int | None = None,
    expected_sha256: bytes | None = None,
):
    """Resolve a model file (`inference.models`) and open a llama.cpp context on it."""
    return LocalModel(resolve_model_file(path, expected_sha256), n_threads=n_threads)
