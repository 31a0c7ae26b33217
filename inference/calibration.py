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


# Honest greedy outputs (embedded model, max_tokens 48, 1 or 2 threads) that
# plain BPE re-tokenisation of their text does not recover, because the model
# spelt something its own way; each line gives the generated spelling, BPE's,
# and the plain-BPE score and largest gap. Verification of text must accept
# them (`LocalModel.tokenize_output`). CALIBRATION_PROMPTS has one too:
# "Write a SQL query ..." ("'" + ");" where BPE gives "');": 0.979, 2.88 nats).
RESPELLED_OUTPUT_PROMPTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Tu parles français ?"),),  # "toujeur": "j" + "eur" / "je" + "ur": 0.786, 10.2 nats
    (("user", "Que penses-tu de Paris ?"),),  # "toujeur" again: 0.692, 9.84 nats
    (("user", "Dis-moi quelque chose en français."),),  # "SmolLAM": "S" + "m" + "ol" / "Sm" + "ol": 0.875, 2.49 nats
    (("user", "Écris une phrase sur Paris."),),  # 0.957, 6.81 nats
    (("user", "Write 'I love you' in Korean."),),  # cut inside a character at max_tokens: 0.979, 14.3 nats
)


_PASSAGE = (
    "The water cycle describes how water moves between the oceans, the air and the land. "
    "Sunlight warms the surface of seas and lakes, and some of that water evaporates into vapour. "
    "Plants release more vapour through their leaves. As the warm, moist air rises it cools, and the "
    "vapour condenses into tiny droplets around specks of dust, forming clouds. When the droplets "
    "grow heavy enough they fall as rain, snow, sleet or hail. Some of that water runs off the land "
    "into streams and rivers, some soaks into the ground to refill aquifers, and some is frozen for "
    "centuries in glaciers and ice sheets. Eventually most of it returns to the sea, and the cycle "
    "begins again. The cycle also moves heat around the planet: evaporation absorbs energy, and "
    "condensation releases it high in the atmosphere, which drives winds and storms. "
)
_STORY = (
    "Mara kept a small bakery at the corner of a crooked street. Every morning she lit the oven "
    "before dawn, kneaded the dough by hand and set the first loaves to rise while the town slept. "
    "One winter the mill upriver closed, and flour grew scarce and expensive. Her neighbours offered "
    "what they could: a sack of rye from the farmer, a jar of honey from the beekeeper, walnuts from "
    "the old woman who lived above the shop. Mara baked with whatever arrived, and her bread changed "
    "from week to week. People came to see what she would make next. By spring the mill reopened, "
    "but the customers kept asking for the strange loaves, so she never went back to the old recipe. "
)

# Prompts longer than a small prefill batch (64 tokens) and, for the last, than
# the default one (512), so that a generator's `n_batch` changes how its
# prompt is chunked: the benchmark's settings matrix needs them.
LONG_PROMPTS: tuple[tuple[tuple[str, str], ...], ...] = (
    (("user", "Summarise this text in two sentences.\n\n" + _PASSAGE),),
    (("user", "What is the moral of this story?\n\n" + _STORY),),
    (
        ("system", "You are a patient teacher. Answer with one short paragraph."),
        ("user", _PASSAGE),
        ("assistant", "That is a clear description of the water cycle. What would you like to know about it?"),
        ("user", _STORY),
        ("assistant", "A warm story about a baker and her neighbours. What is your question?"),
        ("user", "Here is both again, read them carefully.\n\n" + _PASSAGE + _STORY + _PASSAGE
         + "\n\nWhat do the text and the story have in common?"),
    ),
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

