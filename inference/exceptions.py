"""Typed errors of the inference package.

Everything that comes from outside (a model file, a job, a claimed output, a
label set) is checked, and a failure raises a subclass of `InferenceError`
carrying what was got and what was expected, in the manner of
ethereum/execution-specs. Callers that must never crash (the node, the CLI, an
attester) catch `InferenceError` and turn it into a rejection.
"""
from __future__ import annotations


class InferenceError(Exception):
    """Base of every error raised by `inference/`."""


# --- model files -----------------------------------------------------------


class ModelError(InferenceError):
    """A model file could not be used."""


class ModelNotFound(ModelError):
    def __init__(self, path: str, expected_sha256: bytes | None = None, detail: str = "") -> None:
        self.path = path
        self.expected_sha256 = expected_sha256
        expected = f" (expected sha256 {expected_sha256.hex()})" if expected_sha256 else ""
        suffix = f": {detail}" if detail else ""
        super().__init__(f"model file not found at {path}{expected}{suffix}")


class ModelHashMismatch(ModelError):
    """The file exists but is not the model it should be (truncated, corrupt, replaced)."""

    def __init__(self, path: str, expected_sha256: bytes, got_sha256: bytes) -> None:
        self.path = path
        self.expected_sha256 = expected_sha256
        self.got_sha256 = got_sha256
        super().__init__(
            f"model file {path} is corrupt or not the expected model: "
            f"sha256 {got_sha256.hex()}, expected {expected_sha256.hex()}"
        )


class ModelFormatError(ModelError):
    """The file is not a GGUF model llama.cpp can load."""

    def __init__(self, path: str, sha256: bytes | None, detail: str) -> None:
        self.path = path
        self.sha256 = sha256
        self.detail = detail
        named = f" (sha256 {sha256.hex()})" if sha256 else ""
        super().__init__(f"model file {path}{named} is not a loadable GGUF model: {detail}")


class MissingChatTemplate(ModelError):
    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"model file {path} has no tokenizer.chat_template in its GGUF metadata")


class UnsupportedModel(ModelError):
    """The node has no loaded model with the requested hash."""

    def __init__(self, got_sha256: bytes, available: tuple[bytes, ...]) -> None:
        self.got_sha256 = got_sha256
        self.available = available
        names = ", ".join(h.hex() for h in available) or "none"
        super().__init__(f"no model with sha256 {got_sha256.hex()} is loaded (available: {names})")


# --- jobs -------------------------------------------------------------------


class InvalidJob(InferenceError):
    """A job spec that can never be served (bad roles, zero max_tokens, ...)."""

    def __init__(self, reason: str, got: object = None, expected: object = None) -> None:
        self.reason = reason
        self.got = got
        self.expected = expected
        detail = ""
        if got is not None or expected is not None:
            detail = f" (got {got!r}, expected {expected})"
        super().__init__(f"invalid job: {reason}{detail}")


