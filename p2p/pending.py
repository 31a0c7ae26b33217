"""Our side of the requests in flight on one connection: ids, answers and streamed items.

`PendingRequests` allocates request ids, matches RESPONSE, ERROR and STREAM
frames to what we asked, and fails whatever is left when the connection ends.
`ResponseStream` is what a caller of `open_stream` iterates.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import trio

from .abc import PeerAPI
from .exceptions import (
    DisconnectReason,
    InvalidMessage,
    PeerDisconnected,
    RemoteRequestError,
    RequestTimeout,
)
from .messages import MAX_REQUEST_ID, MsgType, encode_message

# Ids of streams we cancelled, whose items still in flight are dropped quietly.
CANCELLED_STREAMS_KEPT = 256


@dataclass
class PendingRequest:
    method: str
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: Exception | None = None
    items: trio.MemorySendChannel[Any] | None = None  # set for a streamed response

    def finish(self, *, result: Any = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()
        if self.items is not None:
            self.items.close()  # the reader sees the end after the buffered items


class ResponseStream:
    """The requester's side of one streamed response: `async for item in stream`, then `result`.

    Iteration ends when the server ends the stream; an ERROR, a disconnect, a
    violation of the stream's bounds or `item_timeout` without an item raise
    the typed p2p error. `aclose()` (or leaving early) cancels it at the server.
    """

    def __init__(self, requests: "PendingRequests", request_id: int, pending: PendingRequest,
                 receive: trio.MemoryReceiveChannel[Any], item_timeout: float | None) -> None:
        self._requests = requests
        self._request_id = request_id
        self._pending = pending
        self._receive = receive
        self._item_timeout = item_timeout

    def __aiter__(self) -> "ResponseStream":
        return self

    async def __anext__(self) -> Any:
        try:
            if self._item_timeout is None:
                return await self._receive.receive()
            with trio.fail_after(self._item_timeout):
                return await self._receive.receive()
        except trio.EndOfChannel:
            if self._pending.error is not None:
                raise self._pending.error from None
            raise StopAsyncIteration from None
        except trio.TooSlowError:
            raise RequestTimeout(self._pending.method, self._item_timeout) from None

    @property
    def result(self) -> Any:
        """What the final RESPONSE carried (None until the stream has ended)."""
        return self._pending.result

    @property
    def is_done(self) -> bool:
        return self._pending.done.is_set()

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; if the server has not ended the stream, cancel it there."""
        self._requests.close_stream(self._request_id, self._pending)
        self._receive.close()


class PendingRequests:
    """The requests and streams we have in flight to one peer, by request id."""

    def __init__(self, peer: PeerAPI) -> None:
        self._peer = peer
        self._pending: dict[int, PendingRequest] = {}
        self._next_request_id = 0
        self._cancelled_streams: OrderedDict[int, None] = OrderedDict()

    async def request(self, method: str, params: Any, timeout: float) -> Any:
        request_id = self._allocate_request_id()
        pending = PendingRequest(method)
        self._pending[request_id] = pending
        try:
            if not self._peer.try_send(encode_message(MsgType.REQUEST, request_id, method, params)):
                raise PeerDisconnected(self._get_send_failure_reason(), "could not queue request")
            with trio.move_on_after(timeout):
                await pending.done.wait()
        finally:
            del self._pending[request_id]
        if not pending.done.is_set():
            raise RequestTimeout(method, timeout)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def open_stream(
        self, method: str, params: Any, *, max_items: int, item_timeout: float | None = None
    ) -> ResponseStream:
        """Send a stream request; its items arrive on the returned ResponseStream."""
        request_id = self._allocate_request_id()
        send, receive = trio.open_memory_channel[Any](max_items)
        pending = PendingRequest(method, items=send)
        self._pending[request_id] = pending
        if not self._peer.try_send(encode_message(MsgType.REQUEST, request_id, method, params)):
            del self._pending[request_id]
            raise PeerDisconnected(
                self._get_send_failure_reason(), "could not queue stream request"
            )
        return ResponseStream(self, request_id, pending, receive, item_timeout)

    def close_stream(
        self, request_id: int, pending: PendingRequest, error: Exception | None = None
    ) -> None:
        """End a stream on our side; if the server had not ended it, tell it to stop."""
        if pending.done.is_set():
            return
        pending.finish(error=error)
        if self._pending.get(request_id) is pending:
            del self._pending[request_id]
        self._cancelled_streams[request_id] = None
        while len(self._cancelled_streams) > CANCELLED_STREAMS_KEPT:
            self._cancelled_streams.popitem(last=False)
        self._peer.try_send(encode_message(MsgType.CANCEL, request_id))

    def on_response(
        self, request_id: int, *, result: Any = None, error: tuple[int, str] | None = None
    ) -> None:
        pending = self._pending.get(request_id)
        if pending is None or pending.done.is_set():
            return  # late answer to a request that timed out; not the peer's fault
        if pending.items is not None:
            # The stream has ended: any later item under this id is a fault.
            del self._pending[request_id]
        if error is not None:
            pending.finish(error=RemoteRequestError(pending.method, error[0], error[1][:200]))
        else:
            pending.finish(result=result)

    def on_stream_item(self, request_id: int, item: Any) -> None:
        """Buffer one item of a stream we opened; raises InvalidMessage for a peer's fault."""
        pending = self._pending.get(request_id)
        if pending is None:
            if request_id in self._cancelled_streams:
                return  # sent before our CANCEL reached the server; not the peer's fault
            raise InvalidMessage(
                "stream item for no open stream",
                got=request_id,
                expected="the id of an open stream",
            )
        if pending.items is None:
            raise InvalidMessage(
                f"stream item for the plain request {pending.method!r}", got=request_id,
                expected="the id of a stream request",
            )
        try:
            pending.items.send_nowait(item)
        except trio.WouldBlock:
            limit = pending.items.statistics().max_buffer_size
            fault = InvalidMessage(
                f"stream {pending.method!r} overflowed its buffer", got=f"> {limit} unread items",
                expected=f"<= {limit}",
            )
            self.close_stream(request_id, pending, error=fault)
            raise fault from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # our reader is gone without closing the stream; nothing to deliver to

    def fail_all(self, reason: DisconnectReason, detail: str) -> None:
        """The connection is gone: every request still waiting fails with PeerDisconnected."""
        for pending in self._pending.values():
            if not pending.done.is_set():
                pending.finish(error=PeerDisconnected(reason, detail))

    def _get_send_failure_reason(self) -> DisconnectReason:
        # Not queued while still connected means the outbox was full: the peer was just dropped.
        reason = self._peer.disconnect_reason
        return DisconnectReason.SLOW if reason is None else reason

    def _allocate_request_id(self) -> int:
        while True:
            self._next_request_id = (self._next_request_id + 1) % (MAX_REQUEST_ID + 1)
            if self._next_request_id not in self._pending:
                self._cancelled_streams.pop(self._next_request_id, None)
                return self._next_request_id
