"""The economy inside the real chain: signed transactions, build_block on one node, apply_block on another.

Every validating node re-executes the economy, so the routing, the committee
draw, the scores and the rewards must come out identical on both, down to the
state root and the header's recognition. The rules, audit policy included,
come from the genesis (`economy.make_work_rules`), as on a real node.
"""
from __future__ import annotations

import pytest
import rlp

from chain import ledger
from chain.blocks import Block, EMPTY_COMMIT
from chain.builder import build_block
from chain.chain import Chain
from chain.db import LevelDB
from chain.exceptions import HeaderMismatch
from chain.payloads import (
    DeclareModels,
    Attestation, ChatMessage, InferenceRequest, InferenceResult, Offering, RegisterWorker, compute_work_id,
)
from chain.state import State
from chain.transactions import POOL_ADDRESS, sign_work_transaction
from chain.transition import apply_block, apply_genesis
from economy import EconomyParams, JobStatus, compute_block_budget, compute_block_payout, get_job
from consensus.votes import Commit
from eth_utils import keccak
from genesis import Genesis, ModelCard, load_devnet_genesis
from genesis.keys import devnet_private_key, get_address
from economy.audit import AuditPolicy
from economy import make_work_rules

MODEL = keccak(b"chain-test-model")
WORKER_KEY = keccak(b"economy-chain-test-worker")
REQUESTER_KEY = keccak(b"economy-chain-test-requester")


class Node:
    def __init__(self, path, genesis, rules):
        self.db = LevelDB(path)
        self.state = State(self.db)
        self.head = apply_genesis(self.state, genesis).header
        self.genesis = genesis
        self.rules = rules


class TwoNodes:
    """A builder and a follower on one genesis: each block is built on one and applied on the other,
    and the state roots must agree. Signs for the devnet validators and `extra_keys`."""

    def __init__(self, tmp_path, genesis, rules, extra_keys) -> None:
        self.genesis, self.rules = genesis, rules
        self.builder = Node(tmp_path / "builder", genesis, rules)
        self.follower = Node(tmp_path / "follower", genesis, rules)
        self.keys = {get_address(k): k for k in [devnet_private_key(i) for i in range(4)] + list(extra_keys)}
        self.nonces = dict.fromkeys(self.keys, 0)
        # The validators hold every genesis model, so jobs on them can be audited (economy.models).
        validators = [get_address(devnet_private_key(i)) for i in range(4)]
        self.produce([self.tx(v, "declare_models", DeclareModels([card.sha256 for card in genesis.models]))
                      for v in validators])

    def tx(self, sender: bytes, kind: str, payload, value: int = 0) -> bytes:
        raw = sign_work_transaction(self.keys[sender], chain_id=self.genesis.chain_id, nonce=self.nonces[sender],
                                    kind=kind, data=rlp.encode(payload), value=value)
        self.nonces[sender] += 1
        return raw

    def produce(self, raw_txs: list[bytes]) -> Block:
        builder, follower = self.builder, self.follower
        parent = builder.head
        built = build_block(builder.state, parent, raw_txs, parent.timestamp_ms + 1_000, get_address(
            devnet_private_key(0)), commit_for(parent), self.genesis, self.rules)
        assert not built.skipped and not built.failures, (built.skipped, built.failures)
        apply_block(follower.state, follower.head, built.block, self.genesis, self.rules)
        assert follower.state.make_state_root() == built.block.header.state_root
        builder.head = follower.head = built.block.header
        return built.block


# The stand-in models these tests' jobs name, known to their chains through the genesis.
TEST_MODEL_CARDS = [ModelCard(keccak(name), name, keccak(b"test-template"), keccak(b"test-vocab"), 2048)
                    for name in (b"chain-test-model", b"rewards-chain-test-model")]


def make_devnet_genesis(**params: int) -> Genesis:
    """The devnet genesis with some params changed (a different chain, by its genesis hash) and the test models."""
    genesis = load_devnet_genesis()
    changed = genesis.copy(params=genesis.params.copy(**params), models=list(genesis.models) + TEST_MODEL_CARDS)
    changed.validate()
    return changed


