"""Peer management: slow peers, reconnection, limits, crossed dials, requests on one connection."""

import pytest
import trio

from p2p import (
    P2PService,
    BadRequest,
    DisconnectReason,
    PeerDisconnected,
    PeerEventKind,
    RemoteRequestError,
    RequestTimeout,
    Topic,
    ValidationResult,
)
from p2p.messages import ErrorCode

from .helpers import make_config, make_key, raw_session, start_service, wait_until


async def test_slow_peer_is_dropped_not_waited_on(nursery):
    with trio.fail_after(30):
        a = await start_service(nursery, make_config(send_queue_size=8, write_timeout=2.0))
        b = await start_service(nursery, make_config())
        b_votes = b.subscribe(Topic.VOTES, lambda m: ValidationResult.ACCEPT)
        await b.connect(a.enode)
        got_by_b = []

        async def drain():
            async for message in b_votes:
                got_by_b.append(message.message_id)

        nursery.start_soon(drain)
        async with raw_session(a.enode.port) as slow:  # completes the hello, then never reads
            await wait_until(lambda: a.is_connected(slow.node_id))
            published = []
            n = 0
            while a.is_connected(slow.node_id):
                # Pace on the healthy peer only, so it never falls behind even on a busy machine.
                while a.get_peer(b.node_id).queued > 2:
                    await trio.sleep(0.001)
                published.append(
                    a.publish(Topic.VOTES, n.to_bytes(4, "big") + b"\x00" * (128 * 1024))
                )
                n += 1
            stats = a.statistics()
            assert stats.drops == 1 and a.is_connected(b.node_id)
            assert not a.is_banned(slow.node_id)  # slow is not malicious
        # The healthy peer got everything, including what was published while the slow one clogged.
        await wait_until(lambda: len(got_by_b) == len(published))
        assert got_by_b == published


async def test_reconnects_after_the_peer_restarts(nursery):
    with trio.fail_after(30):
        key = make_key()
        async with trio.open_nursery() as first_life:
            a = await start_service(first_life, make_config(key))
            port = a.enode.port
            b = P2PService(make_config(bootnodes=(str(a.enode),)))
            events = b.subscribe_peer_events()  # before b runs, so no event is missed
            await nursery.start(b.run)
            await wait_until(lambda: b.is_connected(a.node_id))
            first_life.cancel_scope.cancel()
        event = await events.receive()
        assert event.kind is PeerEventKind.CONNECTED
        event = await events.receive()
        assert (
            event.kind is PeerEventKind.DISCONNECTED and event.reason is DisconnectReason.SHUTDOWN
        )
        await trio.sleep(0.3)  # b backs off and redials a closed port meanwhile

        async with trio.open_nursery() as again:
            restarted = await start_service(again, make_config(key, listen_port=port))
            event = await events.receive()
            assert event.kind is PeerEventKind.CONNECTED and event.node_id == restarted.node_id
            assert b.is_connected(restarted.node_id)
            assert b.statistics().dials >= 2  # b dialled again: a restarted node never dials out
            again.cancel_scope.cancel()


async def test_max_peers_refuses_extra_connections(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config(max_peers=1))
        b = await start_service(nursery, make_config())
        c = await start_service(nursery, make_config())
        await b.connect(a.enode)
        with pytest.raises(PeerDisconnected) as caught:
            await c.connect(a.enode)
        assert caught.value.reason is DisconnectReason.TOO_MANY_PEERS
        assert a.statistics().peers == 1


async def test_crossed_dials_leave_one_connection(nursery):
    with trio.fail_after(15):
        a_key, b_key = make_key(), make_key()
        a = await start_service(nursery, make_config(a_key))
        b = await start_service(nursery, make_config(b_key))
        # Both dial each other at the same moment.
        async with trio.open_nursery() as dials:
            for dialer, target in ((a, b), (b, a)):
                dials.start_soon(connect_ignoring_duplicates, dialer, target)
        await wait_until(lambda: a.is_connected(b.node_id) and b.is_connected(a.node_id))
        await trio.sleep(0.2)
        assert a.statistics().peers == 1 and b.statistics().peers == 1
        # Both ends kept the same connection.
        assert a.get_peer(b.node_id).inbound != b.get_peer(a.node_id).inbound
        assert (
            a.get_peer(b.node_id).channel.handshake_hash
            == b.get_peer(a.node_id).channel.handshake_hash
        )


