"""One established, authenticated connection to a peer.

A peer runs two tasks: a reader that decodes and dispatches frames, and a
writer that drains a bounded outbox. Anyone may queue a frame with `try_send`,
which never waits: if the outbox is full the peer is too slow and is dropped.
Requests carry ids so many can be in flight on one connection; each inbound
request is served in its own task, at most `max_concurrent_requests` at a time.
The ids and answers of our own requests are kept by `pending.PendingRequests`.

A peer decides nothing about content: gossip, requests, faults and slowness go
to its host, which it knows only as a `PeerHostAPI` (`abc`), so this module
never depends on the service that runs it.

Streamed responses (`open_stream`): the server pushes STREAM items under the
request's id as it produces them, then ends with RESPONSE or ERROR. Each side
is bounded: the requester buffers at most `max_items` unread items (more is a
protocol violation: the stream fails and the peer is penalised), and a peer
may have at most `max_concurrent_streams` streams served at once (more are
refused, never queued, so a stream never holds up the reader). Leaving a stream
early sends CANCEL, which cancels the serving task; a disconnect ends every
open stream with `PeerDisconnected`. Items for a stream that was never opened,
already ended, or is not a stream are InvalidMessage faults; items still in
flight after our CANCEL are dropped quietly.
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from .abc import PeerAPI, PeerHostAPI
from .exceptions import DisconnectReason, FramingError, InvalidMessage, PeerDisconnected
from .hello import Hello
from .identity import Enode, compute_short_id
from .messages import ErrorCode, MsgType, decode_message, encode_message
from .pending import PendingRequest, PendingRequests, ResponseStream
from .secure import SecureChannel

logger = logging.getLogger("p2p.peer")

WRITE_BATCH_BYTES = 256 * 1024
CLOSE_GRACE = 1.0  # seconds to flush a DISCONNECT before closing the socket
# Reasons that happen in a healthy network (restarts, crossed dials, full tables).
ROUTINE_REASONS = frozenset(
    {
        DisconnectReason.REQUESTED,
        DisconnectReason.SHUTDOWN,
        DisconnectReason.DUPLICATE,
        DisconnectReason.TOO_MANY_PEERS,
        DisconnectReason.CONNECTION_LOST,
        DisconnectReason.SELF_CONNECTION,
    }
)


class Peer(PeerAPI):
    """One connection: reader, writer and keepalive tasks, its outbox, the streams it serves."""

    def __init__(
        self,
        host: PeerHostAPI,
        channel: SecureChannel,
        hello: Hello,
        *,
        inbound: bool,
        remote_host: str,
    ) -> None:
        config = host.config
        self.host = host
        self.channel = channel
        self.hello = hello
        self.node_id: bytes = hello.node_id
        self.short_id = compute_short_id(self.node_id)
        self.inbound = inbound
        self.enode = Enode(self.node_id, remote_host, hello.listen_port)
        self.connected_at = trio.current_time()
        self.messages_in = 0
        self.messages_out = 0
        self.disconnect_reason: DisconnectReason | None = None
        self.disconnect_detail = ""
        self.closed = trio.Event()
        self._max_frame_size = config.max_frame_size
        self._write_timeout = config.write_timeout
        self._send, self._outbox = trio.open_memory_channel[bytes](config.send_queue_size)
        self._requests = PendingRequests(self)
        self._request_slots = trio.Semaphore(config.max_concurrent_requests)
        self._max_streams = config.max_concurrent_streams
        self._serving_streams: dict[int, trio.CancelScope] = {}
        self._read_scope = trio.CancelScope()
        self._write_scope = trio.CancelScope()
        self._nursery: trio.Nursery | None = None
        self._writer_done = trio.Event()
        self._ping_interval = config.ping_interval
        self._idle_timeout = config.idle_timeout
        self.last_received = trio.current_time()

    def __repr__(self) -> str:
        direction = "in" if self.inbound else "out"
        return f"<Peer {self.short_id} {direction} {self.enode.host}:{self.enode.port}>"

    @property
    def queued(self) -> int:
        return self._send.statistics().current_buffer_used

    # --- lifecycle ---

    async def run(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._write_loop)
                nursery.start_soon(self._keepalive_loop)
                with self._read_scope:
                    await self._read_loop()
                # Give the writer a moment to flush our DISCONNECT, then stop request handlers too.
                with trio.move_on_after(CLOSE_GRACE):
                    await self._writer_done.wait()
                nursery.cancel_scope.cancel()
        finally:
            reason = self.disconnect_reason
            self._requests.fail_all(
                DisconnectReason.SHUTDOWN if reason is None else reason, self.disconnect_detail
            )
            with trio.CancelScope(shield=True):
                await self._close_channel()
            self.closed.set()

    def disconnect(self, reason: DisconnectReason, detail: str = "") -> None:
        """Start closing: queue a DISCONNECT (if there is room), stop reading, flush."""
        if self.disconnect_reason is not None:
            return
        self.disconnect_reason = reason
        self.disconnect_detail = detail
        level = logging.INFO if reason in ROUTINE_REASONS else logging.WARNING
        logger.log(
            level, "disconnect peer=%s reason=%s detail=%s", self.short_id, reason.name, detail
        )
        if reason is DisconnectReason.SLOW or reason is DisconnectReason.CONNECTION_LOST:
            self._write_scope.cancel()
        else:
            try:
                self._send.send_nowait(
                    encode_message(MsgType.DISCONNECT, int(reason), detail[:200])
                )
            except (trio.WouldBlock, trio.ClosedResourceError):
                self._write_scope.cancel()
            self._write_scope.deadline = min(
                self._write_scope.deadline, trio.current_time() + CLOSE_GRACE
            )
        self._send.close()
        self._read_scope.cancel()

    async def _close_channel(self) -> None:
        with trio.move_on_after(CLOSE_GRACE):
            if self.disconnect_reason is None and not self.channel.is_broken:
                # Cancelled from outside (service shutdown): say goodbye if the stream is intact.
                self.disconnect_reason = DisconnectReason.SHUTDOWN
                try:
                    await self.channel.send_frames(
                        [encode_message(MsgType.DISCONNECT, int(DisconnectReason.SHUTDOWN), "")]
                    )
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    pass
        await trio.aclose_forcefully(self.channel.stream)

    # --- sending ---

    def try_send(self, body: bytes) -> bool:
        """Queue one frame without waiting; a full queue drops the peer. False if not queued."""
        if self.disconnect_reason is not None:
            return False
        try:
            self._send.send_nowait(body)
        except trio.WouldBlock:
            self.host.on_slow_peer(self)
            return False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            return False
        return True

    async def _write_loop(self) -> None:
        try:
            await self._write_frames()
        finally:
            self._writer_done.set()

    async def _write_frames(self) -> None:
        with self._write_scope:
            try:
                async for body in self._outbox:
                    batch = self._collect_batch(body)
                    with trio.move_on_after(self._write_timeout) as timeout:
                        await self.channel.send_frames(batch)
                    if timeout.cancelled_caught:
                        self.host.on_slow_peer(self)
                        return
                    self.messages_out += len(batch)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.disconnect(
                    DisconnectReason.CONNECTION_LOST, f"write failed: {type(exc).__name__}"
                )

    def _collect_batch(self, first: bytes) -> list[bytes]:
        # Many small gossip frames in one encrypted write: fewer records and syscalls.
        batch, size = [first], len(first)
        while size < WRITE_BATCH_BYTES:
            try:
                body = self._outbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            batch.append(body)
            size += len(body)
        return batch

    async def _keepalive_loop(self) -> None:
        """Ping an idle connection; one silent for idle_timeout is dead (half-open TCP)."""
        nonce = 0
        while True:
            await trio.sleep(self._ping_interval)
            idle = trio.current_time() - self.last_received
            if idle >= self._idle_timeout:
                self.disconnect(DisconnectReason.TIMEOUT, f"nothing received for {idle:.1f} s")
                return
            if idle >= self._ping_interval:
                nonce += 1
                self.try_send(encode_message(MsgType.PING, nonce))

    # --- receiving ---

    async def _read_loop(self) -> None:
        try:
            while True:
                body = await self.channel.receive_frame(self._max_frame_size)
                self.messages_in += 1
                self.last_received = trio.current_time()
                await self._on_frame(body)
        except PeerDisconnected as exc:
            self.disconnect(exc.reason, exc.detail)
        except FramingError as exc:
            # The stream cannot be resynchronised after a bad frame.
            self.host.on_peer_fault(self.node_id, exc)
            self.disconnect(exc.reason, str(exc))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.disconnect(DisconnectReason.CONNECTION_LOST, f"read failed: {type(exc).__name__}")

    async def _on_frame(self, body: bytes) -> None:
        try:
            msg_type, fields = decode_message(body)
            await self._dispatch(msg_type, fields, body)
        except InvalidMessage as exc:
            self.host.on_peer_fault(self.node_id, exc)

    async def _dispatch(self, msg_type: MsgType, fields: list[Any], body: bytes) -> None:
        if msg_type is MsgType.GOSSIP:
            self.host.on_gossip(self, fields[0], fields[1], body)
        elif msg_type is MsgType.REQUEST and self.host.is_stream_method(fields[1]):
            self._start_stream(fields[0], fields[1], fields[2])
        elif msg_type is MsgType.REQUEST:
            await self._request_slots.acquire()
            assert self._nursery is not None
            self._nursery.start_soon(self._serve_request, fields[0], fields[1], fields[2])
        elif msg_type is MsgType.RESPONSE:
            self._requests.on_response(fields[0], result=fields[1])
        elif msg_type is MsgType.ERROR:
            self._requests.on_response(fields[0], error=(fields[1], fields[2]))
        elif msg_type is MsgType.STREAM:
            self._requests.on_stream_item(fields[0], fields[1])
        elif msg_type is MsgType.CANCEL:
            self._on_cancel(fields[0])
        elif msg_type is MsgType.PING:
            self.try_send(encode_message(MsgType.PONG, fields[0]))
        elif msg_type is MsgType.PONG:
            pass  # receiving it refreshed last_received
        elif msg_type is MsgType.DISCONNECT:
            raise PeerDisconnected(
                compute_remote_reason(fields[0]), f"by remote: {fields[1][:200]}"
            )
        else:
            raise InvalidMessage(
                "unexpected message after the handshake", got=msg_type.name, expected="not HELLO"
            )

    async def _serve_request(self, request_id: int, method: str, params: Any) -> None:
        try:
            reply = await self.host.serve_request(self, method, params)
            body = encode_message(reply[0], request_id, *reply[1:])
        finally:
            self._request_slots.release()
        self.try_send(body)

    # --- streams we serve ---

    def _start_stream(self, request_id: int, method: str, params: Any) -> None:
        if request_id in self._serving_streams:
            raise InvalidMessage(
                "request id already names a stream being served",
                got=request_id,
                expected="a new id",
            )
        if len(self._serving_streams) >= self._max_streams:
            # Refused, not queued: waiting here would stop this connection's reader.
            self.try_send(encode_message(MsgType.ERROR, request_id, int(ErrorCode.UNAVAILABLE),
                                         f"too many open streams (limit {self._max_streams})"))
            return
        scope = trio.CancelScope()
        self._serving_streams[request_id] = scope
        assert self._nursery is not None
        self._nursery.start_soon(self._serve_stream, request_id, method, params, scope)

    async def _serve_stream(
        self, request_id: int, method: str, params: Any, scope: trio.CancelScope
    ) -> None:
        reply = None
        try:
            with scope:
                reply = await self.host.serve_stream(self, request_id, method, params)
            if reply is not None:
                self.try_send(encode_message(reply[0], request_id, *reply[1:]))
        finally:
            del self._serving_streams[request_id]

    def _on_cancel(self, request_id: int) -> None:
        scope = self._serving_streams.get(request_id)
        if scope is not None:
            scope.cancel()
        # Otherwise the stream already ended and the CANCEL crossed our last frame.

    # --- our requests ---

    async def request(self, method: str, params: Any, timeout: float) -> Any:
        return await self._requests.request(method, params, timeout)

    async def open_stream(
        self, method: str, params: Any, *, max_items: int, item_timeout: float | None = None
    ) -> ResponseStream:
        """Send a stream request; its items arrive on the returned ResponseStream."""
        return self._requests.open_stream(
            method, params, max_items=max_items, item_timeout=item_timeout
        )

    def close_stream(
        self, request_id: int, pending: PendingRequest, error: Exception | None = None
    ) -> None:
        """End a stream on our side; if the server had not ended it, tell it to stop."""
        self._requests.close_stream(request_id, pending, error)


def compute_remote_reason(value: int) -> DisconnectReason:
    try:
        return DisconnectReason(value)
    except ValueError:
        return DisconnectReason.REMOTE
