"""The verifier on the real model: honest outputs pass, the cheat set fails, bad claims are typed rejections."""
import numpy as np
import pytest

from inference.calibration import CHEAT_KINDS, build_cheat_set
from inference.exceptions import (
    EmptyOutput,
    MaxTokensExceeded,
    PromptTooLong,
    TokenOutOfVocabulary,
    TokensAfterEndOfGeneration,
    VerificationError,
    WrongModel,
)
from inference.jobs import JobSpec, get_prompt_tokens
from inference.verifier import ACCEPT_THRESHOLD_PPM, GAP_TOLERANCE_NATS

pytestmark = pytest.mark.model

CHEAT_JOBS = 16


def test_honest_outputs_are_all_accepted(verifier, honest_jobs, honest_outputs):
    assert len(honest_jobs) >= 30
    results = [verifier.score(job, tokens) for job, tokens in zip(honest_jobs, honest_outputs)]
    assert all(r.accepted for r in results), [r for r in results if not r.accepted]
    assert min(r.score_ppm for r in results) >= ACCEPT_THRESHOLD_PPM
    # Not a vacuous pass: the batched pass does disagree with generation now and then,
    # and the tolerance (not exact matching) is what keeps those tokens.
    assert max(r.max_gap for r in results) < GAP_TOLERANCE_NATS
    assert sum(r.n_tokens for r in results) > 300


@pytest.fixture(scope="module")
def cheat_set(model, honest_jobs, honest_outputs):
    cheats = []
    for i in range(CHEAT_JOBS):
        other = honest_outputs[(i + 7) % len(honest_outputs)]
        for cheat in build_cheat_set(model, honest_jobs[i], honest_outputs[i], other, seed=i):
            if list(cheat.tokens) != list(honest_outputs[i]):
                cheats.append((honest_jobs[i], cheat))
    return cheats


def test_cheat_set_is_all_rejected(verifier, cheat_set):
    kinds = {cheat.kind for _, cheat in cheat_set}
    assert kinds == set(CHEAT_KINDS)
    assert len(cheat_set) >= 5 * CHEAT_JOBS
    scored = [(cheat.kind, verifier.evaluate(job, cheat.tokens)) for job, cheat in cheat_set]
    accepted = [(kind, r.score) for kind, r in scored if r.accepted]
    assert accepted == []


def test_scores_separate_honest_from_substitutions(verifier, cheat_set, honest_jobs, honest_outputs):
    substituted = [verifier.evaluate(job, c.tokens).score for job, c in cheat_set if c.kind == "second_best_substitutions"]
    assert max(substituted) < ACCEPT_THRESHOLD_PPM / 1e6
    assert verifier.score(honest_jobs[0], honest_outputs[0]).score == 1.0


def test_score_is_deterministic_and_in_ppm(model, verifier, honest_jobs, honest_outputs):
    model._clear_memory()
    first = verifier.score(honest_jobs[1], honest_outputs[1])
    model._clear_memory()
    assert first == verifier.score(honest_jobs[1], honest_outputs[1])  # same pass, same arithmetic
    assert isinstance(first.score_ppm, int) and 0 <= first.score_ppm <= 1_000_000


def test_cache_mirrors_what_was_decoded(model, honest_jobs, honest_outputs):
    job, tokens = honest_jobs[3], honest_outputs[3]
    prompt = get_prompt_tokens(model, job)
    generated = list(model.iter_greedy(prompt, job.max_tokens))
    assert generated == list(tokens)
    # The last token is yielded but never decoded: nothing follows it.
    assert model.cached_tokens == tuple(prompt + generated[:-1])
    other = get_prompt_tokens(model, honest_jobs[4])
    model.score_output(other, honest_outputs[4])
    assert model.cached_tokens == tuple(other + list(honest_outputs[4][:-1]))


def test_scoring_reuses_a_shared_prefix_without_changing_the_verdict(model, verifier, honest_jobs, honest_outputs):
    """A warm cache (another job's pass) skips the shared chat-template prefix; scores match a cold pass."""
    first, second = (get_prompt_tokens(model, honest_jobs[i]) for i in (5, 6))
    shared = next(i for i, (a, b) in enumerate(zip(first, second)) if a != b)
    assert shared >= 10  # the template's system turn
    model._clear_memory()
    before = model.tokens_decoded
    cold = model.score_output(second, honest_outputs[6])
    cold_cost = model.tokens_decoded - before
    model.score_output(first, honest_outputs[5])
    before = model.tokens_decoded
    warm = model.score_output(second, honest_outputs[6])
    assert model.tokens_decoded - before == cold_cost - shared
    assert np.max(np.abs(warm.gaps - cold.gaps)) < 0.05
    model._clear_memory()
    cold_result = verifier.score(honest_jobs[6], honest_outputs[6])
    verifier.score(honest_jobs[5], honest_outputs[5])
    assert verifier.score(honest_jobs[6], honest_outputs[6]).score_ppm == cold_result.score_ppm


def test_rescoring_the_same_job_decodes_only_the_output(model, honest_jobs, honest_outputs):
    job, tokens = honest_jobs[7], honest_outputs[7]
    prompt = get_prompt_tokens(model, job)
    model.score_output(prompt, tokens)
    before = model.tokens_decoded
    again = model.score_output(prompt, tokens)
    # Logits exist only for positions decoded now: the pass restarts at the last prompt token.
    assert model.tokens_decoded - before == len(tokens)
    assert np.all(again.gaps >= 0)


def test_teacher_forcing_agrees_with_generation(model, honest_jobs, honest_outputs):
    job, tokens = honest_jobs[2], honest_outputs[2]
    scores = model.score_output(get_prompt_tokens(model, job), tokens)
    assert np.mean(scores.argmax == np.asarray(tokens)) > 0.8
    assert np.all(scores.gaps >= 0) and np.all(scores.logprobs <= 0)


# --- bad input ----------------------------------------------------------------


def bad_claims(model, job, tokens):
    wrong_model = JobSpec(messages=job.messages, model_sha256=b"\x11" * 32, max_tokens=job.max_tokens)
    end = model.eos_token
    return [
        (WrongModel, wrong_model, tokens),
        (EmptyOutput, job, []),
        (TokenOutOfVocabulary, job, list(tokens[:-1]) + [model.n_vocab]),
        (TokenOutOfVocabulary, job, [-1] + list(tokens[1:])),
        (MaxTokensExceeded, job, list(tokens) + [tokens[0]] * job.max_tokens),
        (TokensAfterEndOfGeneration, job, [end, tokens[0]]),
    ]


def test_bad_claims_raise_typed_errors(model, verifier, honest_jobs, honest_outputs):
    for expected, job, tokens in bad_claims(model, honest_jobs[0], honest_outputs[0]):
        with pytest.raises(expected) as caught:
            verifier.score(job, tokens)
        assert isinstance(caught.value, VerificationError)
        rejection = verifier.evaluate(job, tokens)
        assert not rejection.accepted and rejection.score_ppm == 0 and rejection.error


def test_prompt_longer_than_context_is_a_rejection(model, verifier):
    job = JobSpec.from_chat([{"role": "user", "content": "word " * 2100}], model.sha256, 16)
    with pytest.raises(PromptTooLong):
        verifier.score(job, [5, 6, 7])
    assert verifier.evaluate(job, [5, 6, 7]).error