def commit_for(header) -> Commit:
    # Signature checks on the commit are the caller's (consensus.votes); the chain checks height and hash.
    return EMPTY_COMMIT if header.number == 0 else Commit(header.number, 0, header.hash, [])


def test_two_nodes_agree_on_routing_audits_and_rewards(tmp_path):
    genesis = make_devnet_genesis(audit_base_rate_ppm=1_000_000, audit_committee_size=3)
    rules = make_work_rules(genesis)
    nodes = TwoNodes(tmp_path, genesis, rules, [WORKER_KEY, REQUESTER_KEY])
    builder, follower, nonces, tx, produce = nodes.builder, nodes.follower, nodes.nonces, nodes.tx, nodes.produce
    worker, requester = get_address(WORKER_KEY), get_address(REQUESTER_KEY)

    produce([tx(worker, "register_worker", RegisterWorker(model_sha256=MODEL, capacity=110))])
    job_id = compute_work_id(requester, nonces[requester])
    produce([tx(requester, "inference_request", InferenceRequest(
        messages=[ChatMessage(role=b"user", content=b"Name a colour.")], model_sha256=MODEL, max_tokens=32))])
    assert get_job(follower.state, job_id).worker == worker
    produce([tx(worker, "inference_result", InferenceResult(job_id=job_id, output_tokens=list(range(7))))])
    produce([])  # the audit is decided once the hash of the block holding the result exists
    job = get_job(follower.state, job_id)
    assert job.status == JobStatus.ATTESTING
    before = {seat.address: builder.state.get_balance(seat.address) for seat in job.committee}
    attestations = [tx(seat.address, "attestation", Attestation(job_id=job_id, score_ppm=995_000))
                    for seat in job.committee]
    pool_before = follower.state.get_balance(POOL_ADDRESS)
    block = produce(attestations)

    assert get_job(follower.state, job_id).status == JobStatus.ACCEPTED
    assert block.header.recognition > 0
    worker_units, attester_units = 7 * 995_000, 7 * rules.params.attester_share_ppm
    total_units = worker_units + 3 * attester_units
    payout = compute_block_payout(total_units, compute_block_budget(pool_before, rules.params), rules.params)
    assert follower.state.get_balance(worker) == worker_units * payout // total_units  # its share of the budget
    assert all(follower.state.get_balance(a) > before[a] for a in before)
    supply = sum(v.balance for v in genesis.validators) + genesis.pool_balance
    assert sum(b for _, b in follower.state.iter_accounts()) == supply + ledger.get_issued(follower.state)

    # A proposer cannot claim recognition the work did not earn: the follower recomputes it.
    parent = builder.head
    honest = build_block(State(builder.db, parent.state_root), parent, [], parent.timestamp_ms + 1_000,
                         get_address(devnet_private_key(0)), commit_for(parent), genesis, rules).block
    forged = Block(honest.header.copy(recognition=honest.header.recognition + 1), honest.transactions,
                   honest.last_commit)
    with pytest.raises(HeaderMismatch):
        apply_block(follower.state, follower.head, forged, genesis, rules)


