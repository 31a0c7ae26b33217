"""One real model per test session, and honest outputs computed once.

The whole inference suite shares `model` (1 thread: the cores are shared) and
the greedy outputs of `honest_jobs`; tests that need a second instance (2
threads, the worker's own) load it themselves.
"""
from __future__ import annotations

import pytest

from inference.calibration import generate_honest, make_calibration_jobs
from inference.engine import load_model
from inference.verifier import Verifier

HONEST_JOBS = 32
HONEST_MAX_TOKENS = 20


@pytest.fixture(scope="session")
def model():
    local = load_model(n_threads=1)
    yield local
    local.close()


@pytest.fixture(scope="session")
def verifier(model):
    return Verifier(model)


@pytest.fixture(scope="session")
def honest_jobs(model):
    return make_calibration_jobs(model.sha256, HONEST_MAX_TOKENS, HONEST_JOBS)


@pytest.fixture(scope="session")
def honest_outputs(model, honest_jobs):
    return [generate_honest(model, job) for job in honest_jobs]
