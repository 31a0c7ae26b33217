"""Header and block sync by range.

Serving side: `register_sync_handlers(service, provider)` answers `status`,
`get_headers` and `get_blocks` from a `SyncProviderAPI` (the node implements it
over the chain store). Items are opaque RLP blobs to p2p; a response may be a
non-empty prefix of the range when the whole range would not fit in one frame.

Fetching side: `sync_to_peer_head` asks every peer for its head, splits the
missing heights into batches, fetches up to `max_in_flight` batches at once and
hands them, in order, to an import callback. The callback raises `InvalidBatch`
for data that does not check out; the peer that sent it is banned and the
range is fetched again from another peer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from typing import Any, Awaitable, Callable, NamedTuple, Sequence

import trio

from .abc import SyncProviderAPI
from .exceptions import (
    BadRequest,
    InvalidBatch,
    InvalidMessage,
    P2PError,
    SyncFailed,
)
from .identity import compute_short_id
from .service import P2PService

logger = logging.getLogger("p2p.sync")

METHOD_STATUS = "status"
MAX_BATCH = 256
ITEM_OVERHEAD = 8  # msgpack bin header per blob, generously
RESPONSE_OVERHEAD = 256


class SyncKind(Enum):
    HEADERS = "get_headers"
    BLOCKS = "get_blocks"


class PeerStatus(NamedTuple):
    height: int
    head_hash: bytes


ImportCallback = Callable[[int, list[bytes]], Awaitable[None]]


@dataclass(frozen=True)
class SyncResult:
    start_height: int
    head_height: int
    target_height: int
    imported: int
    banned: tuple[bytes, ...]


# --- serving -----------------------------------------------------------------


def register_sync_handlers(
    service: P2PService, provider: SyncProviderAPI, *, max_batch: int = MAX_BATCH
) -> None:
    budget = service.config.max_frame_size - RESPONSE_OVERHEAD

    async def on_status(node_id: bytes, params: Any) -> list:
        height, head_hash = provider.status()
        return [height, head_hash]

    def make_range_handler(read: Callable[[int, int], Sequence[bytes]]):
        async def on_range(node_id: bytes, params: Any) -> list[bytes]:
            start, count = validate_range_params(params, max_batch)
            return compute_fitting_prefix(list(read(start, count)), budget)

        return on_range

    service.register_handler(METHOD_STATUS, on_status)
    service.register_handler(SyncKind.HEADERS.value, make_range_handler(provider.get_headers))
    service.register_handler(SyncKind.BLOCKS.value, make_range_handler(provider.get_blocks))


def validate_range_params(params: Any, max_batch: int) -> tuple[int, int]:
    if not (isinstance(params, list) and len(params) == 2 and all(type(v) is int for v in params)):
        raise BadRequest("range params must be [start, count]", got=params, expected="[int, int]")
    start, count = params
    if start < 0:
        raise BadRequest("negative start height", got=start, expected=">= 0")
    if not 1 <= count <= max_batch:
        raise BadRequest("count out of range", got=count, expected=f"1..{max_batch}")
    return start, count


def compute_fitting_prefix(items: list[bytes], budget: int) -> list[bytes]:
    total = 0
    for index, item in enumerate(items):
        total += len(item) + ITEM_OVERHEAD
        if total > budget:
            return items[:index]
    return items


# --- fetching ----------------------------------------------------------------


async def request_status(service: P2PService, node_id: bytes) -> PeerStatus:
    result = await service.request(node_id, METHOD_STATUS, [])
    if not (
        isinstance(result, list)
        and len(result) == 2
        and type(result[0]) is int
        and result[0] >= 0
        and type(result[1]) is bytes
        and len(result[1]) == 32
    ):
        exc = InvalidMessage(
            "status response is not [height, hash32]", got=result, expected="[int, bytes32]"
        )
        service.on_peer_fault(node_id, exc)
        raise exc
    return PeerStatus(result[0], result[1])


async def request_range(
    service: P2PService, node_id: bytes, kind: SyncKind, start: int, count: int
) -> list[bytes]:
    """A non-empty prefix of [start, start+count) from one peer; a bad shape bans it."""
    result = await service.request(node_id, kind.value, [start, count])
    if not (
        isinstance(result, list)
        and 1 <= len(result) <= count
        and all(type(item) is bytes for item in result)
    ):
        shape = f"{len(result)} items" if isinstance(result, list) else type(result).__name__
        exc = InvalidBatch(start, count, f"response is {shape}, expected 1..{count} byte strings")
        service.on_peer_fault(node_id, exc)
        raise exc
    return result


async def sync_to_peer_head(
    service: P2PService,
    provider: SyncProviderAPI,
    import_batch: ImportCallback,
    *,
    kind: SyncKind = SyncKind.BLOCKS,
    batch_size: int = 64,
    max_in_flight: int = 4,
) -> SyncResult:
    """Fetch and import everything between our head and the best peer's head."""
    syncer = RangeSyncer(service, provider, import_batch, kind, batch_size, max_in_flight)
    return await syncer.run()


