"""Streamed responses: items pushed in order, cancellation, disconnects, bounds, junk STREAM frames."""

import pytest
import trio

from p2p import BadRequest, DisconnectReason, PeerDisconnected, RemoteRequestError, RequestTimeout
from p2p.exceptions import PENALTY_INVALID_MESSAGE
from p2p.messages import ErrorCode, MsgType

from .helpers import make_config, raw_session, start_service, wait_until
from .test_faults import assert_still_serving


async def count_to(node_id, params):
    if not isinstance(params, int) or params < 0:
        raise BadRequest("params must be a count", got=params, expected="int >= 0")
    for n in range(params):
        yield [n, node_id]


async def test_items_arrive_in_order_then_the_stream_ends(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        a.register_stream_handler("count", count_to)
        await b.connect(a.enode)

        stream = await b.open_stream(a.node_id, "count", 500, max_items=500)
        items = [item async for item in stream]
        await stream.aclose()
        assert items == [[n, b.node_id] for n in range(500)]
        assert stream.is_done and stream.result is None

        # Many streams share the connection; an empty one just ends.
        async def one(n, results):
            stream = await b.open_stream(a.node_id, "count", n, max_items=n + 1)
            results[n] = [item[0] async for item in stream]

        results = {}
        async with trio.open_nursery() as streams:
            for n in range(10):
                streams.start_soon(one, n, results)
        assert results == {n: list(range(n)) for n in range(10)}
        assert a.scores.get_score(b.node_id) == 0 and b.scores.get_score(a.node_id) == 0


async def test_bad_params_and_unknown_methods_end_the_stream_with_an_error(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        a.register_stream_handler("count", count_to)
        await b.connect(a.enode)
        stream = await b.open_stream(a.node_id, "count", "ten", max_items=10)
        with pytest.raises(RemoteRequestError) as caught:
            [item async for item in stream]
        assert caught.value.code == ErrorCode.BAD_REQUEST
        assert a.scores.get_score(b.node_id) < 0  # the caller of a bad request is scored down
        stream = await b.open_stream(a.node_id, "no such stream", None, max_items=10)
        with pytest.raises(RemoteRequestError) as caught:
            [item async for item in stream]
        assert caught.value.code == ErrorCode.METHOD_NOT_FOUND


async def test_leaving_a_stream_cancels_the_handler_at_the_server(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        produced, closed = [], trio.Event()

        async def forever(node_id, params):
            try:
                n = 0
                while True:
                    produced.append(n)
                    yield n
                    n += 1
                    await trio.sleep(0.01)
            finally:
                closed.set()

        a.register_stream_handler("forever", forever)
        await b.connect(a.enode)
        stream = await b.open_stream(a.node_id, "forever", None, max_items=1000)
        async for item in stream:
            if item == 5:
                break
        await stream.aclose()
        await closed.wait()  # CANCEL reached the server and closed the handler
        stopped_at = len(produced)
        await trio.sleep(0.1)
        assert len(produced) == stopped_at
        # Items that crossed the CANCEL are dropped quietly: no fault is pinned on the server.
        assert b.scores.get_score(a.node_id) == 0 and b.statistics().faults == 0


async def test_a_server_that_disconnects_ends_the_stream_with_a_clear_error(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        closed = trio.Event()

        async def slow(node_id, params):
            try:
                for n in range(1000):
                    yield n
                    await trio.sleep(0.02)
            finally:
                closed.set()

        a.register_stream_handler("slow", slow)
        await b.connect(a.enode)
        stream = await b.open_stream(a.node_id, "slow", None, max_items=1000)
        received = []
        with pytest.raises(PeerDisconnected) as caught:
            async for item in stream:
                received.append(item)
                if item == 3:
                    a.disconnect(b.node_id)
        assert caught.value.reason is DisconnectReason.REQUESTED
        assert received[:4] == [0, 1, 2, 3]
        await closed.wait()  # the server stopped producing too


async def test_item_timeout_and_stream_limit(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config(max_concurrent_streams=2))
        b = await start_service(nursery, make_config())

        async def silent(node_id, params):
            await trio.sleep_forever()
            yield None  # pragma: no cover

        a.register_stream_handler("silent", silent)
        a.register_stream_handler("count", count_to)
        await b.connect(a.enode)
        stream = await b.open_stream(a.node_id, "silent", None, max_items=1, item_timeout=0.1)
        with pytest.raises(RequestTimeout):
            await stream.__anext__()
        await stream.aclose()
        await wait_until(lambda: not a.get_peer(b.node_id)._serving_streams)

        held = [await b.open_stream(a.node_id, "silent", None, max_items=1) for _ in range(2)]
        await wait_until(lambda: len(a.get_peer(b.node_id)._serving_streams) == 2)
        refused = await b.open_stream(a.node_id, "count", 3, max_items=3)
        with pytest.raises(RemoteRequestError) as caught:
            await refused.__anext__()
        assert caught.value.code == ErrorCode.UNAVAILABLE  # refused, never queued
        for stream in held:
            await stream.aclose()
        await wait_until(lambda: not a.get_peer(b.node_id)._serving_streams)
        stream = await b.open_stream(a.node_id, "count", 3, max_items=3)
        assert [item[0] async for item in stream] == [0, 1, 2]
        assert a.scores.get_score(b.node_id) == 0


async def test_junk_stream_frames_are_faults_and_the_node_keeps_working(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config())
        async with raw_session(a.enode.port) as raw:
            await wait_until(lambda: a.is_connected(raw.node_id))
            # An item for a stream nobody opened, and a CANCEL for nothing (harmless, ignored).
            await raw.send(MsgType.STREAM, 12345, [1, 2, 3])
            await raw.send(MsgType.CANCEL, 777)
            await wait_until(lambda: a.statistics().faults == 1)
            assert a.scores.get_score(raw.node_id) == -PENALTY_INVALID_MESSAGE

            # `a` opens a stream to the raw peer, which answers with more items than allowed.
            stream = await a.open_stream(raw.node_id, "anything", None, max_items=4)
            msg_type, (request_id, method, _params) = await raw.receive()
            assert msg_type is MsgType.REQUEST and method == "anything"
            for n in range(6):
                await raw.send(MsgType.STREAM, request_id, n)
            with pytest.raises(Exception) as caught:
                [item async for item in stream]
            assert "overflowed" in str(caught.value)
            # We told the raw peer to stop, and penalised it once more.
            msg_type, fields = await raw.receive()
            assert (msg_type, fields) == (MsgType.CANCEL, [request_id])
            await wait_until(lambda: a.scores.get_score(raw.node_id) == -2 * PENALTY_INVALID_MESSAGE)
            # An item after the stream's end is a fault too; the peer is banned by now.
            await raw.send(MsgType.RESPONSE, request_id, None)
            await raw.send(MsgType.STREAM, 4242, None)
            await raw.send(MsgType.STREAM, 4243, None)
            await wait_until(lambda: a.is_banned(raw.node_id))
        await assert_still_serving(nursery, a)
