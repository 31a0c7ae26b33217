"""The data the verifier's constants were calibrated on, and the cheat set it must reject.

`CALIBRATION_PROMPTS` are varied chat requests (facts, instructions, code,
arithmetic, lists, other languages, multi-turn). `build_cheat_set` turns one
honest output into the dishonest outputs a worker could claim instead of doing
the work. Tests and `benchmarks/inference.py` use both, so the numbers recorded
in `inference.verifier` can be re-measured with one command.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from inference.engine import LocalModel, TokenChooser, choose_greedy
from inference.jobs import JobSpec, get_prompt_tokens

CALIBRATION_PROMPTS: tuple[tuple[tuple[str, str], ...], ...] = tuple(
    ((("user", p),) if isinstance(p, str) else p)
    for p in (
        "What is the capital of France?",
        "Explain photosynthesis in one paragraph.",
        "Write a haiku about the sea.",
        "List three uses of a paperclip.",
        "What is 17 times 23?",
        "Translate 'good morning, my friend' into Spanish.",
        "Write a Python function that reverses a string.",
        "Why is the sky blue?",
        "Give me a recipe for pancakes.",
        "Who wrote Romeo and Juliet?",
        "Describe a cat to someone who has never seen one.",
        "What are the planets of the solar system?",
        "Summarize the plot of Cinderella.",
        "How do I make a cup of tea?",
        "Write a short poem about autumn leaves.",
        "What is the difference between weather and climate?",
        "Name five fruits that are red.",
        "Explain what a blockchain is to a child.",
        "What is the boiling point of water in Fahrenheit?",
        "Write a SQL query that counts rows in a table called users.",
        "Give three tips for a job interview.",
        "What does DNA stand for?",
        "Tell me a joke about computers.",
        "How many legs does a spider have?",
        "Write a limerick about a frog.",
        "What causes earthquakes?",
        "Suggest a name for a bakery.",
        "Quelle est la capitale de l'Italie ?",
        "Explain recursion with an example.",
        "What is the largest ocean on Earth?",
        "Describe the water cycle.",
        "Write a thank-you note to a teacher.",
        "What is the square root of 144?",
        "List the days of the week in order.",
        "How does a bicycle stay upright?",
        "Write a JavaScript function that adds two numbers.",
        "What is machine learning?",
        "Give me a motivational quote and explain it.",
        "What is the chemical symbol for gold?",
        "Explain how vaccines work.",
        (("system", "You are a terse assistant. Answer in one sentence."), ("user", "What is gravity?")),
        (("system", "You are a pirate."), ("user", "Describe your ship.")),
        (
            ("user", "I have two apples."),
            ("assistant", "Nice! What would you like to do with them?"),
            ("user", "If I eat one, how many are left?"),
        ),
        (("user", "Write the numbers from one to ten in words, separated by commas."),),
        (("user", "Was ist die Hauptstadt von Deutschland?"),),
        (("user", "Explain the rules of tic-tac-toe."),),
        (("user", "Write a regular expression that matches an email address."),),
        (("user", "What is the opposite of 'ancient'?"),),
    )
)


def make_calibration_jobs(model_sha256: bytes, max_tokens: int, count: int | None = None) -> list[JobSpec]:
    prompts = CALIBRATION_PROMPTS[:count] if count else CALIBRATION_PROMPTS
    return [JobSpec.from_chat(chat, model_sha256, max_tokens) for chat in prompts]


# --- choosers for dishonest decoding --------------------------------------------


def make_temperature_chooser(temperature: float, rng: np.random.Generator) -> TokenChooser:
    def choose(step: int, logits: np.ndarray) -> int:
        scaled = (logits.astype(np.float64) - float(np.max(logits))) / temperature
        probabilities = np.exp(scaled)
        probabilities /= probabilities.sum()
        return int(rng.choice(len(probabilities), p=probabilities))

    return choose


def make_substitution_chooser(every: int) -> TokenChooser:
    """Greedy, except that every `every`-th token is the runner-up.

    The hardest cheat of the set: between substitutions the output is exactly
    greedy, so only the substituted tokens can give it away.
    """

    def choose(step: int, logits: np.ndarray) -> int:
        best = choose_greedy(step, logits)
        if step % every:
            return best
        top_two = np.argpartition(logits, -2)[-2:]
        return int(top_two[0]) if int(top_two[1]) == best else int(top_two[1])

    return choose


class CheatOutput(NamedTuple):
    kind: str
    tokens: tuple[int, ...]


CHEAT_KINDS = (
    "random_tokens",
    "shuffled_tokens",
    "temperature_1_sample",
    "other_prompt_output",
    "honest_prefix_then_junk",
    "second_best_substitutions",
)


def build_cheat_set(
    model: LocalModel,
    job: JobSpec,
    honest: Sequence[int],
    other_output: Sequence[int],
    seed: int,
    *,
    substitution_every: int = 3,
) -> list[CheatOutput]:
    """Dishonest outputs for one job, one of each kind in CHEAT_KINDS.

    Each has the honest output's length (or close to it) so that a verifier
    cannot tell them apart by length alone. `other_output` is the honest output
    of a different prompt.
    """
    rng = np.random.default_rng(seed)
    prompt = get_prompt_tokens(model, job)
    n = len(honest)

    def random_tokens(count: int) -> list[int]:
        return [int(t) for t in rng.integers(0, model.n_vocab, size=count)]

    shuffled = list(honest)
    for _ in range(16):
        rng.shuffle(shuffled)
        if shuffled != list(honest):
            break
    half = max(1, n // 2)
    cheats = [
        CheatOutput("random_tokens", tuple(random_tokens(n))),
        CheatOutput("shuffled_tokens", tuple(shuffled)),
        CheatOutput(
            "temperature_1_sample",
            tuple(model.iter_decode(prompt, job.max_tokens, make_temperature_chooser(1.0, rng))),
        ),
        CheatOutput("other_prompt_output", tuple(other_output[: job.max_tokens])),
        CheatOutput("honest_prefix_then_junk", tuple(list(honest[:half]) + random_tokens(max(1, n - half)))),
        CheatOutput(
            "second_best_substitutions",
            tuple(model.iter_decode(prompt, job.max_tokens, make_substitution_chooser(substitution_every))),
        ),
    ]
    return cheats


def generate_honest(model: LocalModel, job: JobSpec) -> tuple[int, ...]:
    return tuple(model.iter_greedy(get_prompt_tokens(model, job), job.max_tokens))

