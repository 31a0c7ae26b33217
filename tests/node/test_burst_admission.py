"""The front door under a burst: the mempool refuses requests beyond the waiting queue with a clear error,
and a worker's duties stop decoding a job the moment the chain shows it is no longer theirs."""
from __future__ import annotations

import pytest
import rlp
import trio
from eth_utils import keccak

from chain.chain import Chain
from chain.db import LevelDB
from chain.payloads import Offering, compute_work_id
from chain.transactions import sign_work_transaction
from economy import JobStatus, ModelUnverifiable, NetworkBusy, make_work_rules
from genesis import DEFAULT_PARAMS, make_genesis
from genesis.keys import devnet_private_key, get_address
from inference.jobs import JobSpec
from inference.models import DEFAULT_MODEL_SHA256
from node.duties import Duties
from node.mempool import Mempool

CHAIN_ID = 4344
KEYS = [devnet_private_key(i) for i in range(4)]
GENESIS = make_genesis(CHAIN_ID, [get_address(k) for k in KEYS], params=DEFAULT_PARAMS.copy(max_waiting_jobs=3),
                       timestamp_ms=1_000_000)


def make_request(key: bytes, nonce: int = 0, max_tokens: int = 512) -> bytes:
    job = JobSpec.from_chat([("user", "Tell me a long story.")], DEFAULT_MODEL_SHA256, max_tokens)
    return sign_work_transaction(key, chain_id=CHAIN_ID, nonce=nonce, kind="inference_request", data=job.encode(),
                                 gas=1_000_000)


@pytest.fixture
def chain(tmp_path):
    db = LevelDB(tmp_path / "db")
    yield Chain.from_genesis(db, GENESIS, make_work_rules)
    db.close()


def make_holding_state(chain):
    """The head state after the genesis validators declared they hold the default model (so it is auditable)."""
    from chain.abc import BlockContext, TxContext
    from chain.payloads import DeclareModels

    state = chain.scratch_state()
    for index, key in enumerate(KEYS):
        chain.rules.apply_work(state, BlockContext(1, 2_000_000, b"\0" * 20, b"\0" * 32),
                               TxContext(get_address(key), 0, bytes([index]) * 32, index), "declare_models",
                               DeclareModels([DEFAULT_MODEL_SHA256]))
    return state


def test_a_request_on_a_model_no_validator_holds_is_refused_at_the_door(chain):
    pool = Mempool(chain.genesis, lambda: chain.state)
    with pytest.raises(ModelUnverifiable, match="cannot be audited"):
        pool.add(make_request(keccak(b"early-user")))
    assert pool.get_pending_request_count() == 0


def test_requests_beyond_the_waiting_queue_are_refused_at_the_door_with_a_clear_error(chain):
    state = make_holding_state(chain)
    pool = Mempool(chain.genesis, lambda: state)
    fresh = [keccak(b"burst-user-%d" % i) for i in range(5)]
    for key in fresh[:3]:  # nobody serves the model: every one of them would wait
        pool.add(make_request(key))
    with pytest.raises(NetworkBusy) as refused:
        pool.add(make_request(fresh[3]))
    assert str(refused.value).startswith(
        "network busy: 3 jobs waiting for capacity; add an offering to prioritise")
    assert pool.get_pending_request_count() == 3 and pool.statistics()["requests"] == 3
    # Other work is not held back by the queue.
    pool.add(sign_work_transaction(fresh[4], chain_id=CHAIN_ID, nonce=0, kind="offering",
                                   data=rlp.encode(Offering(b"hi", b"")), gas=100_000))


def test_a_request_a_worker_has_room_for_is_admitted_while_long_ones_queue(chain):
    from chain.abc import BlockContext, TxContext
    from chain.payloads import RegisterWorker

    state = make_holding_state(chain)
    worker = keccak(b"small-worker")
    chain.rules.apply_work(state, BlockContext(1, 2_000_000, b"\0" * 20, b"\0" * 32),
                           TxContext(get_address(worker), 0, b"\1" * 32, 0), "register_worker",
                           RegisterWorker(DEFAULT_MODEL_SHA256, 10))  # 7 tokens/s of room: no 512-token job fits
    pool = Mempool(chain.genesis, lambda: state)
    for index in range(3):
        pool.add(make_request(keccak(b"long-%d" % index)))
    with pytest.raises(NetworkBusy):
        pool.add(make_request(keccak(b"long-3")))
    for index in range(7):  # cost 1 each: as many as the worker has room for
        pool.add(make_request(keccak(b"short-%d" % index), max_tokens=30))
    with pytest.raises(NetworkBusy):
        pool.add(make_request(keccak(b"short-7"), max_tokens=30))


