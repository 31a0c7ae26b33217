"""Shared pieces for the chain-core tests: a small genesis, a LevelDB-backed chain, signing helpers."""

from __future__ import annotations

import rlp
import pytest
from eth_account import Account
from eth_utils import keccak

from chain import ledger
from chain.abc import BlockContext, StateAPI, TxContext, WorkRulesAPI
from chain.builder import build_block
from chain.db import LevelDB
from chain.exceptions import WorkRejected
from chain.payloads import (
    Annotation,
    AnnotationTask,
    Attestation,
    ChatMessage,
    Evidence,
    InferenceRequest,
    InferenceResult,
    Offering,
    RegisterAnnotator,
    RegisterWorker,
    RegisterModel,
    DeclareModels,
)
from chain.state import State
from chain.transactions import make_work_tx_fields
from chain.transition import apply_genesis
from consensus.votes import EMPTY_COMMIT, PRECOMMIT, compute_commit, make_vote, sign_vote
from genesis import DEFAULT_MODEL_CARD, DEFAULT_PARAMS, MUAGIC, ModelCard, make_genesis
from genesis.keys import devnet_private_key, get_address

CHAIN_ID = 4242
MODEL = keccak(b"model")
VALIDATOR_KEYS = [devnet_private_key(i) for i in range(4)]
VALIDATORS = [get_address(k) for k in VALIDATOR_KEYS]
USER_KEYS = [keccak(b"magicoin-test-user-%d" % i) for i in range(4)]
USERS = [get_address(k) for k in USER_KEYS]
TEST_PARAMS = DEFAULT_PARAMS.copy(
    max_txs_per_account_per_block=3,
    max_block_txs=12,
    max_payload_size=2048,
    epoch_length=2,
)
# The test chains' jobs name a stand-in model, known to the chain through the genesis like the default one.
TEST_MODEL_CARD = ModelCard(MODEL, b"test-model", keccak(b"test-template"), keccak(b"test-vocab"), 2048)
TEST_GENESIS = make_genesis(CHAIN_ID, VALIDATORS, params=TEST_PARAMS, timestamp_ms=1_000_000,
                            models=[DEFAULT_MODEL_CARD, TEST_MODEL_CARD])


def sample_payloads(
    job_id: bytes = b"\x33" * 32, signer_key: bytes = VALIDATOR_KEYS[0]
) -> dict[str, rlp.Serializable]:
    """One valid payload per work kind (the evidence is a real double-sign by `signer_key`)."""
    vote_a = sign_vote(
        make_vote(PRECOMMIT, 7, 0, b"\xaa" * 32, get_address(signer_key)), signer_key, CHAIN_ID
    )
    vote_b = sign_vote(
        make_vote(PRECOMMIT, 7, 0, b"\xbb" * 32, get_address(signer_key)), signer_key, CHAIN_ID
    )
    return {
        "register_worker": RegisterWorker(MODEL, 120),
        "register_annotator": RegisterAnnotator(b"person"),
        "register_model": RegisterModel(keccak(b"another model"), b"another", keccak(b"t2"), keccak(b"v2"), 4096),
        "declare_models": DeclareModels([MODEL]),
        "inference_request": InferenceRequest(
            [ChatMessage(b"system", b"be brief"), ChatMessage(b"user", b"hi")], MODEL, 32
        ),
        "inference_result": InferenceResult(job_id, [1, 2, 3, 70000]),
        "attestation": Attestation(job_id, 950_000),
        "annotation_task": AnnotationTask(b"is this spam?", [b"spam", b"ham"], 3),
        "annotation": Annotation(job_id, 1),
        "offering": Offering(b"priority", job_id),
        "evidence": Evidence(rlp.encode(vote_a), rlp.encode(vote_b)),
    }


