"""Teacher-forced verification of claimed inference outputs.

The verifier runs the job's prompt plus the claimed output through the model
in one batched pass, with logits only at the positions that predict an output
token (see `LocalModel.score_output`), and asks of every claimed token: is its
log-probability within `tolerance` of the best token's? The score is the
fraction of tokens that are. The pass starts after whatever prefix the
model's KV cache already holds (a validator auditing job after job keeps the
chat template's system turn), which the tolerance absorbs: cached keys and
values may come from another batch layout. Exact argmax agreement would be the wrong test:
a batched pass does its arithmetic in a different order from token-by-token
decoding, so an honest greedy token is occasionally not the batched argmax.

An output may be claimed as text (what OpenAI-compatible front ends return:
llama-server, Ollama, LM Studio, llama-cpp-python's server). The protocol's
rule for turning it into tokens is `LocalModel.tokenize_output`; plain BPE
re-tokenisation is not it, because a model may spell a word otherwise than
BPE does and the canonical spelling can then sit far outside the tolerance:
honest French outputs scored 0.69-0.96 that way ("toujeur" generated as
"j" + "eur", BPE "je" + "ur", 10.2 nats), at 1 and 2 threads alike, which
is a tokenisation error, not a gap-rule one (the generated tokens score 1.0).

Calibration (re-run with `python -m benchmarks.inference`; measured
2026-11-25 on the embedded SmolLM2-135M-Instruct Q4_1):

- Honest outputs: the 48 `inference.calibration` prompts, greedy, max_tokens
  48 -> 1897 output tokens (identical tokens and gaps with 1 and 2 threads).
  The batched argmax differed from the generated token on 2.4% of them; the
  largest log-probability gap was 0.327 nats (99.9th percentile 0.255).
  DESIGN.md's earlier measurement: 97-98% agreement, largest gap 0.27 nats.
- Cheat set on the same 48 jobs (`inference.calibration.build_cheat_set`),
  best score of each kind at tolerance 0.3 / 0.5 / 0.75 / 1.0 nats:
  random tokens 0 / 0 / 0 / 0; shuffled 0.33 / 0.50 / 0.75 / 0.81;
  temperature-1 samples 0.875 / 0.875 / 0.896 / 0.917; another prompt's
  output 0.958 at every tolerance (a coherent text is predictable once it is
  forced, so teacher forcing rewards it token by token; its mean is 0.72);
  honest half then junk 0.50; runner-up on every third token 0.79 / 0.81 /
  0.85 / 0.90.
- Engine settings (`python -m benchmarks.inference --settings-only`, measured
  2026-12-06, CPU only: this machine has no GPU, so GPU offload is not
  measured): generator x verifier at threads {1, 2} x prefill batch
  {512, 64}, 16 pairs, on the 48 calibration prompts, the respelled ones and
  3 long prompts (186, 209 and 899 tokens, so that batch 64 and 512 chunk
  the prefill differently), max_tokens 48 -> 2167 output tokens. No setting
  changed a single generated token, and every pair gave the same largest
  gap, 0.415 nats (99.9th percentile 0.344, 99th 0.100); 0 honest outputs
  rejected, from tokens or from text. Threads and batch size are not where
  the noise comes from; batched versus token-by-token decoding is.
- The tail, sampled with longer outputs instead (48 prompts, max_tokens 256,
  6601 tokens, verifier batch 512 and 64 alike): largest gap 0.570 nats
  ("Explain how vaccines work."), 99.9th percentile 0.295, 99.99th 0.468;
  7 gaps above 0.3, 2 above 0.4, 1 above 0.5, none above 0.75. The largest
  gap grows with the sample (0.27 in DESIGN.md, 0.327 on 1897 tokens,
  0.415 on 2167, 0.570 on 6601).
- Tolerance: 0.75 nats covers every honest gap measured (score 1.0 on all
  jobs), 1.32 times the largest, while it moves the best cheat scores by at
  most 0.02 against 0.5 nats. The margin is thinner than the 2.3 times first
  measured: the tail falls by about 2.6x per 0.1 nats, which puts roughly one
  honest token in 10^5 beyond 0.75 (a short output then fails on that one
  token; from 50 tokens on the threshold forgives one in fifty). At 1.0 nats
  the best cheat of each kind still scores at most 0.958 (above), so 1.0 would
  buy margin for free on this cheat set.
- Threshold: accept when score >= 0.98. Honest outputs score 1.0; the best
  cheat scored 0.958, so the threshold has to sit above it: below 50 tokens
  every token must be within tolerance, and a long honest output may carry
  one noisy token in fifty. (0.90 let a temperature-1 sample through at 0.95
  and a runner-up substitution at 0.90 in the 20-token test set.)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from inference.engine import GAP_TOLERANCE_NATS, LocalModel
from inference.exceptions import (
    EmptyOutput,
    InferenceError,
    InvalidOutputText,
    MaxTokensExceeded,
    TokenOutOfVocabulary,
    TokensAfterEndOfGeneration,
    WrongModel,
)
from genesis import DEFAULT_PARAMS
from inference.jobs import JobSpec, get_prompt_tokens, validate_job_spec

PPM = 1_000_000
ACCEPT_THRESHOLD_PPM = DEFAULT_PARAMS.acceptance_threshold_ppm


class VerificationResult(NamedTuple):
    score_ppm: int  # fraction of tokens within tolerance, in parts per million (the attestation's score)
    accepted: bool
    n_tokens: int
    n_within_tolerance: int
    n_exact: int  # tokens equal to the batched argmax
    max_gap: float  # nats
    error: str = ""  # why the claim could not be scored (then score_ppm is 0)

    @property
    def score(self) -> float:
        return self.score_ppm / PPM

    def to_json(self) -> dict:
        out = {"score": self.score, "accepted": self.accepted}
        if self.error:
            out["error"] = self.error
        return out


def compute_score_ppm(gaps: np.ndarray, tolerance: float) -> int:
    within = int(np.count_nonzero(gaps <= tolerance))
    return within * PPM // len(gaps)


def is_accepted(score_ppm: int, threshold_ppm: int = ACCEPT_THRESHOLD_PPM) -> bool:
    return score_ppm >= threshold_ppm


class Verifier:
    """Scores claimed outputs for jobs on one loaded model (not thread-safe, like the model)."""

    def __init__(
        self,
        model: LocalModel,
        *,
        tolerance: float = GAP_TOLERANCE_NATS,
        threshold_ppm: int = ACCEPT_THRESHOLD_PPM,
    ) -> None:
        self.model = model
        self.tolerance = tolerance
        self.threshold_ppm = threshold_ppm

    # --- checks on the claim, before any compute ---------------------------------

    def validate_claim(self, job: JobSpec, output_tokens: Sequence[int]) -> list[int]:
        """Raise a typed error for a claim that cannot be scored; return the prompt tokens."""
        if job.model_sha256 != self.model.sha256:
            raise WrongModel(job.model_sha256, self.model.sha256)
        validate_job_spec(job)
        if len(output_tokens) == 0:
            raise EmptyOutput()
        if len(output_tokens) > job.max_tokens:
            raise MaxTokensExceeded(len(output_tokens), job.max_tokens)
        for index, token in enumerate(output_tokens):
            if not isinstance(token, (int, np.integer)) or isinstance(token, bool) or not 0 <= token < self.model.n_vocab:
                raise TokenOutOfVocabulary(index, token, self.model.n_vocab)
        # Greedy decoding stops at the first end-of-generation token.
        for index, token in enumerate(output_tokens[:-1]):
            if self.model.is_end_of_generation(int(token)):
                raise TokensAfterEndOfGeneration(index, int(token))
        return get_prompt_tokens(self.model, job)

    # --- scoring -------------------------------------------------------------------

    def score(self, job: JobSpec, output_tokens: Sequence[int]) -> VerificationResult:
        """Score a claimed output. Raises a typed InferenceError for a claim that cannot be scored."""
        prompt = self.validate_claim(job, output_tokens)
        scores = self.model.score_output(prompt, [int(t) for t in output_tokens])
        score_ppm = compute_score_ppm(scores.gaps, self.tolerance)
        return VerificationResult(
            score_ppm=score_ppm,
            accepted=is_accepted(score_ppm, self.threshold_ppm),
            n_tokens=len(output_tokens),
            n_within_tolerance=int(np.count_nonzero(scores.gaps <= self.tolerance)),
            n_exact=int(np.count_nonzero(scores.argmax == np.asarray(output_tokens))),
            max_gap=float(np.max(scores.gaps)),
        )

    def evaluate(self, job: JobSpec, output_tokens: Sequence[int]) -> VerificationResult:
        """Like `score`, but a claim that cannot be scored is a rejection with score 0.

        This is what an attester posts: bad input from a worker is that
        worker's failure, never the validator's crash.
        """
        try:
            return self.score(job, output_tokens)
        except InferenceError as error:
            return make_rejection(str(error), len(output_tokens))

    def get_tokens_from_text(self, job: JobSpec, text: str, *, ended: bool = False) -> list[int]:
        """Tokens of a claimed output given as text (the CLI's `output_text`, an OpenAI-style front end's reply).

        Text becomes tokens by the protocol's rule, `LocalModel.tokenize_output`
        (plain BPE where it is within tolerance, else the model's best spelling
        of the same bytes), so that an honest greedy output is recovered
        whatever spelling its model chose; plain BPE re-tokenisation rejected
        honest outputs whose model chose a non-canonical one (e.g. "j" + "eur"
        where BPE gives "je" + "ur": 10.2 nats).

        `ended` is the claim's finish_reason "stop": the end-of-generation
        token, which text cannot show, is then scored too.
        """
        if not isinstance(text, str):
            raise InvalidOutputText("expected a string", got=type(text).__name__, expected="str")
        if job.model_sha256 != self.model.sha256:
            raise WrongModel(job.model_sha256, self.model.sha256)
        validate_job_spec(job)
        # No token spells more than the longest piece: a longer text cannot fit
        # max_tokens, and refusing it first bounds the work spent on it.
        limit = job.max_tokens * self.model.get_max_piece_bytes()
        size = len(text.encode("utf-8", errors="surrogatepass"))
        if size > limit:
            raise InvalidOutputText(
                "text is longer than max_tokens tokens can spell", got=f"{size} bytes", expected=f"at most {limit} bytes"
            )
        return self.model.tokenize_output(get_prompt_tokens(self.model, job), text, ended=ended, tolerance=self.tolerance)


def make_rejection(reason: str, n_tokens: int = 0) -> VerificationResult:
    return VerificationResult(
        score_ppm=0, accepted=False, n_tokens=n_tokens, n_within_tolerance=0, n_exact=0, max_gap=float("inf"), error=reason
    )
