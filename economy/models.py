"""Models on chain: which models the chain takes jobs for, and who can verify them.

The rule (docs/ARCHITECTURE.md, "Models"):
- a model is named by its GGUF's sha256 and known to the chain through the
  genesis (`genesis.ModelCard`s) or a `register_model` transaction carrying the
  same card (chat template and vocabulary hashes, context length); a card is
  registered once and never changes;
- an account declares the models it holds with `declare_models` (each must be
  known); a worker also holds the model it registered to serve;
- an inference request names a known model, fits its context, and is refused
  up front unless at least `min_model_verifiers` recognised accounts other than
  the requester hold the model: a job nobody independent could audit is never
  taken, so no worker is penalised because no verifier could check it;
- an audit committee is drawn only among recognised accounts holding the job's
  model.
"""
from __future__ import annotations

from typing import Iterable

from chain.abc import BlockContext, StateAPI, TxContext
from chain.exceptions import WorkRejected
from economy.params import EconomyParams
from economy.store import (
    HELD_MODELS_SLOT,
    MODEL_REGISTRY_SLOT,
    REGISTER_MODEL_ADDRESS,
    get_list,
    get_worker_record,
    read_record,
    set_list,
    write_record,
)
from genesis import ModelCard


class UnknownModel(WorkRejected):
    """The model named is neither in the genesis nor registered (`register_model`)."""


class ModelUnverifiable(WorkRejected):
    """Too few recognised accounts other than the requester hold the model to audit a job on it."""


def compute_model_name(card: ModelCard) -> str:
    return card.name.decode("utf-8", errors="replace")


def get_registered_models(state: StateAPI) -> tuple[bytes, ...]:
    """sha256s registered by transaction, in registration order (genesis models are the rules' own)."""
    return get_list(state, REGISTER_MODEL_ADDRESS, MODEL_REGISTRY_SLOT)


def get_registered_model(state: StateAPI, sha256: bytes) -> ModelCard | None:
    return read_record(state, REGISTER_MODEL_ADDRESS, sha256, ModelCard)


def get_declared_models(state: StateAPI, address: bytes) -> tuple[bytes, ...]:
    return get_list(state, address, HELD_MODELS_SLOT)


def is_model_holder(state: StateAPI, address: bytes, sha256: bytes) -> bool:
    """Declared it holds the model, or registered as a worker serving it."""
    if sha256 in get_declared_models(state, address):
        return True
    worker = get_worker_record(state, address)
    return worker is not None and worker.model_sha256 == sha256


def compute_unverifiable_message(sha256: bytes, holders: int, needed: int) -> str:
    return (f"model 0x{sha256.hex()[:16]}… cannot be audited: {holders} recognised accounts other than the "
            f"requester hold it, {needed} needed; ask validators to load it (declare_models)")


class ModelRules:
    """The models half of `WorkRules` (a mixin: `WorkRules` sets params, genesis models and candidates)."""

    params: EconomyParams
    genesis_models: dict[bytes, ModelCard]

    def get_model_card(self, state: StateAPI, sha256: bytes) -> ModelCard | None:
        card = self.genesis_models.get(sha256)
        return card if card is not None else get_registered_model(state, sha256)

    def get_known_models(self, state: StateAPI) -> tuple[ModelCard, ...]:
        """Every model the chain takes jobs for: the genesis ones, then the registered ones."""
        registered = (get_registered_model(state, sha) for sha in get_registered_models(state))
        return tuple(self.genesis_models.values()) + tuple(card for card in registered if card is not None)

    def validate_known_model(self, state: StateAPI, sha256: bytes) -> ModelCard:
        card = self.get_model_card(state, sha256)
        if card is None:
            raise UnknownModel("unknown model: register it first (register_model)", got="0x" + sha256.hex(),
                               expected="the sha256 of a model in the genesis or registered on chain")
        return card

    def get_model_verifiers(self, state: StateAPI, sha256: bytes,
                            excluded: Iterable[bytes] = ()) -> list[tuple[bytes, int]]:
        """Committee candidates (address, weight) that hold the model, minus `excluded`."""
        excluded = set(excluded)
        return [(address, weight) for address, weight in self.get_committee_candidates(state)
                if address not in excluded and is_model_holder(state, address, sha256)]

    def count_model_verifiers(self, state: StateAPI, sha256: bytes, requester: bytes) -> int:
        """How many candidates other than the requester hold the model, leaving `state` exactly as it was.

        The candidates' index is built lazily on first use (`get_recognised_index`
        writes it); the front doors call this on the head state itself, which a
        write would fork from every other node's.
        """
        token = state.snapshot()
        try:
            return len(self.get_model_verifiers(state, sha256, excluded=(requester,)))
        finally:
            state.revert(token)

    def validate_request_model(self, state: StateAPI, requester: bytes, sha256: bytes, max_tokens: int) -> None:
        """The front doors' and the chain's check of a request's model: known, fits, auditable."""
        card = self.validate_known_model(state, sha256)
        if max_tokens > card.context_tokens:
            raise WorkRejected("max_tokens exceeds the model's context", got=max_tokens,
                               expected=f"<= {card.context_tokens} for {compute_model_name(card)}")
        holders = self.count_model_verifiers(state, sha256, requester)
        needed = self.params.min_model_verifiers
        if holders < needed:
            raise ModelUnverifiable(compute_unverifiable_message(sha256, holders, needed), got=holders,
                                    expected=f">= {needed}")

    # -- transactions ------------------------------------------------------------------------

    def apply_register_model(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """A model card, once: its name in the chain is its sha256, so it never changes."""
        if self.get_model_card(state, payload.sha256) is not None:
            raise WorkRejected("model already registered", got="0x" + payload.sha256.hex(), expected="a new model")
        card = ModelCard(payload.sha256, payload.name, payload.chat_template_sha256, payload.vocab_sha256,
                         payload.context_tokens)
        write_record(state, REGISTER_MODEL_ADDRESS, payload.sha256, card)
        set_list(state, REGISTER_MODEL_ADDRESS, MODEL_REGISTRY_SLOT, get_registered_models(state) + (payload.sha256,))

    def apply_declare_models(self, state: StateAPI, block: BlockContext, tx: TxContext, payload) -> None:
        """Replace the sender's declared holdings; every model must be known."""
        for sha256 in payload.models:
            self.validate_known_model(state, sha256)
        set_list(state, tx.sender, HELD_MODELS_SLOT, payload.models)