def test_an_offering_moves_a_waiting_job_to_the_front(tmp_path):
    genesis = make_devnet_genesis(audit_base_rate_ppm=0, audit_probation_jobs=0)
    rules = make_work_rules(genesis)
    node = Node(tmp_path / "node", genesis, rules)
    keys = {get_address(k): k for k in (WORKER_KEY, REQUESTER_KEY, devnet_private_key(1))}
    nonces = dict.fromkeys(keys, 0)
    worker, requester, patron = (get_address(k) for k in (WORKER_KEY, REQUESTER_KEY, devnet_private_key(1)))

    def tx(sender, kind, payload, value=0):
        raw = sign_work_transaction(keys[sender], chain_id=genesis.chain_id, nonce=nonces[sender], kind=kind,
                                    data=rlp.encode(payload), value=value)
        nonces[sender] += 1
        return raw

    def produce(raw_txs):
        parent = node.head
        built = build_block(node.state, parent, raw_txs, parent.timestamp_ms + 1_000, patron, commit_for(parent),
                            genesis, rules)
        assert not built.skipped and not built.failures, (built.skipped, built.failures)
        node.head = built.block.header

    produce([tx(patron, "declare_models", DeclareModels([MODEL]))])  # a validator that can audit the model
    request = InferenceRequest(messages=[ChatMessage(role=b"user", content=b"hi")], model_sha256=MODEL,
                               max_tokens=60)
    first, second = compute_work_id(requester, 0), compute_work_id(requester, 1)
    produce([tx(requester, "inference_request", request), tx(requester, "inference_request", request),
             tx(patron, "offering", Offering(purpose=b"priority", job_id=second), value=10**18)])
    assert get_job(node.state, first).status == get_job(node.state, second).status == JobStatus.WAITING
    # Capacity 3 tokens/s: 70% fits one job of cost 2 (60 tokens in the 30 s target), not two.
    produce([tx(worker, "register_worker", RegisterWorker(model_sha256=MODEL, capacity=3))])
    assert get_job(node.state, second).status == JobStatus.ASSIGNED
    assert get_job(node.state, first).status == JobStatus.WAITING
    assert node.state.get_balance(POOL_ADDRESS) > genesis.pool_balance


def test_rules_from_genesis_are_the_code_defaults_for_the_devnet():
    genesis = load_devnet_genesis()
    rules = make_work_rules(genesis)
    assert rules.audit_policy == AuditPolicy() and rules.params == EconomyParams()


@pytest.mark.parametrize("rate_ppm,audited", [(1_000_000, True), (0, False)])
def test_the_genesis_audit_rate_decides_which_results_are_audited(tmp_path, rate_ppm, audited):
    # No policy is passed anywhere: the follower is a Chain with the rules its genesis implies.
    genesis = make_devnet_genesis(audit_base_rate_ppm=rate_ppm, audit_probation_jobs=0)
    builder = Node(tmp_path / "builder", genesis, make_work_rules(genesis))
    follower = Chain.from_genesis(LevelDB(tmp_path / "follower"), genesis, make_work_rules, verify_commits=False)
    assert follower.rules.audit_policy.base_rate_ppm == rate_ppm
    worker, requester = get_address(WORKER_KEY), get_address(REQUESTER_KEY)
    validator = get_address(devnet_private_key(0))
    keys = {worker: WORKER_KEY, requester: REQUESTER_KEY, validator: devnet_private_key(0)}
    nonces = dict.fromkeys(keys, 0)

    def tx(sender, kind, payload):
        raw = sign_work_transaction(keys[sender], chain_id=genesis.chain_id, nonce=nonces[sender], kind=kind,
                                    data=rlp.encode(payload))
        nonces[sender] += 1
        return raw

    def produce(raw_txs):
        parent = builder.head
        built = build_block(builder.state, parent, raw_txs, parent.timestamp_ms + 1_000,
                            get_address(devnet_private_key(0)), commit_for(parent), genesis, builder.rules)
        assert not built.skipped and not built.failures, (built.skipped, built.failures)
        follower.import_block(built.block)
        assert follower.head == built.block.header
        builder.head = built.block.header

    produce([tx(validator, "declare_models", DeclareModels([MODEL])),  # someone independent can audit it
             tx(worker, "register_worker", RegisterWorker(model_sha256=MODEL, capacity=1_000))])
    request = InferenceRequest(messages=[ChatMessage(role=b"user", content=b"hi")], model_sha256=MODEL,
                               max_tokens=30)
    job_ids = [compute_work_id(requester, n) for n in range(6)]
    produce([tx(requester, "inference_request", request) for _ in job_ids])
    assert all(get_job(follower.state, j).worker == worker for j in job_ids)
    produce([tx(worker, "inference_result", InferenceResult(job_id=j, output_tokens=[1, 2, 3])) for j in job_ids])
    produce([])  # the audit coins are seeded by the hash of the block holding the results
    statuses = {get_job(follower.state, j).status for j in job_ids}
    assert statuses == ({JobStatus.ATTESTING} if audited else {JobStatus.ACCEPTED})
    assert all(bool(get_job(follower.state, j).audited) == audited for j in job_ids)
