"""The trio worker service on the real model."""
import pytest
import trio

from inference.exceptions import JobDeadlineExceeded, UnsupportedModel, WorkerNotRunning
from inference.jobs import JobSpec
from inference.worker import Worker

pytestmark = pytest.mark.model


@pytest.fixture
async def worker(model):
    async with trio.open_nursery() as nursery:
        service = Worker(model=model)
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


def make_job(model, text, max_tokens=16):
    return JobSpec.from_chat([{"role": "user", "content": text}], model.sha256, max_tokens)


async def test_capacity_is_measured_at_start(worker):
    stats = worker.statistics()
    assert stats.capacity_tokens_per_second > 0
    assert stats.busy_seconds > 0


async def test_declared_capacity_replaces_the_probe(model):
    with pytest.raises(ValueError):
        Worker(model=model, declared_capacity=0)
    async with trio.open_nursery() as nursery:
        service = await nursery.start(Worker(model=model, declared_capacity=42).run)
        stats = service.statistics()
        assert stats.capacity_tokens_per_second == 42
        assert stats.busy_seconds == 0  # no probe job ran
        nursery.cancel_scope.cancel()


async def test_stream_yields_the_greedy_tokens(worker, model, honest_jobs, honest_outputs):
    pieces = []
    async with worker.generate(honest_jobs[0]) as stream:
        async for piece in stream:
            pieces.append(piece)
    assert tuple(p.token for p in pieces) == honest_outputs[0]
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert "".join(p.text for p in pieces) == stream.output.text
    assert stream.output.tokens == honest_outputs[0]
    output = await worker.complete(honest_jobs[1])
    assert output.tokens == honest_outputs[1]
    assert output.finish_reason in ("stop", "length")
    stats = worker.statistics()
    assert stats.jobs_served >= 2 and stats.tokens_served >= len(pieces) + len(output.tokens)


async def test_concurrent_jobs_queue_on_the_instance(worker, honest_jobs, honest_outputs):
    results = {}
    depths = []

    async def run(i):
        results[i] = await worker.complete(honest_jobs[i])

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(run, i)
        await trio.sleep(0.05)
        depths.append(worker.statistics().queue_depth)
    assert max(depths) >= 1
    assert [results[i].tokens for i in range(3)] == list(honest_outputs[:3])
    assert worker.statistics().queue_depth == 0


async def test_leaving_the_stream_cancels_the_job(worker, model):
    job = make_job(model, "Write a long essay about rivers.", max_tokens=200)
    failed_before = worker.statistics().jobs_failed
    async with worker.generate(job) as stream:
        async for piece in stream:
            if piece.index == 2:
                break
    with trio.fail_after(30):
        while worker.statistics().jobs_running:
            await trio.sleep(0.01)
    stats = worker.statistics()
    assert stats.jobs_failed == failed_before + 1
    # The instance is free again and still correct.
    assert (await worker.complete(make_job(model, "Say hi.", 4))).tokens


async def test_deadline_stops_a_job_with_its_partial_output(worker, model):
    job = make_job(model, "Write a long essay about mountains.", max_tokens=400)
    with pytest.raises(JobDeadlineExceeded) as caught:
        await worker.complete(job, timeout=0.5)
    assert caught.value.tokens_done < 400
    if caught.value.partial is not None:
        assert len(caught.value.partial.tokens) == caught.value.tokens_done


async def test_cancelling_the_caller_cancels_the_job(worker, model):
    job = make_job(model, "Count slowly to one hundred.", max_tokens=300)
    with trio.move_on_after(0.3):
        await worker.complete(job)
    with trio.fail_after(30):
        while worker.statistics().jobs_running:
            await trio.sleep(0.01)
    assert worker.statistics().jobs_running == 0


async def test_unknown_model_is_refused(worker, model):
    job = JobSpec.from_chat([{"role": "user", "content": "hi"}], b"\x22" * 32, 4)
    with pytest.raises(UnsupportedModel):
        async with worker.generate(job):
            pass


async def test_verify_and_annotate_share_the_instance(worker, honest_jobs, honest_outputs):
    result = await worker.verify(honest_jobs[0], list(honest_outputs[0]))
    assert result.accepted and result.score_ppm == 1_000_000
    bad = await worker.verify(honest_jobs[0], [])
    assert not bad.accepted and bad.error
    annotation = await worker.annotate("This is wonderful, I love it!", ["positive", "negative"])
    assert annotation.label == "positive"


async def test_worker_must_be_running(model):
    with pytest.raises(WorkerNotRunning):
        await Worker(model=model).complete(make_job(model, "hi", 2))


async def test_decoding_never_waits_for_a_busy_trio_loop(worker, model):
    """The decoding thread hands tokens over without waiting: it keeps decoding while the loop is blocked."""
    import time

    job = make_job(model, "Write a long essay about rivers.", max_tokens=120)
    async with worker.generate(job) as stream:
        first = await stream.__anext__()
        served = worker.statistics().tokens_served
        time.sleep(0.6)  # blocks the trio loop, as a slow block import or RPC burst on a node would
        decoded_meanwhile = worker.statistics().tokens_served - served
        pieces = [first] + [piece async for piece in stream]
    assert decoded_meanwhile >= 3, decoded_meanwhile
    # Nothing was lost or reordered by the hand-off.
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert tuple(p.token for p in pieces) == stream.output.tokens


async def test_cancellation_stops_decoding_within_one_token(worker, model):
    job = make_job(model, "Write a long essay about forests.", max_tokens=300)
    async with worker.generate(job) as stream:
        async for piece in stream:
            if piece.index == 4:
                break
    served_at_cancel = worker.statistics().tokens_served  # the job's scope was cancelled on leaving
    with trio.fail_after(30):
        while worker.statistics().jobs_running:
            await trio.sleep(0.005)
    assert worker.statistics().tokens_served - served_at_cancel <= 1