class PromptTooLong(InvalidJob):
    """Prompt plus the requested output does not fit the protocol's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, context_tokens: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        super().__init__(
            "prompt plus max_tokens exceeds the context window",
            got=f"{prompt_tokens} prompt tokens + {max_tokens} max_tokens",
            expected=f"at most {context_tokens} tokens in total",
        )


# --- claimed outputs ----------------------------------------------------------


class VerificationError(InferenceError):
    """A claimed output that cannot even be scored: the attester rejects it with score 0."""


class WrongModel(VerificationError):
    def __init__(self, got_sha256: bytes, expected_sha256: bytes) -> None:
        self.got_sha256 = got_sha256
        self.expected_sha256 = expected_sha256
        super().__init__(
            f"job names model sha256 {got_sha256.hex()}, but this verifier runs {expected_sha256.hex()}"
        )


class EmptyOutput(VerificationError):
    def __init__(self) -> None:
        super().__init__("claimed output has no tokens (expected at least 1)")


class MaxTokensExceeded(VerificationError):
    def __init__(self, got: int, max_tokens: int) -> None:
        self.got = got
        self.max_tokens = max_tokens
        super().__init__(f"claimed output has {got} tokens, the job allows at most {max_tokens}")


class TokenOutOfVocabulary(VerificationError):
    def __init__(self, index: int, token: int, n_vocab: int) -> None:
        self.index = index
        self.token = token
        self.n_vocab = n_vocab
        super().__init__(f"output token #{index} is {token}, expected an id in [0, {n_vocab})")


class TokensAfterEndOfGeneration(VerificationError):
    """Greedy decoding stops at an end-of-generation token; nothing may follow it."""

    def __init__(self, index: int, token: int) -> None:
        self.index = index
        self.token = token
        super().__init__(
            f"output token #{index} ({token}) ends generation but more tokens follow it"
        )


class InvalidOutputText(VerificationError):
    def __init__(self, detail: str, got: object = None, expected: object = None) -> None:
        self.detail = detail
        self.got = got
        self.expected = expected
        suffix = f" (got {got!r}, expected {expected})" if got is not None or expected is not None else ""
        super().__init__(f"claimed output text is unusable: {detail}{suffix}")


# --- workers ------------------------------------------------------------------


class WorkerError(InferenceError):
    """The worker could not serve a job."""


class WorkerNotRunning(WorkerError):
    def __init__(self) -> None:
        super().__init__("the worker is not running (start it with nursery.start(worker.run))")


class WorkerQueueFull(WorkerError):
    def __init__(self, queue_depth: int, limit: int) -> None:
        self.queue_depth = queue_depth
        self.limit = limit
        super().__init__(f"worker queue is full: {queue_depth} jobs waiting, limit {limit}")


class JobDeadlineExceeded(WorkerError):
    def __init__(self, seconds: float, tokens_done: int, partial: object = None) -> None:
        self.seconds = seconds
        self.tokens_done = tokens_done
        self.partial = partial
        super().__init__(f"job missed its {seconds:.3f}s deadline after {tokens_done} tokens")


class JobCancelled(WorkerError):
    def __init__(self, tokens_done: int) -> None:
        self.tokens_done = tokens_done
        super().__init__(f"job was cancelled after {tokens_done} tokens")


# --- engine settings and backends -----------------------------------------------


class EngineSettingsError(InferenceError):
    """An engine setting (threads, context, batch, GPU layers) that cannot work."""

    def __init__(self, name: str, got: object, expected: str) -> None:
        self.name = name
        self.got = got
        self.expected = expected
        super().__init__(f"engine setting {name} is {got!r}, expected {expected}")


class BackendError(WorkerError):
    """A generation backend (an OpenAI-compatible server) failed or answered something unusable."""

    def __init__(self, reason: str, got: object = None, expected: object = None, *, url: str = "") -> None:
        self.reason = reason
        self.got = got
        self.expected = expected
        self.url = url
        where = f" [{url}]" if url else ""
        detail = ""
        if got is not None or expected is not None:
            detail = f" (got {got!r}, expected {expected})"
        super().__init__(f"backend{where}: {reason}{detail}")


class BackendUnreachable(BackendError):
    """Nothing answered at the backend's URL (refused, DNS, TLS, connection reset before a response)."""


class BackendTimeout(BackendError):
    """The backend stayed silent longer than the worker waits."""


class BackendServerError(BackendError):
    """The backend answered with an error: an HTTP error status, or an error object instead of a completion."""


class BackendProtocolError(BackendError):
    """The backend's answer is not what the OpenAI API specifies (not JSON, wrong shape, bad SSE)."""


class BackendResponseTooLarge(BackendProtocolError):
    """The backend sent more bytes than any honest answer to the request needs."""


class BackendStreamBroken(BackendError):
    """The backend's stream ended before the job did (the server died or dropped the connection)."""


class BackendModelNotServed(BackendError):
    """The backend does not list the model the worker was told to use."""


class BackendModelMismatch(BackendError):
    """The backend serves another model than the GGUF whose sha256 this node claims.

    Raised at start-up when a probe's output is rejected by the local verifier,
    or when the backend's prompt token count differs from the local one
    (another tokenizer or chat template).
    """


# --- annotation ---------------------------------------------------------------


class InvalidLabels(InferenceError):
    def __init__(self, reason: str, got: object = None) -> None:
        self.reason = reason
        self.got = got
        super().__init__(f"invalid label set: {reason} (got {got!r})")
