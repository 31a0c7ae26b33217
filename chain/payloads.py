"""Work payloads: the RLP carried in a transaction's `data`, one frozen class per kind.

This module owns the payload formats and their stateless validation (sizes and
ranges). Whether a payload makes sense against the chain (does the job exist,
is the label index inside the task's labels) is for the rules that apply it.
"""

from __future__ import annotations

import rlp
from rlp.codec import length_prefix

from rlp.sedes import Binary, CountableList, big_endian_int, binary

from chain.exceptions import MalformedPayload, PayloadFieldOutOfRange
from primitives.encoding import encode_rlp_string, encode_rlp_uint
from primitives.errors import compute_error_summary
from primitives.hashing import keccak
from primitives.limits import decode_rlp_bounded
from consensus.votes import Vote

hash32 = Binary.fixed_length(32)

# Structural bounds. The whole payload is also bounded by Params.max_payload_size.
CHAT_ROLES = (b"system", b"user", b"assistant")
MAX_MESSAGES = 64
MAX_TOKENS_LIMIT = 8192
MAX_TOKEN_ID = 2**32 - 1
MAX_OUTPUT_TOKENS = MAX_TOKENS_LIMIT
SCORE_PPM_MAX = 1_000_000
MAX_CAPACITY = 10**9  # declared tokens/s
MAX_LABELS = 32
MAX_LABEL_SIZE = 64
MAX_ANNOTATORS = 64
MAX_PURPOSE_SIZE = 64
MAX_OPERATOR_SIZE = 80
MAX_VOTE_SIZE = 1024
MAX_MODEL_NAME = 64
MAX_MODEL_CONTEXT = 1 << 20
MAX_HELD_MODELS = 16
MAX_ENGINE_SIZE = 160


def _require(condition: bool, field: str, got: object, expected: str) -> None:
    if not condition:
        raise PayloadFieldOutOfRange(field, got=got, expected=expected)


class ChatMessage(rlp.Serializable):
    fields = [("role", binary), ("content", binary)]


class RegisterWorker(rlp.Serializable):
    """The model served, the declared capacity (tokens/s) and how it runs.

    `engine` is for people and tools (backend, GPU layers, threads, context,
    batch, e.g. b"backend=local gpu_layers=0 threads=1 ctx=2048 batch=512");
    no rule reads it.
    """

    fields = [("model_sha256", hash32), ("capacity", big_endian_int), ("engine", binary)]

    def __init__(self, model_sha256: bytes, capacity: int, engine: bytes = b"", **kwargs) -> None:
        super().__init__(model_sha256, capacity, engine, **kwargs)

    def validate(self) -> None:
        _require(
            1 <= self.capacity <= MAX_CAPACITY, "capacity", self.capacity, f"1..{MAX_CAPACITY}"
        )
        _require(len(self.engine) <= MAX_ENGINE_SIZE, "engine", len(self.engine), f"0..{MAX_ENGINE_SIZE} bytes")


class RegisterAnnotator(rlp.Serializable):
    """An account offers to label tasks the chain draws for it: `operator` says who labels.

    b"person" for a human, or b"model:" + a model's sha256 hex for a local LLM
    (informational: weight comes only from accuracy measured on gold tasks).
    """

    fields = [("operator", binary)]

    def validate(self) -> None:
        _require(1 <= len(self.operator) <= MAX_OPERATOR_SIZE, "operator", len(self.operator),
                 f"1..{MAX_OPERATOR_SIZE} bytes")


class RegisterModel(rlp.Serializable):
    """A model the chain will take jobs for: `genesis.ModelCard`'s fields, byte for byte."""

    fields = [
        ("sha256", hash32),
        ("name", binary),
        ("chat_template_sha256", hash32),
        ("vocab_sha256", hash32),
        ("context_tokens", big_endian_int),
    ]

    def validate(self) -> None:
        _require(1 <= len(self.name) <= MAX_MODEL_NAME, "name", len(self.name), f"1..{MAX_MODEL_NAME} bytes")
        _require(1 <= self.context_tokens <= MAX_MODEL_CONTEXT, "context_tokens", self.context_tokens,
                 f"1..{MAX_MODEL_CONTEXT}")


class DeclareModels(rlp.Serializable):
    """The registered models whose files the sender holds and can verify with (replaces its last declaration)."""

    fields = [("models", CountableList(hash32))]

    def validate(self) -> None:
        count = len(self.models)
        _require(count <= MAX_HELD_MODELS, "models", count, f"0..{MAX_HELD_MODELS} models")
        _require(len(set(self.models)) == count, "models", count, "distinct sha256s")


class InferenceRequest(rlp.Serializable):
    """A job spec; byte-identical to `inference.jobs.JobSpec`'s RLP."""

    fields = [
        ("messages", CountableList(ChatMessage)),
        ("model_sha256", hash32),
        ("max_tokens", big_endian_int),
    ]

    def validate(self) -> None:
        count = len(self.messages)
        _require(1 <= count <= MAX_MESSAGES, "messages", count, f"1..{MAX_MESSAGES} messages")
        for message in self.messages:
            _require(message.role in CHAT_ROLES, "messages.role", message.role, CHAT_ROLES)
        _require(
            1 <= self.max_tokens <= MAX_TOKENS_LIMIT,
            "max_tokens",
            self.max_tokens,
            f"1..{MAX_TOKENS_LIMIT}",
        )


