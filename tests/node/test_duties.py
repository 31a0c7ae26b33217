"""Worker, attester and annotator duties with the real default model, on four in-process nodes.

Three validators run duties over ONE loaded model (the model is loaded once per
process, as a node loads it once for all its duties); the fourth is the
requester whose gateway signs the chat job and streams it from the worker.
"""
from __future__ import annotations

import rlp
import trio
from eth_utils import keccak

from chain.payloads import AnnotationTask, compute_work_id
from chain.transactions import sign_work_transaction
from economy import JobStatus, TaskStatus, compute_vote_weight_ppm, get_annotator, get_job, get_task, get_worker_record
from genesis import make_genesis
from genesis.format import GoldTask
from genesis.keys import get_address
from inference.worker import Worker
from node.duties import Duties
from tests.node.nodekit import CHAIN_ID, PARAMS, VALIDATOR_KEYS, make_node, start_node, wait_for_peers

TERMINAL = (JobStatus.ACCEPTED, JobStatus.FAILED_AUDIT, JobStatus.UNVERIFIED, JobStatus.EXPIRED)


# Gold the default model labels right whatever order the chain shows the labels in (checked with SmolLM2-135M).
SENTIMENT_GOLD = [GoldTask(b"I love this, it is wonderful!", [b"positive", b"negative"], 0),
                  GoldTask(b"This is terrible, I hate it.", [b"positive", b"negative"], 1),
                  GoldTask(b"What a fantastic, happy day!", [b"positive", b"negative"], 0)]


def make_duties_genesis():
    """The node tests' genesis with gold the model gets right, mixed in every 5 blocks (1 s at 0.2 s blocks)."""
    return make_genesis(CHAIN_ID, [get_address(k) for k in VALIDATOR_KEYS], params=PARAMS.copy(gold_interval_blocks=5),
                        gold_tasks=SENTIMENT_GOLD, timestamp_ms=1_700_000_000_000)


def get_weight(node, address: bytes) -> int:
    record = get_annotator(node.chain.state, address)
    params = node.chain.rules.params
    return 0 if record is None else compute_vote_weight_ppm(record.gold_correct, record.gold_seen, 2, params)


async def wait_until(predicate, poll: float = 0.1):
    while not (result := predicate()):
        await trio.sleep(poll)
    return result


async def test_chat_job_is_served_streamed_recorded_and_audited(tmp_path):
    genesis = make_duties_genesis()
    with trio.fail_after(150):
        async with trio.open_nursery() as outer:
            # The shared model outlives the nodes: they stop (and their duty threads finish) first,
            # even when fail_after cancels everything.
            worker = Worker()
            worker_scope = trio.CancelScope(shield=True)
            await outer.start(Duties(worker).run_worker, worker_scope)
            try:
                await run_network(genesis, tmp_path, worker)
            finally:
                worker_scope.cancel()


async def run_network(genesis, tmp_path, worker):
    async with trio.open_nursery() as nursery:
        nodes = []
        for index, key in enumerate(VALIDATOR_KEYS):
            duties = Duties(worker, start_worker=False) if index < 3 else None
            node = make_node(genesis, tmp_path / f"n{index}", key, [str(n.p2p.enode) for n in nodes],
                             duties=duties, block_interval=0.2)
            nodes.append(await start_node(nursery, node))
        workers, requester = nodes[:3], nodes[3]
        await wait_for_peers(nodes, 3)
        # Every duty node registers itself as a worker for the model it loaded.
        await wait_until(lambda: all(get_worker_record(requester.chain.state, n.address) for n in workers))
        assert [card.sha256 for card in requester.inference.get_models()] == [worker.model_sha256]

        job = await requester.inference.submit_chat([("user", "Say hello in one word.")], max_tokens=8)
        chunks = [chunk async for chunk in job.chunks]
        tokens = [t for chunk in chunks for t in chunk.token_ids]
        assert 1 <= len(tokens) <= 8 and "".join(c.text for c in chunks).strip()
        assert job.worker in {n.address for n in workers}
        assert job.job_id == compute_work_id(requester.address, 0)

        # On chain: requested, assigned to the worker that streamed it, answered with those tokens, closed.
        record = await wait_until(lambda: (r := get_job(requester.chain.state, job.job_id)) is not None
                                  and r.status in TERMINAL and r)
        assert record.requester == requester.address and record.worker == job.worker
        assert record.output_hash == keccak(rlp.encode(tokens))
        assert record.status == JobStatus.ACCEPTED, record
        # A new worker is on probation, so its first job is always audited: another duty node attested it.
        assert record.audited == 1 and record.attestations
        assert all(s.score_ppm >= 900_000 for s in record.attestations)
        assert not {s.address for s in record.attestations} & {job.worker, requester.address}
        assert sum(n.duties.counters["attestations"] for n in workers) == len(record.attestations)

        # A second job right after the first (its result and audit in flight, loads about to change):
        # the gateway names the worker the chain then assigns.
        second = await requester.inference.submit_chat([("user", "Name a colour.")], max_tokens=4)
        assert [chunk async for chunk in second.chunks]
        record = await wait_until(lambda: (r := get_job(requester.chain.state, second.job_id)) is not None and r)
        assert record.worker == second.worker

        # Every duty node registered as an annotator and is measured on gold; once two of them weigh
        # something, an annotation task from a plain user is drawn to two duty nodes and recognised.
        await wait_until(lambda: sum(get_weight(requester, n.address) > 0 for n in workers) >= 2, poll=0.2)
        user = keccak(b"duties-test-user")
        raw = sign_work_transaction(user, chain_id=CHAIN_ID, nonce=0, kind="annotation_task", gas=1_000_000,
                                    data=rlp.encode(AnnotationTask(b"I love this, it is wonderful!",
                                                                   [b"positive", b"negative"], 2)))
        requester.submit_transaction(raw)
        task_id = compute_work_id(get_address(user), 0)
        task = await wait_until(lambda: (t := get_task(requester.chain.state, task_id)) is not None
                                and t.status != TaskStatus.OPEN and t)
        assert task.status == TaskStatus.RECOGNISED and len(task.annotations) == 2
        assert {a.address for a in task.annotations} == {s.address for s in task.annotators}
        assert task.label_index == 0
        nursery.cancel_scope.cancel()
