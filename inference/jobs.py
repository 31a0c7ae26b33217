"""Inference jobs: the typed, RLP-encodable request and the worker's output.

`JobSpec` is the `inference_request` work payload, byte for byte:
`rlp([[[role, content], ...], model_sha256, max_tokens])`. Decoding is always
greedy, so the spec has no sampling fields: anything a worker could choose
would be something a verifier could not reproduce. The prompt is built by the
model's own chat template (see `inference.engine.LocalModel.tokenize_chat`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import rlp
from rlp.sedes import Binary, CountableList, big_endian_int, binary

from inference.exceptions import InvalidJob

CHAT_ROLES = ("system", "user", "assistant")
# A hard ceiling independent of any model: a job asking for more can never fit
# the protocol's context window (inference.engine.CONTEXT_TOKENS).
MAX_TOKENS_LIMIT = 2048
MAX_MESSAGES = 64

hash32 = Binary.fixed_length(32)


class ChatMessage(rlp.Serializable):
    fields = [
        ("role", binary),
        ("content", binary),
    ]

    @property
    def role_text(self) -> str:
        return self.role.decode("utf-8")

    @property
    def content_text(self) -> str:
        return self.content.decode("utf-8")


class JobSpec(rlp.Serializable):
    fields = [
        ("messages", CountableList(ChatMessage)),
        ("model_sha256", hash32),
        ("max_tokens", big_endian_int),
    ]

    @classmethod
    def from_chat(cls, messages: Iterable[Mapping[str, Any] | tuple[str, str]], model_sha256: bytes, max_tokens: int) -> "JobSpec":
        """Build and validate a job from OpenAI-style `{"role", "content"}` dicts or (role, content) pairs."""
        built = tuple(make_chat_message(m, i) for i, m in enumerate(messages))
        if not isinstance(model_sha256, bytes) or len(model_sha256) != 32:
            raise InvalidJob("model_sha256 must be 32 bytes", got=model_sha256, expected="32 bytes")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise InvalidJob("max_tokens must be an integer", got=max_tokens, expected="int")
        job = cls(messages=built, model_sha256=model_sha256, max_tokens=max_tokens)
        validate_job_spec(job)
        return job

    @classmethod
    def decode(cls, data: bytes) -> "JobSpec":
        """Decode a payload from outside; anything malformed is an InvalidJob."""
        try:
            job = rlp.decode(data, sedes=cls)
        except (rlp.exceptions.RLPException, TypeError) as error:
            raise InvalidJob("payload is not an RLP job spec", got=data[:64].hex(), expected="rlp([messages, model_sha256, max_tokens])") from error
        validate_job_spec(job)
        return job

    def encode(self) -> bytes:
        return rlp.encode(self)

    def get_chat(self) -> tuple[tuple[str, str], ...]:
        return tuple((m.role_text, m.content_text) for m in self.messages)

    def to_json(self) -> dict:
        return {
            "model_sha256": self.model_sha256.hex(),
            "messages": [{"role": r, "content": c} for r, c in self.get_chat()],
            "max_tokens": self.max_tokens,
        }


class JobOutput(NamedTuple):
    """What a worker produced for a job.

    `tokens` includes the end-of-generation token when the model emitted one:
    it is part of the claim (it shows the output was not cut short) and the
    verifier scores it like any other token. `text` leaves it out.
    """

    tokens: tuple[int, ...]
    text: str
    finish_reason: str  # "stop" (end-of-generation token) or "length" (max_tokens reached)
    prompt_tokens: int


def make_chat_message(message: Mapping[str, Any] | tuple[str, str] | ChatMessage, index: int = 0) -> ChatMessage:
    if isinstance(message, ChatMessage):
        return message
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    elif isinstance(message, (tuple, list)) and len(message) == 2:
        role, content = message
    else:
        raise InvalidJob(f"message #{index} is not a role/content pair", got=message, expected='{"role": str, "content": str}')
    if not isinstance(role, str) or not isinstance(content, str):
        raise InvalidJob(f"message #{index} needs string role and content", got=message, expected="str role and content")
    return ChatMessage(role=role.encode("utf-8"), content=content.encode("utf-8"))


def validate_job_spec(job: JobSpec) -> None:
    # A job with no messages has no prompt to condition on.
    if not 1 <= len(job.messages) <= MAX_MESSAGES:
        raise InvalidJob("number of messages out of range", got=len(job.messages), expected=f"1..{MAX_MESSAGES}")
    for index, message in enumerate(job.messages):
        validate_chat_message(message, index)
    if not 1 <= job.max_tokens <= MAX_TOKENS_LIMIT:
        raise InvalidJob("max_tokens out of range", got=job.max_tokens, expected=f"1..{MAX_TOKENS_LIMIT}")


def validate_chat_message(message: ChatMessage, index: int) -> None:
    try:
        role = message.role.decode("utf-8")
        message.content.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidJob(f"message #{index} is not UTF-8", got=repr(error.object[:32]), expected="UTF-8 text") from error
    if role not in CHAT_ROLES:
        raise InvalidJob(f"message #{index} has an unknown role", got=role, expected=" | ".join(CHAT_ROLES))


def get_prompt_tokens(model, job: JobSpec) -> list[int]:
    """The tokens a worker decodes from and a verifier teacher-forces after, for `model`.

    Raises PromptTooLong when the prompt plus max_tokens cannot fit the context.
    """
    tokens = model.tokenize_chat(job.get_chat())
    model.validate_fits_context(len(tokens), job.max_tokens)
    return tokens


def make_job_output(model, prompt_tokens: Sequence[int], tokens: Sequence[int], max_tokens: int) -> JobOutput:
    tokens = tuple(int(t) for t in tokens)
    ended = bool(tokens) and model.is_end_of_generation(tokens[-1])
    text_tokens = tokens[:-1] if ended else tokens
    return JobOutput(
        tokens=tokens,
        text=model.detokenize(text_tokens),
        finish_reason="stop" if ended else "length",
        prompt_tokens=len(prompt_tokens),
    )