@dataclass
class Piece:
    start: int
    items: list[bytes]
    node_id: bytes


@dataclass
class Fetched:
    pieces: list[Piece]
    complete: bool


class RangeSyncer:
    def __init__(
        self,
        service: P2PService,
        provider: SyncProviderAPI,
        import_batch: ImportCallback,
        kind: SyncKind,
        batch_size: int,
        max_in_flight: int,
    ) -> None:
        assert batch_size >= 1 and max_in_flight >= 1
        self.service = service
        self.provider = provider
        self.import_batch = import_batch
        self.kind = kind
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.statuses: dict[bytes, PeerStatus] = {}
        self.banned: list[bytes] = []
        self.imported = 0
        self._turn = 0

    async def run(self) -> SyncResult:
        start_height = self.get_local_height()
        best_seen = start_height
        while True:
            await self.refresh_statuses()
            local = self.get_local_height()
            target = max([status.height for status in self.statuses.values()], default=local)
            if target <= local:
                if best_seen > local:
                    # Every peer that claimed more was banned or went away.
                    raise SyncFailed(local, best_seen, "no peer left that is ahead of us")
                return SyncResult(start_height, local, target, self.imported, tuple(self.banned))
            best_seen = max(best_seen, target)
            banned_before, imported_before = len(self.banned), self.imported
            await self.sync_range(local + 1, target)
            if self.imported == imported_before and len(self.banned) == banned_before:
                raise SyncFailed(self.get_local_height(), target, "no progress from any peer")

    def get_local_height(self) -> int:
        return self.provider.status()[0]

    async def refresh_statuses(self) -> None:
        self.statuses = {}

        async def ask(node_id: bytes) -> None:
            try:
                self.statuses[node_id] = await request_status(self.service, node_id)
            except P2PError as exc:
                logger.debug(
                    "status request failed peer=%s error=%s", compute_short_id(node_id), exc
                )

        async with trio.open_nursery() as nursery:
            for info in self.service.get_peers():
                nursery.start_soon(ask, info.node_id)

    async def sync_range(self, first: int, last: int) -> None:
        """Fetch [first, last] window by window; import each window in order."""
        window_span = self.batch_size * self.max_in_flight
        # Windows are made lazily: a peer may claim an absurd height.
        for window_start in range(first, last + 1, window_span):
            window_end = min(window_start + window_span, last + 1)
            window = [
                (start, min(self.batch_size, window_end - start))
                for start in range(window_start, window_end, self.batch_size)
            ]
            fetched: dict[int, Fetched] = {}
            async with trio.open_nursery() as nursery:
                for start, count in window:
                    nursery.start_soon(self.fetch_batch, start, count, fetched)
            for start, count in window:
                # Import what arrived, in order, even when the rest of the batch could not be had.
                if not await self.import_pieces(fetched[start].pieces):
                    return  # a peer was banned; the caller starts over from our new head
                if not fetched[start].complete:
                    raise SyncFailed(
                        self.get_local_height(),
                        last,
                        f"no peer could serve all of [{start}, {start + count})",
                    )

    async def fetch_batch(self, start: int, count: int, fetched: dict[int, "Fetched"]) -> None:
        """Collect [start, start+count), from several peers if needed, or as much as anyone has."""
        result = fetched[start] = Fetched([], complete=False)
        tried: set[bytes] = set()
        position, end = start, start + count
        while position < end:
            node_id = self.choose_peer(position, end - 1, tried)
            if node_id is None:
                return
            try:
                items = await request_range(
                    self.service, node_id, self.kind, position, end - position
                )
            except InvalidBatch:
                self.note_banned(node_id)
                tried.add(node_id)
                continue
            except P2PError as exc:
                logger.info("range request failed peer=%s error=%s", compute_short_id(node_id), exc)
                tried.add(node_id)
                continue
            result.pieces.append(Piece(position, items, node_id))
            position += len(items)
        result.complete = True

    def choose_peer(self, first: int, last: int, tried: set[bytes]) -> bytes | None:
        """Round-robin over connected peers whose head covers the range (or at least its start)."""
        usable = [
            node_id
            for node_id, status in self.statuses.items()
            if node_id not in tried
            and status.height >= first
            and self.service.is_connected(node_id)
            and not self.service.is_banned(node_id)
        ]
        if not usable:
            return None
        covering = [
            node_id for node_id in usable if self.statuses[node_id].height >= last
        ] or usable
        self._turn += 1
        return covering[self._turn % len(covering)]

    def note_banned(self, node_id: bytes) -> None:
        if node_id not in self.banned:
            self.banned.append(node_id)

    async def import_pieces(self, batch: list[Piece]) -> bool:
        for piece in batch:
            try:
                await self.import_batch(piece.start, piece.items)
            except InvalidBatch as exc:
                logger.warning(
                    "invalid batch peer=%s error=%s", compute_short_id(piece.node_id), exc
                )
                self.service.on_peer_fault(piece.node_id, exc)
                self.note_banned(piece.node_id)
                return False
            self.imported += len(piece.items)
        return True
