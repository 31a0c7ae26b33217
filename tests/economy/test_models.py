"""Models on chain (economy.models): known models, declared holdings, requests refused up front, committees
drawn only among a job's model's holders."""
from __future__ import annotations

import pytest
from eth_utils import keccak

from chain.exceptions import WorkRejected
from chain.payloads import ChatMessage, DeclareModels, InferenceRequest, RegisterModel, RegisterWorker
from economy import (
    JobStatus, ModelUnverifiable, UnknownModel, get_declared_models, get_job, get_registered_models, get_standing,
    is_model_holder,
)
from tests.economy.test_economy import (  # noqa: F401 (fixture)
    MODEL, REQUESTER, VALIDATORS, WORKERS, answer, attest_all, make_harness, register,
)

OTHER = keccak(b"a requantised model")  # a second model: registered on chain, held by only some validators
OTHER_CARD = RegisterModel(OTHER, b"other-q8_0", keccak(b"template"), keccak(b"vocab"), 1024)


def ask(h, model: bytes, max_tokens: int = 30) -> bytes:
    return h.send(REQUESTER, "inference_request", InferenceRequest(
        messages=[ChatMessage(role=b"user", content=b"hello")], model_sha256=model, max_tokens=max_tokens))


def test_an_unknown_model_is_refused_for_workers_requests_and_holdings(make_harness):
    h = make_harness()
    with pytest.raises(UnknownModel) as error:
        h.send(WORKERS[0], "register_worker", RegisterWorker(model_sha256=OTHER, capacity=100))
    assert error.value.got == "0x" + OTHER.hex()
    with pytest.raises(UnknownModel):
        ask(h, OTHER)
    with pytest.raises(UnknownModel):
        h.send(VALIDATORS[0], "declare_models", DeclareModels([OTHER]))


def test_a_model_is_registered_once_and_its_context_bounds_requests(make_harness):
    h = make_harness()
    h.send(WORKERS[0], "register_model", OTHER_CARD)
    assert get_registered_models(h.state) == (OTHER,)
    assert h.rules.get_model_card(h.state, OTHER).context_tokens == 1024
    with pytest.raises(WorkRejected, match="already registered"):
        h.send(WORKERS[1], "register_model", OTHER_CARD)
    with pytest.raises(WorkRejected, match="already registered"):  # the genesis models are registered too
        h.send(WORKERS[1], "register_model", RegisterModel(MODEL, b"x", OTHER, OTHER, 10))
    h.send(VALIDATORS[0], "declare_models", DeclareModels([OTHER]))
    with pytest.raises(WorkRejected, match="context") as error:
        ask(h, OTHER, max_tokens=1025)
    assert error.value.got == 1025


def test_a_request_nobody_independent_can_audit_is_refused_and_nobody_is_penalised(make_harness):
    # The case: a worker serves a second model that no validator holds.
    h = make_harness()
    h.send(WORKERS[0], "register_model", OTHER_CARD)
    h.send(WORKERS[0], "register_worker", RegisterWorker(model_sha256=OTHER, capacity=100))
    h.end_block()
    assert is_model_holder(h.state, WORKERS[0], OTHER)  # a worker holds what it serves...
    quality = get_standing(h.state, WORKERS[0]).quality_ppm
    with pytest.raises(ModelUnverifiable) as error:  # ...but it has no recognition: it cannot audit
        ask(h, OTHER)
    assert error.value.got == 0 and "declare_models" in str(error.value)
    h.run_blocks(3)
    assert get_standing(h.state, WORKERS[0]).quality_ppm == quality


def test_the_requester_does_not_count_as_its_own_jobs_auditor(make_harness):
    h = make_harness(recognition={VALIDATORS[0]: 10**19, REQUESTER: 10**19})
    h.send(WORKERS[0], "register_model", OTHER_CARD)
    h.send(REQUESTER, "declare_models", DeclareModels([OTHER]))
    with pytest.raises(ModelUnverifiable):
        ask(h, OTHER)
    h.send(VALIDATORS[0], "declare_models", DeclareModels([OTHER]))
    assert get_job(h.state, ask(h, OTHER)) is not None


def test_committees_are_drawn_only_among_holders_of_the_jobs_model(make_harness):
    h = make_harness()
    h.send(WORKERS[0], "register_model", OTHER_CARD)
    holders = VALIDATORS[:2]
    for validator in holders:
        h.send(validator, "declare_models", DeclareModels([OTHER]))
    for validator in VALIDATORS[2:]:  # a declaration replaces the last: these hold only MODEL now
        h.send(validator, "declare_models", DeclareModels([MODEL]))
    h.send(WORKERS[0], "register_worker", RegisterWorker(model_sha256=OTHER, capacity=1000))
    register(h, WORKERS[1])  # serves MODEL
    h.end_block()
    assert get_declared_models(h.state, VALIDATORS[2]) == (MODEL,)
    for _ in range(6):
        job_id = ask(h, OTHER)
        assert get_job(h.state, job_id).worker == WORKERS[0]
        answer(h, job_id, tokens=10)
        job = get_job(h.state, job_id)
        assert job.status == JobStatus.ATTESTING
        assert {seat.address for seat in job.committee} == set(holders)  # size 3 wanted, 2 hold it
        attest_all(h, job_id, [1_000_000, 1_000_000])
        h.end_block()
        assert get_job(h.state, job_id).status == JobStatus.ACCEPTED
    # With every validator holding it gone, the worker (recognised by now) is the last holder: a request is
    # taken, and with nobody independent to seat its audit ends unverified, never failed: no penalty.
    assert is_model_holder(h.state, WORKERS[0], OTHER) and h.rules.get_model_verifiers(h.state, OTHER)
    for validator in holders:
        h.send(validator, "declare_models", DeclareModels([MODEL]))
    quality = get_standing(h.state, WORKERS[0]).quality_ppm
    job_id = ask(h, OTHER)
    answer(h, job_id, tokens=10)
    assert get_job(h.state, job_id).status == JobStatus.UNVERIFIED
    assert get_standing(h.state, WORKERS[0]).quality_ppm == quality
    assert get_job(h.state, ask(h, MODEL)) is not None  # the other model's jobs go on


def test_the_front_door_check_leaves_the_state_exactly_as_it_was(make_harness):
    # The mempool and the gateway run this check on the head state itself: the candidates' index, built lazily
    # on first use, must not be written there, or this node's next state root would differ from its peers'.
    h = make_harness()
    root = h.state.make_state_root()
    h.rules.validate_request_model(h.state, REQUESTER, MODEL, 30)
    with pytest.raises(UnknownModel):
        h.rules.validate_request_model(h.state, REQUESTER, OTHER, 30)
    assert h.state.make_state_root() == root
