"""The pushed chat stream between a gateway and its workers, on real in-process nodes and the default model.

Three validators run worker duties over ONE loaded model; the fourth is the
requester (its gateway signs, routes and streams). A fifth, non-validator node
plays a worker that answers `chat_stream` with junk.
"""
from __future__ import annotations

import httpx
import pytest
import trio

from economy import get_job, get_worker_record
from inference.jobs import JobSpec
from inference.worker import Worker
from node.duties import METHOD_CHAT_STREAM, Duties, make_chat_item
from node.exceptions import GatewayError, WorkerUnreachable
from node.gateway import (
    PENALTY_BAD_STREAM,
    InvalidStreamItem,
    WorkerFailed,
    WorkerRefused,
    get_peer_address,
)
from tests.node.nodekit import (
    VALIDATOR_KEYS,
    make_node,
    make_test_genesis,
    run_stoppable,
    start_node,
    wait_for_peers,
)

pytestmark = pytest.mark.model

LONG_PROMPT = [("user", "Write a long story about a lighthouse keeper and the sea.")]


async def wait_until(predicate, timeout: float = 30.0, poll: float = 0.02):
    with trio.fail_after(timeout):
        while not (result := predicate()):
            await trio.sleep(poll)
        return result


async def start_network(nursery, genesis, tmp_path, worker, *, http: bool = False, serve_jobs: bool = True):
    """Three duty nodes on the shared worker, a requester, each in its own stoppable scope."""
    nodes, scopes = [], []
    for index, key in enumerate(VALIDATOR_KEYS):
        duties = Duties(worker, start_worker=False, serve_jobs=serve_jobs) if index < 3 else None
        node = make_node(genesis, tmp_path / f"n{index}", key, [str(n.p2p.enode) for n in nodes], duties=duties,
                         block_interval=0.2, http=("127.0.0.1", 0) if http and index == 3 else None)
        scopes.append(await nursery.start(run_stoppable, node))
        nodes.append(node)
    await wait_for_peers(nodes, 3)
    requester = nodes[3]
    await wait_until(lambda: all(get_worker_record(requester.chain.state, n.address) for n in nodes[:3]))
    return nodes, scopes


async def with_shared_worker(test) -> None:
    """Run `test(worker)` with one model shared by the duty nodes; the model outlives them."""
    async with trio.open_nursery() as outer:
        worker_scope = trio.CancelScope(shield=True)
        worker = await outer.start(Duties(Worker()).run_worker, worker_scope)
        try:
            await test(worker)
        finally:
            worker_scope.cancel()