class InferenceResult(rlp.Serializable):
    fields = [("job_id", hash32), ("output_tokens", CountableList(big_endian_int))]

    def validate(self) -> None:
        count = len(self.output_tokens)
        _require(
            count <= MAX_OUTPUT_TOKENS,
            "output_tokens",
            count,
            f"at most {MAX_OUTPUT_TOKENS} tokens",
        )
        for token in self.output_tokens:
            _require(token <= MAX_TOKEN_ID, "output_tokens", token, f"token ids 0..{MAX_TOKEN_ID}")


class Attestation(rlp.Serializable):
    fields = [("job_id", hash32), ("score_ppm", big_endian_int)]

    def validate(self) -> None:
        _require(
            self.score_ppm <= SCORE_PPM_MAX, "score_ppm", self.score_ppm, f"0..{SCORE_PPM_MAX}"
        )


class AnnotationTask(rlp.Serializable):
    fields = [("content", binary), ("labels", CountableList(binary)), ("k", big_endian_int)]

    def validate(self) -> None:
        count = len(self.labels)
        _require(2 <= count <= MAX_LABELS, "labels", count, f"2..{MAX_LABELS} labels")
        for label in self.labels:
            _require(
                1 <= len(label) <= MAX_LABEL_SIZE,
                "labels",
                label,
                f"1..{MAX_LABEL_SIZE} bytes each",
            )
        _require(len(set(self.labels)) == count, "labels", self.labels, "distinct labels")
        _require(1 <= self.k <= MAX_ANNOTATORS, "k", self.k, f"1..{MAX_ANNOTATORS}")


class Annotation(rlp.Serializable):
    fields = [("task_id", hash32), ("label_index", big_endian_int)]

    def validate(self) -> None:
        _require(
            self.label_index < MAX_LABELS, "label_index", self.label_index, f"0..{MAX_LABELS - 1}"
        )


class Offering(rlp.Serializable):
    """An offering into the pool; the amount is the transaction's `value`."""

    fields = [("purpose", binary), ("job_id", binary)]

    def validate(self) -> None:
        _require(
            len(self.purpose) <= MAX_PURPOSE_SIZE,
            "purpose",
            len(self.purpose),
            f"at most {MAX_PURPOSE_SIZE} bytes",
        )
        _require(len(self.job_id) in (0, 32), "job_id", self.job_id, "b'' or 32 bytes")


class Evidence(rlp.Serializable):
    """Two conflicting signed votes, each the RLP of a `consensus.votes.Vote`."""

    fields = [("vote_a", binary), ("vote_b", binary)]

    def validate(self) -> None:
        for name in ("vote_a", "vote_b"):
            size = len(getattr(self, name))
            _require(1 <= size <= MAX_VOTE_SIZE, name, size, f"1..{MAX_VOTE_SIZE} bytes")
        _require(self.vote_a != self.vote_b, "vote_b", self.vote_b, "a vote different from vote_a")
        for name in ("vote_a", "vote_b"):
            try:
                decode_rlp_bounded(getattr(self, name), sedes=Vote, strict=True)
            except (rlp.exceptions.RLPException, TypeError) as error:
                raise MalformedPayload(
                    f"evidence {name} is not an RLP vote: {compute_error_summary(error)}",
                    got=getattr(self, name),
                    expected=list(Vote._meta.field_names),
                ) from None


# Kind names are the `WorkRulesAPI.apply_work` names (docs/ARCHITECTURE.md).
PAYLOAD_CLASSES: dict[str, type[rlp.Serializable]] = {
    "register_worker": RegisterWorker,
    "inference_request": InferenceRequest,
    "inference_result": InferenceResult,
    "attestation": Attestation,
    "annotation_task": AnnotationTask,
    "annotation": Annotation,
    "offering": Offering,
    "evidence": Evidence,
    "register_annotator": RegisterAnnotator,
    "register_model": RegisterModel,
    "declare_models": DeclareModels,
}


def decode_payload(kind: str, data: bytes) -> rlp.Serializable:
    """Decode and validate the payload of `kind`; raises MalformedPayload or PayloadFieldOutOfRange."""
    try:
        payload_class = PAYLOAD_CLASSES[kind]
    except KeyError:
        raise MalformedPayload(
            "unknown work kind", got=kind, expected=tuple(PAYLOAD_CLASSES)
        ) from None
    try:
        # Bounded first: a payload nested thousands deep would cost pyrlp seconds (primitives.limits).
        payload = decode_rlp_bounded(data, sedes=payload_class, strict=True)
    except (rlp.exceptions.RLPException, TypeError) as error:
        # rlp's integer sedes raises TypeError, not its own error, when handed a list.
        raise MalformedPayload(
            f"{kind} payload is not valid RLP for its fields: {compute_error_summary(error)}",
            got=data,
            expected=list(payload_class._meta.field_names),
        ) from None
    payload.validate()
    return payload


def encode_payload(payload: rlp.Serializable) -> bytes:
    return rlp.encode(payload)


def compute_work_id(sender: bytes, nonce: int) -> bytes:
    """The id of a job or annotation task: keccak(rlp([sender, nonce]))."""
    if type(sender) is bytes and type(nonce) is int and nonce >= 0:
        # rlp.encode([sender, nonce]) written out: rlp's generic encoder costs more than the hash.
        payload = encode_rlp_string(sender) + encode_rlp_uint(nonce)
        return keccak(length_prefix(len(payload), 0xC0) + payload)
    return keccak(rlp.encode([sender, nonce]))
