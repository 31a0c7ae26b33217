"""Greedy decoding gives the same tokens on every run and for any thread count."""
import pytest

from inference.calibration import generate_honest, make_calibration_jobs
from inference.engine import load_model

pytestmark = pytest.mark.model

# Two threads meet at spin barriers and crawl when the test machine's cores are
# busy, so the cross-thread check uses a few short jobs.
THREAD_JOBS = 3
THREAD_MAX_TOKENS = 10


def test_same_job_same_tokens_every_run(model, honest_jobs, honest_outputs):
    for job, expected in list(zip(honest_jobs, honest_outputs))[:6]:
        assert generate_honest(model, job) == expected


def test_same_tokens_with_one_and_two_threads(model):
    assert model.n_threads == 1
    jobs = make_calibration_jobs(model.sha256, THREAD_MAX_TOKENS)[-THREAD_JOBS:]
    one_thread = [generate_honest(model, job) for job in jobs]
    with load_model(n_threads=2) as two_threads:
        assert two_threads.n_threads == 2
        assert [generate_honest(two_threads, job) for job in jobs] == one_thread
    assert all(len(tokens) > 1 for tokens in one_thread)