async def connect_ignoring_duplicates(dialer, target):
    try:
        await dialer.connect(target.enode)
    except PeerDisconnected as exc:
        assert exc.reason is DisconnectReason.DUPLICATE
    except Exception as exc:  # the refused side of a crossed dial
        assert "DUPLICATE" in str(exc)


async def test_bootnode_kept_when_both_list_each_other(nursery):
    with trio.fail_after(15):
        a_key, b_key = make_key(), make_key()
        a = await start_service(nursery, make_config(a_key, listen_port=0))
        b = await start_service(nursery, make_config(b_key, bootnodes=(str(a.enode),)))
        await wait_until(lambda: a.is_connected(b.node_id))
        c = await start_service(nursery, make_config(bootnodes=(str(a.enode), str(b.enode))))
        await wait_until(lambda: c.statistics().peers == 2)
        await trio.sleep(0.3)
        assert [s.statistics().peers for s in (a, b, c)] == [2, 2, 2]


async def test_many_concurrent_requests_share_one_connection(nursery):
    with trio.fail_after(15):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())

        async def echo(node_id, params):
            await trio.sleep(0.01 * (params % 5))  # answers come back out of order
            return [params, node_id]

        async def picky(node_id, params):
            if not isinstance(params, int):
                raise BadRequest("params must be an int", got=params, expected="int")
            return params

        async def stuck(node_id, params):
            await trio.sleep_forever()

        a.register_handler("echo", echo)
        a.register_handler("picky", picky)
        a.register_handler("stuck", stuck)
        await b.connect(a.enode)
        results = {}

        async def call(n):
            results[n] = await b.request(a.node_id, "echo", n)

        async with trio.open_nursery() as calls:
            for n in range(100):
                calls.start_soon(call, n)
        assert results == {n: [n, b.node_id] for n in range(100)}
        assert a.statistics().requests_in == 100 and b.statistics().requests_out == 100

        with pytest.raises(RemoteRequestError) as caught:
            await b.request(a.node_id, "no such method", None)
        assert caught.value.code == ErrorCode.METHOD_NOT_FOUND
        with pytest.raises(RemoteRequestError) as caught:
            await b.request(a.node_id, "picky", "text")
        assert caught.value.code == ErrorCode.BAD_REQUEST
        assert a.scores.get_score(b.node_id) < 0
        with pytest.raises(RequestTimeout):
            await b.request(a.node_id, "stuck", None, timeout=0.2)
        # The connection survives all of that.
        assert await b.request(a.node_id, "echo", 7) == [7, b.node_id]


async def test_pending_request_fails_when_peer_goes_away(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())

        async def stuck(node_id, params):
            await trio.sleep_forever()

        a.register_handler("stuck", stuck)
        await b.connect(a.enode)

        async def disconnect_soon():
            await trio.sleep(0.1)
            a.disconnect(b.node_id)

        nursery.start_soon(disconnect_soon)
        with pytest.raises(PeerDisconnected) as caught:
            await b.request(a.node_id, "stuck", None, timeout=5)
        assert caught.value.reason is DisconnectReason.REQUESTED
        # The stuck handler does not keep the closed connection alive on a's side.
        await wait_until(lambda: not a.is_connected(b.node_id), timeout=3)


async def test_statistics_count_traffic(nursery):
    with trio.fail_after(10):
        a = await start_service(nursery, make_config())
        b = await start_service(nursery, make_config())
        received = b.subscribe(Topic.JOB_RESULTS, lambda m: ValidationResult.ACCEPT)
        await b.connect(a.enode)
        for n in range(10):
            a.publish(Topic.JOB_RESULTS, bytes([n]) * 100)
        for _ in range(10):
            await received.receive()
        sa, sb = a.statistics(), b.statistics()
        assert sa.messages_out >= 10 and sb.messages_in >= 10
        assert sa.bytes_out > 1000 and sb.bytes_in == sa.bytes_out
        [info] = a.get_peers()
        assert info.messages_out == sa.messages_out and info.bytes_out == sa.bytes_out