async def test_tokens_are_pushed_in_order_and_junk_streams_are_rejected(tmp_path):
    genesis = make_test_genesis()

    async def test(worker):
        async with trio.open_nursery() as nursery:
            nodes, _scopes = await start_network(nursery, genesis, tmp_path, worker)
            requester = nodes[3]
            messages = [("user", "Name three fruits.")]

            # Over p2p: the tokens the worker decoded, in order, each chunk as it came.
            job = await requester.inference.submit_chat(messages, max_tokens=24)
            chunks = [chunk async for chunk in job.chunks]
            expected = await worker.complete(JobSpec.from_chat(messages, worker.model_sha256, 24))
            assert tuple(t for c in chunks for t in c.token_ids) == expected.tokens
            assert "".join(c.text for c in chunks) == expected.text
            assert len(chunks) > 1
            # The last chunk carries the worker's own end state and its count of the rendered prompt.
            assert [c.finish_reason for c in chunks if c.finish_reason] == [expected.finish_reason]
            assert chunks[-1].prompt_tokens == expected.prompt_tokens == len(worker.model.tokenize_chat(messages))

            # A worker that emits end-of-generation exactly at max_tokens stopped by itself: "stop", not "length".
            short = [("user", "Answer with one word: is the sky blue?")]  # greedy: 7 tokens, the last one EOS
            full = await worker.complete(JobSpec.from_chat(short, worker.model_sha256, 64))
            assert full.finish_reason == "stop"
            for max_tokens, reason in ((len(full.tokens), "stop"), (len(full.tokens) - 1, "length")):
                job = await requester.inference.submit_chat(short, max_tokens=max_tokens)
                chunks = [chunk async for chunk in job.chunks]
                assert len([t for c in chunks for t in c.token_ids]) == max_tokens
                assert chunks[-1].finish_reason == reason

            # In-process (the worker is this node): the duties' generator, read directly.
            duty_node = nodes[0]
            spec = JobSpec.from_chat(messages, worker.model_sha256, 24)
            raw, job_id = requester.inference.sign_request(spec)  # signed, never submitted
            stream = await duty_node.inference.open_stream(duty_node.address, raw, job_id, 24)
            assert stream.peer_id is None
            await stream.wait_accepted()
            local = [chunk async for chunk in stream]
            assert tuple(t for c in local for t in c.token_ids) == expected.tokens

            # A peer that answers chat_stream with junk: each stream fails with a typed error, the peer
            # is scored down (and banned at the threshold), and the gateway keeps serving.
            junk_node = make_node(genesis, tmp_path / "junk", None, [str(requester.p2p.enode)])
            await start_node(nursery, junk_node)
            await wait_until(lambda: requester.p2p.is_connected(junk_node.p2p.node_id))
            accepted = make_chat_item([], [])

            # A wrong guess (loads moved between the gateway's prediction and the block, here: a peer that is no
            # registered worker at all): the worker the chain assigned serves the client, the guessed one is stopped.
            guessed = []

            async def guessed_stream(node_id, params):
                guessed.append("started")
                try:
                    yield accepted
                    await trio.sleep_forever()
                finally:
                    guessed.append("closed")

            junk_node.p2p.register_stream_handler(METHOD_CHAT_STREAM, guessed_stream)
            gateway = requester.inference
            switched = gateway.counters["worker_switched"]  # (a true guess can also miss, now and then)
            gateway.route_job = lambda job_id, raw: get_peer_address(junk_node.p2p.node_id)
            try:
                job = await gateway.submit_chat(messages, max_tokens=24)
            finally:
                del gateway.route_job  # the class's own again
            chunks = [chunk async for chunk in job.chunks]
            assert tuple(t for c in chunks for t in c.token_ids) == expected.tokens
            assert job.worker in {n.address for n in nodes[:3]}
            assert gateway.counters["worker_switched"] == switched + 1
            assert get_job(requester.chain.state, job.job_id).worker == job.worker
            await wait_until(lambda: guessed == ["started", "closed"], timeout=5)
            gateway.route_job = lambda job_id, raw: b"\x01" * 20  # a guess no peer answers for: only the guess fails
            try:
                job = await gateway.submit_chat(messages, max_tokens=24)
            finally:
                del gateway.route_job
            assert tuple(t for c in [chunk async for chunk in job.chunks] for t in c.token_ids) == expected.tokens
            assert job.worker in {n.address for n in nodes[:3]}
            assert gateway.counters["worker_switched"] == switched + 2

            # Each stream the peer serves plays the next script: the items it sends, then silence.
            scripts = [
                [make_chat_item([], [], done=True, error="refused " + "x" * 60_000)],  # a refusal, however long
                [accepted, make_chat_item([], [], done=True, error="failed " + "y" * 60_000)],  # a failure
                [accepted, ["not", "a", "chat", "item"]],
                [accepted, make_chat_item(list(range(30)), ["x"] * 30)],  # more tokens than max_tokens
                [accepted, make_chat_item([], [], done=True)],  # finished without a reason
                [accepted, make_chat_item([], [], done=True, finish_reason="stop")],  # no prompt token count
            ]

            async def junk_stream(node_id, params):
                for item in scripts.pop(0):
                    yield item
                await trio.sleep_forever()  # never ends by itself: the gateway must cancel it

            junk_node.p2p.register_stream_handler(METHOD_CHAT_STREAM, junk_stream)
            junk_address = get_peer_address(junk_node.p2p.node_id)

            # A worker's error text reaches API clients: however long (p2p allows 64 KiB), it is cut short;
            # an error said in the stream's format costs the worker nothing.
            stream = await requester.inference.open_stream(junk_address, raw, job_id, 24)
            with pytest.raises(WorkerRefused) as caught:
                await stream.wait_accepted()
            await stream.aclose()
            assert len(str(caught.value)) < 400 and "(60008 chars)" in str(caught.value)
            stream = await requester.inference.open_stream(junk_address, raw, job_id, 24)
            await stream.wait_accepted()
            with pytest.raises(WorkerFailed) as caught:
                [chunk async for chunk in stream]
            assert len(str(caught.value)) < 400 and "(60007 chars)" in str(caught.value)
            await stream.aclose()
            assert requester.p2p.scores.get_score(junk_node.p2p.node_id) == 0

            for round_ in range(len(scripts)):
                stream = await requester.inference.open_stream(junk_address, raw, job_id, 24)
                await stream.wait_accepted()
                with pytest.raises(InvalidStreamItem):
                    [chunk async for chunk in stream]
                assert requester.p2p.scores.get_score(junk_node.p2p.node_id) in (
                    -PENALTY_BAD_STREAM * (round_ + 1), 0)  # 0: banned, and the slate wiped
            await wait_until(lambda: requester.p2p.is_banned(junk_node.p2p.node_id))
            with pytest.raises(WorkerUnreachable):  # no longer connected
                await requester.inference.open_stream(junk_address, raw, job_id, 24)

            again = await requester.inference.submit_chat([("user", "Say yes.")], max_tokens=4)
            assert [chunk async for chunk in again.chunks]
            nursery.cancel_scope.cancel()

    with trio.fail_after(150):
        await with_shared_worker(test)


