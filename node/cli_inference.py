"""Inference commands: infer, verify, annotate.

    magicoin infer --prompt TEXT [--model PATH] [--max-tokens N]
    magicoin verify FILE          (JSON object or list; one JSON line per claim)
    magicoin annotate --content TEXT --labels a,b,c
"""
from __future__ import annotations

import json
import sys

import click

from inference.exceptions import InferenceError
from primitives.limits import BoundedInputError, decode_json_bounded

# A claims file: a list of {model_sha256, messages: [{role, content}], ...}, four levels deep; bounded before
# parsing, since a file (or stdin) may come from anyone.
MAX_CLAIMS_FILE = 16 * 1024 * 1024
MAX_CLAIMS_DEPTH = 8

MODEL_HELP = "GGUF model file to use (default: the embedded SmolLM2-135M-Instruct Q4_1)"
THREADS_HELP = "llama.cpp threads for the model instance"


def fail(error: Exception) -> None:
    raise click.ClickException(str(error))


def read_claims(file) -> object:
    """The claims file's JSON, at most MAX_CLAIMS_FILE characters and MAX_CLAIMS_DEPTH deep; a clean error else."""
    name = getattr(file, "name", "input")
    try:
        return decode_json_bounded(file.read(MAX_CLAIMS_FILE + 1), max_size=MAX_CLAIMS_FILE,
                                   max_depth=MAX_CLAIMS_DEPTH)
    except BoundedInputError as error:
        raise click.ClickException(f"{name} is not a claims file: {error}") from None
    except UnicodeDecodeError as error:
        raise click.ClickException(f"{name} is not UTF-8 text: {error.reason}") from None


@click.command("infer")
@click.option("--prompt", required=True, help="the user message")
@click.option("--system", default=None, help="an optional system message")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None, help=MODEL_HELP)
@click.option("--max-tokens", type=click.IntRange(1, 2048), default=128, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help=THREADS_HELP)
@click.option("--timeout", type=float, default=None, help="per-job deadline in seconds")
@click.option("--json", "as_json", is_flag=True, help="print the final output as one JSON object instead of streaming")
def infer_command(prompt, system, model_path, max_tokens, threads, timeout, as_json):
    """Stream a greedy completion from a local model."""
    import trio

    from inference.engine import load_model
    from inference.jobs import JobSpec
    from inference.worker import Worker

    try:
        model = load_model(model_path, n_threads=threads)
        messages = ([("system", system)] if system else []) + [("user", prompt)]
        job = JobSpec.from_chat(messages, model.sha256, max_tokens)
    except InferenceError as error:
        fail(error)
    failures: list[InferenceError] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            worker = Worker(model=model, measure_capacity=False)
            await nursery.start(worker.run)
            try:
                async with worker.generate(job, timeout=timeout) as stream:
                    async for piece in stream:
                        if not as_json:
                            click.echo(piece.text, nl=False)
                output = stream.output
            except InferenceError as error:
                # Caught inside the nursery: trio would wrap it in an ExceptionGroup.
                failures.append(error)
                return
            finally:
                nursery.cancel_scope.cancel()
            if as_json:
                click.echo(json.dumps({
                    "model_sha256": model.sha256.hex(),
                    "text": output.text,
                    "output_tokens": list(output.tokens),
                    "finish_reason": output.finish_reason,
                    "prompt_tokens": output.prompt_tokens,
                }))
            else:
                click.echo()

    trio.run(main)
    if failures:
        click.echo()
        fail(failures[0])


def parse_claim(entry: object, verifier):
    """(job, output_tokens) from one JSON claim; typed errors for malformed ones."""
    from inference.exceptions import InvalidJob
    from inference.jobs import JobSpec

    if not isinstance(entry, dict):
        raise InvalidJob("claim must be a JSON object", got=type(entry).__name__, expected="object")
    try:
        model_sha256 = bytes.fromhex(str(entry.get("model_sha256", "")).removeprefix("0x"))
    except ValueError as error:
        raise InvalidJob("model_sha256 is not hex", got=entry.get("model_sha256"), expected="64 hex digits") from error
    job = JobSpec.from_chat(entry.get("messages") or [], model_sha256, entry.get("max_tokens"))
    if "output_tokens" in entry:
        tokens = entry["output_tokens"]
        if not isinstance(tokens, list):
            raise InvalidJob("output_tokens must be a list of integers", got=tokens, expected="[int, ...]")
        return job, tokens
    if "output_text" in entry:
        # Text cannot show the end-of-generation token; finish_reason "stop" claims it.
        finish_reason = entry.get("finish_reason", "length")
        if finish_reason not in ("stop", "length"):
            raise InvalidJob("finish_reason must be stop or length", got=finish_reason, expected="stop | length")
        return job, verifier.get_tokens_from_text(job, entry["output_text"], ended=finish_reason == "stop")
    raise InvalidJob("claim needs output_tokens or output_text", got=sorted(entry), expected="output_tokens | output_text")


@click.command("verify")
@click.argument("file", type=click.File("r"))
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None, help=MODEL_HELP)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help=THREADS_HELP)
@click.option("--details", is_flag=True, help="also print token counts and the largest gap")
def verify_command(file, model_path, threads, details):
    """Score claimed outputs by teacher forcing; one JSON line per claim.

    FILE ("-" for stdin) holds a JSON object or a list of them:
    {"model_sha256": hex, "messages": [{"role", "content"}...], "max_tokens": N,
    "output_tokens": [ints]}; "output_text" (with "finish_reason": "stop" when
    the model ended it) may replace "output_tokens".
    """
    from inference.engine import load_model
    from inference.verifier import Verifier, make_rejection

    document = read_claims(file)
    claims = document if isinstance(document, list) else [document]
    try:
        model = load_model(model_path, n_threads=threads)
    except InferenceError as error:
        fail(error)
    verifier = Verifier(model)
    for entry in claims:
        try:
            job, tokens = parse_claim(entry, verifier)
            result = verifier.evaluate(job, tokens)
        except InferenceError as error:
            result = make_rejection(str(error))
        line = result.to_json()
        if details and not result.error:
            line.update(tokens=result.n_tokens, within_tolerance=result.n_within_tolerance,
                        exact=result.n_exact, max_gap=round(result.max_gap, 4))
        click.echo(json.dumps(line))
        sys.stdout.flush()


@click.command("annotate")
@click.option("--content", required=True, help="the content to label")
@click.option("--labels", required=True, help="comma-separated label set, e.g. positive,negative")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None, help=MODEL_HELP)
@click.option("--threads", type=click.IntRange(1, 64), default=None, help=THREADS_HELP)
def annotate_command(content, labels, model_path, threads):
    """Pick a label by comparing label log-likelihoods under the model."""
    from inference.annotator import Annotator
    from inference.engine import load_model

    label_list = [label.strip() for label in labels.split(",")]
    try:
        annotation = Annotator(load_model(model_path, n_threads=threads)).annotate(content, label_list)
    except InferenceError as error:
        fail(error)
    click.echo(json.dumps({
        "label_index": annotation.label_index,
        "label": annotation.label,
        "logprobs": [round(x, 4) for x in annotation.logprobs],
    }))


COMMANDS = [infer_command, verify_command, annotate_command]
