"""Issuance reaches workers on a real chain: signed transactions, LevelDB, build_block on one node, apply_block
on another.

A 120-token job audited by a committee of three fills its block, so the block
pays its whole budget (issuance + the pool's drip) to the worker and the three
attesters, pro rata to their units. Under the old rule (units x wei_per_unit,
10^9) the same job earned 0.12 MUAGIC of a 2-MUAGIC issuance and the rest stayed
in the pool.
"""
from __future__ import annotations


from chain import ledger
from chain.payloads import Attestation, ChatMessage, InferenceRequest, InferenceResult, RegisterWorker, compute_work_id
from chain.transactions import POOL_ADDRESS
from economy import JobStatus, compute_block_budget, get_job, make_work_rules
from eth_utils import keccak
from genesis.keys import get_address
from tests.economy.test_economy_chain import TwoNodes, make_devnet_genesis

MODEL = keccak(b"rewards-chain-test-model")
WORKER_KEY = keccak(b"rewards-chain-test-worker")
REQUESTER_KEY = keccak(b"rewards-chain-test-requester")


def test_a_job_that_fills_its_block_earns_the_blocks_budget(tmp_path):
    genesis = make_devnet_genesis(audit_base_rate_ppm=1_000_000, audit_committee_size=3)
    rules = make_work_rules(genesis)
    params = rules.params
    nodes = TwoNodes(tmp_path, genesis, rules, [WORKER_KEY, REQUESTER_KEY])
    follower, nonces, tx, produce = nodes.follower, nodes.nonces, nodes.tx, nodes.produce
    worker, requester = get_address(WORKER_KEY), get_address(REQUESTER_KEY)

    produce([tx(worker, "register_worker", RegisterWorker(model_sha256=MODEL, capacity=110))])
    job_id = compute_work_id(requester, nonces[requester])
    produce([tx(requester, "inference_request", InferenceRequest(
        messages=[ChatMessage(role=b"user", content=b"Tell a story.")], model_sha256=MODEL, max_tokens=128))])
    produce([tx(worker, "inference_result", InferenceResult(job_id=job_id, output_tokens=list(range(120))))])
    produce([])  # the audit is decided once the hash of the block holding the result exists
    job = get_job(follower.state, job_id)
    assert job.status == JobStatus.ATTESTING
    members = [seat.address for seat in job.committee]
    before = {a: follower.state.get_balance(a) for a in members}
    pool_before = follower.state.get_balance(POOL_ADDRESS)
    issued_before = ledger.get_issued(follower.state)
    block = produce([tx(a, "attestation", Attestation(job_id=job_id, score_ppm=995_000)) for a in members])

    assert get_job(follower.state, job_id).status == JobStatus.ACCEPTED
    budget = compute_block_budget(pool_before, params)
    worker_units, attester_units = 120 * 995_000, 120 * params.attester_share_ppm
    total_units = worker_units + 3 * attester_units
    assert total_units * params.wei_per_unit >= params.issuance_per_block  # the block is full
    reward = follower.state.get_balance(worker)
    assert reward == worker_units * budget // total_units
    assert reward > 3 * params.issuance_per_block // 4  # most of the block's issuance, not 6% of it
    for member in members:
        assert follower.state.get_balance(member) - before[member] == attester_units * budget // total_units
    # The whole budget went out but for the flooring (under 1 wei per claim); the pool kept the rest.
    assert budget - 4 < block.header.recognition <= budget
    issued = ledger.get_issued(follower.state) - issued_before
    assert follower.state.get_balance(POOL_ADDRESS) == pool_before + issued - block.header.recognition