async def test_idle_connections_are_kept_alive_and_silent_ones_dropped(nursery):
    with trio.fail_after(15):
        fast = dict(ping_interval=0.2, idle_timeout=1.0)
        a = await start_service(nursery, make_config(**fast))
        b = await start_service(nursery, make_config(**fast))
        await b.connect(a.enode)
        async with raw_session(a.enode.port) as silent:  # never answers a PING
            await wait_until(lambda: a.is_connected(silent.node_id))
            await trio.sleep(2.0)
            # The idle but alive pair pinged each other and stayed up.
            assert a.is_connected(b.node_id) and b.is_connected(a.node_id)
            assert not a.is_connected(silent.node_id)
            messages = await silent.receive_until_closed()
            assert any(msg_type.name == "PING" for msg_type, _ in messages)
            assert (
                messages[-1][0].name == "DISCONNECT"
                and messages[-1][1][0] == DisconnectReason.TIMEOUT
            )


async def test_stopping_the_service_ends_subscriber_loops(nursery):
    with trio.fail_after(10):
        async with trio.open_nursery() as inner:
            a = await start_service(inner, make_config())
            votes = a.subscribe(Topic.VOTES, lambda m: ValidationResult.ACCEPT)
            events = a.subscribe_peer_events()
            inner.cancel_scope.cancel()
        assert [message async for message in votes] == []
        assert [event async for event in events] == []


async def test_redials_back_off_exponentially(nursery):
    with trio.fail_after(10):
        # A port nobody listens on: bind one, note it, close it.
        listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
        port = listener.socket.getsockname()[1]
        await listener.aclose()
        ghost = f"{make_key().public_key.to_bytes().hex()}@127.0.0.1:{port}"
        started = trio.current_time()
        b = await start_service(
            nursery, make_config(bootnodes=(ghost,), reconnect_base=0.05, reconnect_max=0.4)
        )
        await wait_until(lambda: b.statistics().dials >= 6)
        # Five sleeps of at least 0.025, 0.05, 0.1, 0.2 and 0.2 s come before the sixth dial.
        assert trio.current_time() - started >= 0.575
        before = b.statistics().dials
        await trio.sleep(1.0)
        # At the cap, a dial every 0.2-0.4 s: a handful, not hundreds.
        assert b.statistics().dials - before <= 6
        # Every dial fails (nobody listens); the latest one may still be in flight, so wait for it.
        await wait_until(lambda: b.statistics().dial_failures == b.statistics().dials)
        assert b.statistics().peers == 0


async def test_devnet_style_full_mesh_of_bootnodes(nursery):
    """Four nodes that all list each other, as `make devnet` wires them: one link per pair."""
    with trio.fail_after(20):
        ports = []
        for _ in range(4):
            listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
            ports.append(listener.socket.getsockname()[1])
            await listener.aclose()
        keys_ = [make_key() for _ in range(4)]
        enodes = [f"{k.public_key.to_bytes().hex()}@127.0.0.1:{p}" for k, p in zip(keys_, ports)]
        nodes = []
        for index, (key, port) in enumerate(zip(keys_, ports)):
            others = tuple(e for i, e in enumerate(enodes) if i != index)
            nodes.append(
                await start_service(nursery, make_config(key, listen_port=port, bootnodes=others))
            )
        await wait_until(lambda: all(node.statistics().peers == 3 for node in nodes))
        await trio.sleep(0.5)  # let crossed dials settle
        assert [node.statistics().peers for node in nodes] == [3, 3, 3, 3]
        for a in nodes:
            for b in nodes:
                if a is not b:
                    # Both ends of each pair kept the same connection.
                    assert (
                        a.get_peer(b.node_id).channel.handshake_hash
                        == b.get_peer(a.node_id).channel.handshake_hash
                    )
