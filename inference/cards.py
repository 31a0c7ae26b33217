"""Model cards: what the chain records of a model (`genesis.ModelCard`), computed from a loaded GGUF.

A card names the file (its sha256) and fixes what turns a job into tokens:
the chat template that renders the prompt (default system turn included) and
the vocabulary that tokenises it. Two copies that agree on the card render and
tokenise a job identically, so one can verify the other's output. The
vocabulary hash covers every token's text in id order and the special tokens
(BOS, EOS); BPE merges are not exposed by llama.cpp's API, so a file that
changed only its merges would hash the same vocabulary (it would still differ
in sha256, and its outputs would fail the start-up probe of `inference.backends`).
"""
from __future__ import annotations

import hashlib

from genesis import ModelCard
from inference.engine import CONTEXT_TOKENS, LocalModel

VOCAB_DOMAIN = b"magicoin:vocab:v1"
MAX_CARD_NAME = 64


def compute_vocab_sha256(model: LocalModel) -> bytes:
    digest = hashlib.sha256(VOCAB_DOMAIN)
    digest.update(model.n_vocab.to_bytes(4, "big") + model.bos_token.to_bytes(4, "big", signed=True)
                  + model.eos_token.to_bytes(4, "big", signed=True))
    for token in range(model.n_vocab):
        text = model.get_token_text(token).encode("utf-8")
        digest.update(len(text).to_bytes(4, "big") + text)
    return digest.digest()


def compute_template_sha256(model: LocalModel) -> bytes:
    return hashlib.sha256(model.chat_template.encode("utf-8")).digest()


def compute_card_name(model: LocalModel) -> bytes:
    """The file's name without `.gguf`, cut to the card's limit (names are for people; the sha256 is the id)."""
    stem = model.file.path.name.removesuffix(".gguf").replace(".", "-")
    return stem.encode("utf-8")[:MAX_CARD_NAME] or b"model"


def compute_model_card(model: LocalModel, name: bytes | None = None) -> ModelCard:
    return ModelCard(
        sha256=model.sha256,
        name=name if name is not None else compute_card_name(model),
        chat_template_sha256=compute_template_sha256(model),
        vocab_sha256=compute_vocab_sha256(model),
        context_tokens=CONTEXT_TOKENS,
    )
