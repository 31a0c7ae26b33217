"""The economy with the real verifier: llama.cpp greedy output is paid, a forged output is caught.

Workers run the embedded default model; committee members score with
`inference.verifier` (teacher-forced, one batched pass) and post what it says.
"""
from __future__ import annotations

import random

import pytest
import rlp

from chain.payloads import Attestation, InferenceRequest, InferenceResult, RegisterWorker
from economy import JobStatus, get_job, get_standing
from inference.jobs import JobSpec, get_prompt_tokens
from inference.engine import load_model
from inference.verifier import Verifier
from tests.economy.test_economy import REQUESTER, WORKERS, always_audit, make_harness  # noqa: F401 (fixture)

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def model():
    loaded = load_model(n_threads=2)
    yield loaded
    loaded.close()


def test_real_output_is_paid_and_a_forged_one_fails_its_audit(make_harness, model):
    verifier = Verifier(model)
    spec = JobSpec.from_chat([("user", "Name three colours.")], model.sha256, 16)
    h = make_harness(policy=always_audit(committee_size=3))
    honest, cheat = WORKERS[0], WORKERS[1]
    for worker in (honest, cheat):
        h.send(worker, "register_worker", RegisterWorker(model_sha256=model.sha256, capacity=110))
    h.end_block()
    jobs = [h.send(REQUESTER, "inference_request", rlp.decode(rlp.encode(spec), sedes=InferenceRequest))
            for _ in range(2)]
    assert {get_job(h.state, j).worker for j in jobs} == {honest, cheat}  # the second goes to the idle one

    outputs = {}
    for job_id in jobs:
        worker = get_job(h.state, job_id).worker
        if worker == honest:
            tokens = list(model.iter_greedy(get_prompt_tokens(model, spec), spec.max_tokens))
        else:
            rng = random.Random(7)  # plausible-looking but not what the model says
            tokens = [rng.randrange(100, model.n_vocab) for _ in range(spec.max_tokens)]
        outputs[job_id] = tokens
        h.send(worker, "inference_result", InferenceResult(job_id=job_id, output_tokens=tokens))
    h.run_blocks(2)  # the results' block, then the block that draws the committees

    scores = {job_id: verifier.evaluate(spec, outputs[job_id]).score_ppm for job_id in jobs}
    for job_id in jobs:
        for seat in get_job(h.state, job_id).committee:
            if get_job(h.state, job_id).status == JobStatus.ATTESTING:
                h.send(seat.address, "attestation", Attestation(job_id=job_id, score_ppm=scores[job_id]))
    h.end_block()

    by_worker = {get_job(h.state, j).worker: get_job(h.state, j) for j in jobs}
    assert by_worker[honest].status == JobStatus.ACCEPTED and by_worker[honest].score_ppm >= 900_000
    assert h.balance(honest) > 0
    assert by_worker[cheat].status == JobStatus.FAILED_AUDIT and by_worker[cheat].score_ppm < 900_000
    assert h.balance(cheat) == 0
    assert get_standing(h.state, cheat).quality_ppm < get_standing(h.state, honest).quality_ppm

