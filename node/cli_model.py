"""`magicoin model`: a model's card (what `register_model` puts on chain) and a second model made by requantising.

    magicoin model card [--model PATH]            the card of a GGUF (the embedded default without --model)
    magicoin model requantize --out PATH [--type q8_0]
                                                   another model from the default one, for a two-model devnet
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from inference.exceptions import InferenceError

FTYPES = {"q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0", "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0", "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
          "f16": "LLAMA_FTYPE_MOSTLY_F16"}


def fail(error: Exception) -> None:
    click.echo(f"error: {error}", err=True)
    sys.exit(1)


@click.group("model")
def model_group() -> None:
    """Model files: their on-chain cards, and requantised copies."""


@model_group.command("card")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="A GGUF file. [the embedded default]")
@click.option("--name", default=None, help="The card's name (at most 64 bytes). [the file name]")
def card_command(model_path, name):
    """Print the model's card as JSON: sha256, name, chat template and vocabulary hashes, context."""
    from genesis.format import models_to_json
    from inference.cards import compute_model_card
    from inference.engine import load_model

    try:
        with load_model(model_path, n_threads=1) as model:
            card = compute_model_card(model, name.encode() if name else None)
    except InferenceError as error:
        fail(error)
    click.echo(json.dumps(models_to_json([card])[0], indent=2))


@model_group.command("requantize")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), default=None,
              help="The GGUF to requantise. [the embedded default]")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write the new GGUF.")
@click.option("--type", "ftype", type=click.Choice(sorted(FTYPES)), default="q8_0", show_default=True)
def requantize_command(model_path, out_path, ftype):
    """Write a requantised copy: another model (another sha256) with the same tokenizer and chat template."""
    import llama_cpp

    from inference.models import get_default_model_path, make_requantized_model

    try:
        source = Path(model_path) if model_path else get_default_model_path()
        made = make_requantized_model(source, out_path, getattr(llama_cpp, FTYPES[ftype]))
    except InferenceError as error:
        fail(error)
    click.echo(json.dumps({"path": str(made.path), "sha256": made.sha256.hex()}))


COMMANDS = [model_group]
