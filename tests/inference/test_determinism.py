import pytest
"""Greedy decoding gives the same tokens on every run and for any thread count."""
from inference.calibration import generate_honest
from inference.models import load_model

pytestmark = pytest.mark.model

THREAD_JOBS = 3


def test_same_job_same_tokens_every_run(model, honest_jobs, honest_outputs):
    for job, expected in list(zip(honest_jobs, honest_outputs))[:6]:
        assert generate_honest(model, job) == expected


def test_same_tokens_with_one_and_two_threads(model, honest_jobs, honest_outputs):
    assert model.n_threads == 1
    with load_model(n_threads=2) as two_threads:
        for job, expected in list(zip(honest_jobs, honest_outputs))[:THREAD_JOBS]:
            assert generate_honest(two_threads, job) == expected