async def test_a_client_leaving_stops_decoding_and_a_dying_worker_ends_the_stream(tmp_path):
    genesis = make_test_genesis()

    async def test(worker):
        async with trio.open_nursery() as nursery:
            # Workers do not serve assigned jobs here, so the only decoding is the streams'.
            nodes, scopes = await start_network(nursery, genesis, tmp_path, worker, http=True, serve_jobs=False)
            requester = nodes[3]

            # An HTTP client that leaves after a few chunks: the worker's decoding stops at once.
            failed_before = worker.statistics().jobs_failed
            body = {"model": "default", "messages": [{"role": m[0], "content": m[1]} for m in LONG_PROMPT],
                    "max_tokens": 400, "stream": True}
            async with httpx.AsyncClient(base_url=requester.http_url, timeout=30) as client:
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    assert response.status_code == 200
                    lines = 0
                    async for line in response.aiter_lines():
                        lines += line.startswith("data: {")
                        if lines == 4:
                            break
            await wait_until(lambda: worker.statistics().jobs_failed == failed_before + 1, timeout=10)
            assert worker.statistics().jobs_running == 0
            served = worker.statistics().tokens_served
            await trio.sleep(0.5)
            assert worker.statistics().tokens_served == served  # nothing decodes any more

            # A completion closed before its first chunk was read is cancelled at the worker too.
            job = await requester.inference.submit_chat(LONG_PROMPT, max_tokens=400)
            await job.chunks.aclose()
            await wait_until(lambda: worker.statistics().jobs_failed == failed_before + 2, timeout=10)
            assert worker.statistics().jobs_running == 0

            # The worker's node dies mid-stream: the stream ends with a clear error.
            job = await requester.inference.submit_chat(LONG_PROMPT, max_tokens=400)
            worker_index = [n.address for n in nodes].index(job.worker)
            received = []
            with pytest.raises(WorkerUnreachable) as caught:
                async for chunk in job.chunks:
                    received.append(chunk)
                    if len(received) == 3:
                        scopes[worker_index].cancel()
            assert isinstance(caught.value, GatewayError) and "disconnected" in str(caught.value)
            assert 3 <= len(received) < 400
            await wait_until(lambda: worker.statistics().jobs_running == 0, timeout=10)
            nursery.cancel_scope.cancel()

    with trio.fail_after(150):
        await with_shared_worker(test)