def sign_with_eth_account(
    key: bytes,
    *,
    nonce: int,
    kind: str,
    payload: rlp.Serializable | bytes,
    value: int = 0,
    tip: int = 0,
    chain_id: int = CHAIN_ID,
    gas: int = 200_000,
) -> bytes:
    """Sign exactly as a wallet would: eth-account, unmodified, type 2 fields."""
    data = payload if isinstance(payload, bytes) else rlp.encode(payload)
    fields = make_work_tx_fields(
        chain_id=chain_id,
        nonce=nonce,
        kind=kind,
        data=data,
        value=value,
        gas=gas,
        max_fee_per_gas=tip,
        max_priority_fee_per_gas=tip,
    )
    return bytes(Account.sign_transaction(fields, key).raw_transaction)


CLAIMS_ADDRESS = (0x1003).to_bytes(20, "big")  # the inference-result system address
CLAIMS_SLOT = keccak(b"test:claims")


class RecordingRules(WorkRulesAPI):
    """TEST DOUBLE for the economy: pays a fixed reward per inference result, refuses odd annotations.

    Small enough to model exactly in the property test: finalize_block issues
    `issuance` into the pool and pays each result of the block `reward` from the
    pool (while the pool lasts), through chain.ledger like the real economy. The
    block's claims live in state (as the economy keeps them), so a reverted or
    rejected block leaves none behind.
    """

    def __init__(self, issuance: int = 2 * MUAGIC, reward: int = 3 * MUAGIC) -> None:
        self.issuance = issuance
        self.reward = reward

    def apply_work(
        self, state: StateAPI, block: BlockContext, tx: TxContext, kind: str, payload: object
    ) -> None:
        if kind == "annotation" and payload.label_index >= 2:
            raise WorkRejected(
                "label index outside the task's labels", got=payload.label_index, expected="0..1"
            )
        if kind == "inference_result":
            claims = self.get_claims(state)
            state.set_storage(CLAIMS_ADDRESS, CLAIMS_SLOT, rlp.encode(claims + [tx.sender]))

    def get_claims(self, state: StateAPI) -> list[bytes]:
        encoded = state.get_storage(CLAIMS_ADDRESS, CLAIMS_SLOT)
        return list(rlp.decode(encoded)) if encoded else []

    def finalize_block(self, state: StateAPI, block: BlockContext) -> int:
        ledger.issue(state, self.issuance)
        paid = 0
        for earner in self.get_claims(state):
            amount = min(self.reward, ledger.get_pool_balance(state))
            ledger.credit_reward(state, earner, amount)
            paid += amount
        state.set_storage(CLAIMS_ADDRESS, CLAIMS_SLOT, b"")
        return paid


class ChainHarness:
    """A LevelDB-backed chain driven block by block with build_block (the head state is reopened per block)."""

    def __init__(self, path, genesis=TEST_GENESIS, rules: WorkRulesAPI | None = None) -> None:
        self.db = LevelDB(path)
        self.genesis = genesis
        self.rules = rules if rules is not None else RecordingRules()
        self.head = apply_genesis(State(self.db), genesis).header
        self.headers = [self.head]

    def state(self, root: bytes | None = None) -> State:
        return State(self.db, self.head.state_root if root is None else root)

    def build(self, raw_txs, *, last_commit=None, timestamp_ms=None):
        commit = last_commit if last_commit is not None else self.commit_for_head()
        return build_block(
            self.state(),
            self.head,
            raw_txs,
            timestamp_ms or self.head.timestamp_ms + 1000,
            VALIDATORS[0],
            commit,
            self.genesis,
            self.rules,
        )

    def commit_for_head(self):
        """A real commit for the head (signed by every devnet validator), or none for genesis."""
        if self.head.number == 0:
            return EMPTY_COMMIT
        votes = [
            sign_vote(
                make_vote(PRECOMMIT, self.head.number, 0, self.head.hash, get_address(k)),
                k,
                CHAIN_ID,
            )
            for k in VALIDATOR_KEYS
        ]
        return compute_commit(self.head.number, 0, self.head.hash, votes)

    def advance(self, built) -> None:
        self.head = built.block.header
        self.headers.append(self.head)

    def close(self) -> None:
        self.db.close()


@pytest.fixture
def test_chain(tmp_path):
    chain = ChainHarness(tmp_path / "db")
    yield chain
    chain.close()
