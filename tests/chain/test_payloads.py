"""chain.payloads: every kind round-trips; malformed and out-of-range payloads raise typed errors."""

from __future__ import annotations

import pytest
import rlp
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.exceptions import MalformedPayload, PayloadError, PayloadFieldOutOfRange
from chain.payloads import (
    MAX_TOKENS_LIMIT,
    PAYLOAD_CLASSES,
    Annotation,
    AnnotationTask,
    Attestation,
    ChatMessage,
    Evidence,
    InferenceRequest,
    InferenceResult,
    Offering,
    RegisterWorker,
    compute_work_id,
    decode_payload,
)
from tests.chain.conftest import MODEL, sample_payloads

H = b"\x55" * 32


@pytest.mark.parametrize("kind", list(PAYLOAD_CLASSES))
def test_round_trip_and_frozen(kind):
    payload = sample_payloads()[kind]
    decoded = decode_payload(kind, rlp.encode(payload))
    assert decoded == payload and type(decoded) is PAYLOAD_CLASSES[kind]
    with pytest.raises(AttributeError):
        setattr(decoded, decoded._meta.field_names[0], b"")


def test_inference_request_is_byte_identical_to_job_spec():
    from inference.jobs import JobSpec

    request = sample_payloads()["inference_request"]
    encoded = rlp.encode(request)
    spec = rlp.decode(encoded, sedes=JobSpec)
    assert rlp.encode(spec) == encoded
    assert [(m.role, m.content) for m in spec.messages] == [
        (m.role, m.content) for m in request.messages
    ]
    assert (spec.model_sha256, spec.max_tokens) == (MODEL, 32)


@pytest.mark.parametrize("kind", list(PAYLOAD_CLASSES))
@pytest.mark.parametrize("data", [b"", b"\xc0", b"\x80", b"\xff" * 3, b"\xc2\xc0\xc0"])
def test_malformed(kind, data):
    with pytest.raises(MalformedPayload) as info:
        decode_payload(kind, data)
    assert info.value.got == data[:64]


def test_trailing_bytes_are_malformed():
    with pytest.raises(MalformedPayload):
        decode_payload("attestation", rlp.encode(Attestation(H, 1)) + b"\x00")


def test_non_minimal_integer_is_malformed():
    with pytest.raises(MalformedPayload):
        decode_payload("attestation", rlp.encode([H, b"\x00\x01"]))


def test_unknown_kind():
    with pytest.raises(MalformedPayload):
        decode_payload("transfer", b"\xc0")


OUT_OF_RANGE = [
    ("register_worker", RegisterWorker(MODEL, 0), "capacity"),
    ("inference_request", InferenceRequest([], MODEL, 5), "messages"),
    (
        "inference_request",
        InferenceRequest([ChatMessage(b"root", b"x")], MODEL, 5),
        "messages.role",
    ),
    ("inference_request", InferenceRequest([ChatMessage(b"user", b"x")], MODEL, 0), "max_tokens"),
    (
        "inference_request",
        InferenceRequest([ChatMessage(b"user", b"x")], MODEL, MAX_TOKENS_LIMIT + 1),
        "max_tokens",
    ),
    ("inference_result", InferenceResult(H, [2**32]), "output_tokens"),
    ("attestation", Attestation(H, 1_000_001), "score_ppm"),
    ("annotation_task", AnnotationTask(b"c", [b"only"], 1), "labels"),
    ("annotation_task", AnnotationTask(b"c", [b"a", b"a"], 1), "labels"),
    ("annotation_task", AnnotationTask(b"c", [b"a", b""], 1), "labels"),
    ("annotation_task", AnnotationTask(b"c", [b"a", b"b"], 0), "k"),
    ("annotation", Annotation(H, 32), "label_index"),
    ("offering", Offering(b"x" * 65, b""), "purpose"),
    ("offering", Offering(b"", b"\x01" * 31), "job_id"),
    ("evidence", Evidence(b"", b"\xc0"), "vote_a"),
]


@pytest.mark.parametrize("kind,payload,field", OUT_OF_RANGE)
def test_out_of_range(kind, payload, field):
    with pytest.raises(PayloadFieldOutOfRange) as info:
        decode_payload(kind, rlp.encode(payload))
    assert info.value.field == field


def test_evidence_votes_must_decode():
    good = sample_payloads()["evidence"]
    with pytest.raises(PayloadFieldOutOfRange):
        decode_payload("evidence", rlp.encode(Evidence(good.vote_a, good.vote_a)))
    with pytest.raises(MalformedPayload):
        decode_payload("evidence", rlp.encode(Evidence(good.vote_a, b"\xc3\x01\x02\x03")))


def test_work_id_is_keccak_of_sender_and_nonce():
    from eth_utils import keccak

    sender = b"\x01" * 20
    assert compute_work_id(sender, 7) == keccak(rlp.encode([sender, 7]))
    assert compute_work_id(sender, 7) != compute_work_id(sender, 8)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(list(PAYLOAD_CLASSES)),
    st.recursive(st.binary(max_size=40), lambda inner: st.lists(inner, max_size=5), max_leaves=12),
)
def test_arbitrary_rlp_raises_only_payload_errors(kind, item):
    try:
        decode_payload(kind, rlp.encode(item))
    except PayloadError:
        pass