def test_an_offered_request_is_left_to_the_chains_rule(chain, monkeypatch):
    state = make_holding_state(chain)
    pool = Mempool(chain.genesis, lambda: state)
    for index in range(3):
        pool.add(make_request(keccak(b"queued-%d" % index)))
    patron = keccak(b"patron")
    offered = compute_work_id(get_address(patron), 0)
    monkeypatch.setattr("node.mempool.get_job_offering", lambda _state, job_id: 10**18 if job_id == offered else 0)
    with pytest.raises(NetworkBusy):  # the queue is full for a request nobody offered for
        pool.add(make_request(keccak(b"not-offered")))
    tx_hash = pool.add(make_request(patron))  # admitted: the chain decides whether it out-offers a waiting job
    assert pool.get(tx_hash) is not None and pool.get_pending_request_count() == 4


# --- cancellation ------------------------------------------------------------------------------------------------


class FakeNode:
    """Just what `Duties.serve_job` and `cancel_moved_jobs` read: the address, the head state's job records."""

    address = b"\x11" * 20

    def __init__(self) -> None:
        self.records: dict[bytes, object] = {}
        self.submitted: list[str] = []
        self.chain = type("FakeChain", (), {"state": None})()

    def submit(self, kind: str, _payload) -> None:
        self.submitted.append(kind)


class Record:
    def __init__(self, status: int, worker: bytes) -> None:
        self.status, self.worker = status, worker


async def test_a_job_that_expires_or_moves_on_is_cancelled_mid_decode_and_never_answered(monkeypatch):
    from inference.worker import Worker

    node = FakeNode()
    monkeypatch.setattr("node.duties.get_job", lambda _state, job_id: node.records.get(job_id))
    job_id = b"\x22" * 32
    spec = JobSpec.from_chat([("user", "Write a very long story about a dragon and a knight.")],
                             DEFAULT_MODEL_SHA256, 512)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            worker = await nursery.start(Worker(n_threads=1, declared_capacity=50).run)
            duties = Duties(worker, start_worker=False)
            duties.node = node
            duties.submit = node.submit
            duties.jobs[job_id] = spec
            duties.record_output = lambda *args: None
            node.records[job_id] = Record(JobStatus.ASSIGNED, node.address)
            served = trio.Event()

            async def serve() -> None:
                await duties.serve_job(job_id)
                served.set()

            nursery.start_soon(serve)
            while worker.statistics().tokens_served < 5:
                await trio.sleep(0.01)
            node.records[job_id] = Record(JobStatus.ASSIGNED, b"\x33" * 20)  # reassigned to someone else
            duties.cancel_moved_jobs(None)  # what every new head block runs
            await served.wait()  # at once; the decoding thread stops after the token it is on
            while worker.statistics().jobs_running:
                await trio.sleep(0.01)
            decoded = worker.statistics().tokens_served
            await trio.sleep(0.3)
            assert worker.statistics().tokens_served == decoded < 100  # the decoding thread stopped
            assert node.submitted == [] and duties.counters["jobs_cancelled"] == 1
            assert job_id not in duties.serving
            nursery.cancel_scope.cancel()


# --- the OpenAI front door ----------------------------------------------------------------------------------------


async def test_the_openai_api_answers_a_busy_network_with_503_network_busy(tmp_path, nursery):
    import httpx

    from economy import compute_busy_message
    from node.http import serve_http
    from tests.node.conftest_rpc import RPCTestNode

    class BusyGateway:
        def get_models(self):
            return [DEFAULT_MODEL_SHA256]

        async def submit_chat(self, messages, max_tokens, model_sha256=None):
            raise NetworkBusy(compute_busy_message(64), got=64, expected="< 64")

    node = RPCTestNode(tmp_path / "db")
    node.inference = BusyGateway()
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/chat/completions", json={
            "model": "default", "max_tokens": 512, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "network_busy" and error["type"] == "service_unavailable"
    assert error["message"].startswith("network busy: 64 jobs waiting for capacity; add an offering to prioritise")
    nursery.cancel_scope.cancel()
