"""Request routing: the handlers we serve by method name, and our requests and streams to peers.

A handler's outcome becomes one reply frame: its result, or a typed error.
`BadRequest` means the caller sent bad params and costs it score; any other
handler failure is ours and is answered without blaming the caller.
"""

from __future__ import annotations

import logging
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from .abc import PeerAPI
from .config import P2PConfig
from .exceptions import BadRequest, P2PError
from .messages import ErrorCode, MsgType, encode_message
from .pending import ResponseStream
from .peer_table import PeerTable

logger = logging.getLogger("p2p.request_router")

RequestHandler = Callable[[bytes, Any], Awaitable[Any]]
StreamHandler = Callable[[bytes, Any], AsyncIterator[Any]]


@dataclass
class RequestCounters:
    requests_in: int = 0
    requests_out: int = 0


class RequestRouter:
    def __init__(self, config: P2PConfig, peers: PeerTable) -> None:
        self.config = config
        self.counters = RequestCounters()
        self._peers = peers
        self._handlers: dict[str, RequestHandler] = {}
        self._stream_handlers: dict[str, StreamHandler] = {}

    # --- what we serve ---

    def register_handler(self, method: str, handler: RequestHandler) -> None:
        """Serve `method`: `await handler(peer_node_id, params)` returns a msgpack-able result.

        Raise `BadRequest` for invalid params: the caller gets an error and is scored down.
        """
        self._handlers[method] = handler

    def register_stream_handler(self, method: str, handler: StreamHandler) -> None:
        """Serve `method` as a streamed response: `handler(peer_node_id, params)` is an async
        iterator (typically an async generator) whose items are pushed to the requester as
        they come; the stream ends with the iterator.

        The handler is closed (`aclose`) when the requester cancels, disconnects or is too
        slow to take the items. Raise `BadRequest` for invalid params, as for requests.
        """
        self._stream_handlers[method] = handler

    def is_stream_method(self, method: str) -> bool:
        return method in self._stream_handlers

    async def serve_request(self, peer: PeerAPI, method: str, params: Any) -> tuple:
        """Run a handler for a peer; returns (RESPONSE, result) or (ERROR, code, message)."""
        self.counters.requests_in += 1
        handler = self._handlers.get(method)
        if handler is None:
            return (
                MsgType.ERROR,
                int(ErrorCode.METHOD_NOT_FOUND),
                f"unknown method {method[:64]!r}",
            )

        async def call() -> Any:
            result = await handler(peer.node_id, params)
            encode_message(MsgType.RESPONSE, 0, result)  # fail here, not in the peer's writer
            return result

        return await self._answer(peer, method, call)

    async def serve_stream(
        self, peer: PeerAPI, request_id: int, method: str, params: Any
    ) -> tuple | None:
        """Push a stream handler's items to a peer; returns the frame that ends the stream,
        or None when the peer can no longer take items (gone, or dropped as too slow)."""
        self.counters.requests_in += 1
        handler = self._stream_handlers[method]

        async def call() -> bool:
            async with aclosing(handler(peer.node_id, params)) as items:
                async for item in items:
                    if not peer.try_send(encode_message(MsgType.STREAM, request_id, item)):
                        return False
            return True

        reply = await self._answer(peer, method, call)
        if reply[0] is MsgType.RESPONSE:
            return (MsgType.RESPONSE, None) if reply[1] else None
        return reply

    async def _answer(
        self, peer: PeerAPI, method: str, call: Callable[[], Awaitable[Any]]
    ) -> tuple:
        """Run a handler call; map its outcome to (RESPONSE, result) or (ERROR, code, message)."""
        try:
            result = await call()
        except BadRequest as exc:
            self._peers.on_peer_fault(peer.node_id, exc)
            return (MsgType.ERROR, int(ErrorCode.BAD_REQUEST), str(exc)[:500])
        except P2PError as exc:
            return (MsgType.ERROR, int(ErrorCode.UNAVAILABLE), str(exc)[:500])
        except Exception:
            # A handler bug must not take the node down.
            logger.exception("request handler failed method=%s peer=%s", method, peer.short_id)
            return (MsgType.ERROR, int(ErrorCode.INTERNAL), "internal error")
        return (MsgType.RESPONSE, result)

    # --- what we ask ---

    async def request(
        self, node_id: bytes, method: str, params: Any, *, timeout: float | None = None
    ) -> Any:
        peer = self._peers.get_peer(node_id)
        self.counters.requests_out += 1
        return await peer.request(method, params, timeout or self.config.request_timeout)

    async def open_stream(
        self,
        node_id: bytes,
        method: str,
        params: Any,
        *,
        max_items: int,
        item_timeout: float | None = None,
    ) -> ResponseStream:
        """Ask a peer for a streamed response; iterate the returned stream, then `aclose()` it.

        At most `max_items` unread items are buffered: a peer that sends more is
        penalised and the stream fails. `item_timeout`: the longest wait for any
        one item (None: until the stream ends or the peer disconnects).
        """
        peer = self._peers.get_peer(node_id)
        self.counters.requests_out += 1
        return await peer.open_stream(
            method, params, max_items=max_items, item_timeout=item_timeout
        )
