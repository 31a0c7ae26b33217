"""Several untrusted RPC servers behind one light client, cross-checked as Helios does.

Each upstream gets its own `LightClient`, so each header chain is verified
independently from the same genesis (or checkpoint). `LightPool` then:

- serves the highest verified head among them (verified data is true whichever
  server delivered it);
- compares the verified headers of every two upstreams at the heights both
  verified (and at the lowest head, backfilled by parent hashes): two different
  verified blocks at one height mean > 1/3 of the validators signed both, so the
  pool stops serving and reports `ConflictingUpstreams`;
- marks an upstream that lied (`VerificationFailed`) or did not answer
  (`RPCFailure`) and skips it for `retry_after` seconds while the others are used
  (a lone upstream is retried every round: there is nobody else to ask);
- knows the best head any upstream claims, so `eth_syncing` reports the real
  distance and "latest" is refused (`StaleHead`) once the verified head has not
  advanced for `stall_window` seconds while an upstream claims more, or at once
  when nothing beyond the trusted root ever verified.

It offers what `node.light.server` reads from a client (head, headers, root,
stats, get_header, get_account, get_block), so the server works with either.
"""
from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Awaitable, Callable, Sequence, TypeVar

import httpx
import trio

from chain.blocks import Header
from genesis import Genesis
from node.light.client import MAX_KEPT_HEADERS, LightClient, LightStats, VerifiedBlock, compute_genesis_header
from node.light.exceptions import (
    ConflictingUpstreams,
    LightClientError,
    NotVerified,
    RPCFailure,
    StaleHead,
    VerificationFailed,
)
from node.light.proofs import VerifiedAccount
from node.light.transport import TransportAPI

log = logging.getLogger("magicoin.light.upstreams")

DEFAULT_STALL_WINDOW = 30.0  # seconds without a new verified head (blocks come every second or two)
DEFAULT_RETRY_AFTER = 30.0  # seconds a lying or silent upstream is left out
# What can come out of an upstream round besides our own bugs: the typed errors, and (defensively)
# the transport's errors should one ever get past HTTPTransport's conversion.
UPSTREAM_ERRORS = (LightClientError, httpx.HTTPError, trio.TooSlowError, OSError)

T = TypeVar("T")


class Upstream:
    """One RPC server: its own verified chain, its last error and whether it is being skipped."""

    def __init__(self, name: str, client: LightClient, genesis_checked: bool) -> None:
        self.name = name
        self.client = client
        self.genesis_checked = genesis_checked
        self.error: str | None = None
        self.marked: str | None = None  # "lying" or "unavailable" while skipped
        self.skip_until = 0.0

    def is_active(self, now: float) -> bool:
        return self.skip_until <= now


class LightPool:
    """The upstreams, cross-checked; the highest verified head is served."""

    def __init__(self, upstreams: Sequence[Upstream], *, stall_window: float = DEFAULT_STALL_WINDOW,
                 retry_after: float = DEFAULT_RETRY_AFTER) -> None:
        if not upstreams:
            raise ValueError("a light pool needs at least one upstream")
        self.upstreams = list(upstreams)
        first = self.upstreams[0].client
        self.genesis = first.genesis
        self.chain_id = first.chain_id
        self.root = first.root
        self.stall_window = stall_window
        self.retry_after = retry_after
        self.conflict: ConflictingUpstreams | None = None
        self.last_error: str | None = None
        self.all_refused = False  # the last round: every upstream asked failed
        self.best_number = self.root.number
        self.last_advance = time.monotonic()
        self.seen: OrderedDict[int, tuple[str, bytes]] = OrderedDict()  # verified hash per height, and who
        self.checked_up_to = {upstream.name: -1 for upstream in self.upstreams}

    @classmethod
    def from_clients(cls, clients: Sequence[LightClient], names: Sequence[str] | None = None,
                     **kwargs) -> "LightPool":
        """Clients already bootstrapped (their server's genesis checked)."""
        names = names or [getattr(c.transport, "url", f"upstream {i}") for i, c in enumerate(clients)]
        return cls([Upstream(name, client, True) for name, client in zip(names, clients)], **kwargs)

    @classmethod
    def from_genesis(cls, genesis: Genesis, transports: Sequence[TransportAPI], names: Sequence[str] | None = None,
                     **kwargs) -> "LightPool":
        """One client per transport; each server's block 0 is checked on its first round, so an upstream
        down at start is retried later instead of stopping the client."""
        names = names or [getattr(t, "url", f"upstream {i}") for i, t in enumerate(transports)]
        header, validator_set = compute_genesis_header(genesis)
        upstreams = [Upstream(name, LightClient(genesis, transport, header, {header.validators_hash: validator_set}),
                              False) for name, transport in zip(names, transports)]
        return cls(upstreams, **kwargs)

    # --- what the server reads ------------------------------------------------------------------

    @property
    def primary(self) -> Upstream:
        """The upstream with the highest verified head, unmarked ones first on a tie."""
        return max(self.upstreams, key=lambda u: (u.client.head.number, u.marked is None))

    @property
    def head(self) -> Header:
        return self.primary.client.head

    @property
    def headers(self) -> OrderedDict[int, Header]:
        return self.primary.client.headers

    @property
    def stats(self) -> LightStats:
        return self.primary.client.stats

    def get_best_claim(self) -> int | None:
        claims = [u.client.claimed_height for u in self.upstreams if u.client.claimed_height is not None]
        return max(claims) if claims else None

    def compute_sync_status(self) -> dict | bool:
        """eth_syncing: False when the verified head is the best claimed one, else the distance."""
        claimed = self.get_best_claim()
        head = self.head.number
        if claimed is None or claimed <= head:
            return False
        return {"startingBlock": self.root.number, "currentBlock": head, "highestBlock": claimed}

    def validate_fresh_head(self) -> None:
        """Raise unless the verified head may be served as "latest"."""
        if self.conflict is not None:
            raise self.conflict
        claimed = self.get_best_claim()
        head = self.head.number
        if claimed is None or claimed <= head:
            return
        if head == self.root.number and self.all_refused:
            what = "genesis" if self.root.number == 0 else "the trusted checkpoint"
            raise StaleHead(head, claimed, f"no verified head beyond {what}: upstream claims {claimed}")
        stalled_for = time.monotonic() - self.last_advance
        if stalled_for > self.stall_window:
            raise StaleHead(head, claimed, f"head is stale: verified {head}, upstream claims {claimed} "
                                           f"(no progress for {stalled_for:.0f}s)")

    def compute_upstream_status(self) -> list[dict]:
        return [{"url": u.name, "head": u.client.head.number, "claimed": u.client.claimed_height,
                 "marked": u.marked, "lastError": u.error} for u in self.upstreams]

    # --- sync -----------------------------------------------------------------------------------

    async def sync(self, target: int | None = None, *, skipping: bool = True) -> Header:
        """One round: every active upstream syncs (concurrently); heads are cross-checked.

        An upstream's failure is recorded and marks it; only a conflict between verified chains raises.
        """
        if self.conflict is not None:
            raise self.conflict
        now = time.monotonic()
        active = [u for u in self.upstreams if u.is_active(now)] or self.upstreams
        async with trio.open_nursery() as nursery:
            for upstream in active:
                nursery.start_soon(self.sync_upstream, upstream, target, skipping)
        failed = [u for u in active if u.error is not None]
        self.all_refused = len(failed) == len(active)
        self.last_error = self.compute_last_error(failed)
        await self.validate_agreement()
        self.record_progress()
        return self.head

    async def sync_upstream(self, upstream: Upstream, target: int | None, skipping: bool) -> None:
        try:
            if not upstream.genesis_checked:
                await upstream.client.validate_server_genesis()
                upstream.genesis_checked = True
            await upstream.client.sync(target, skipping=skipping)
        except UPSTREAM_ERRORS as error:
            self.mark(upstream, error)
            return
        upstream.error = upstream.client.last_error = None
        upstream.marked = None
        upstream.skip_until = 0.0

    def mark(self, upstream: Upstream, error: BaseException) -> None:
        """Leave an upstream out for a while: it lied (a verification failed) or did not answer."""
        upstream.error = upstream.client.last_error = f"{type(error).__name__}: {error}"
        upstream.marked = "lying" if isinstance(error, VerificationFailed) else "unavailable"
        upstream.skip_until = time.monotonic() + self.retry_after
        log.error("upstream %s %s: %s", upstream.name, upstream.marked, upstream.error)

    def compute_last_error(self, failed: list[Upstream]) -> str | None:
        if not failed:
            return None
        if len(self.upstreams) == 1:
            return failed[0].error
        return "; ".join(f"{u.name}: {u.error}" for u in failed)

    def record_progress(self) -> None:
        if self.head.number > self.best_number:
            self.best_number = self.head.number
            self.last_advance = time.monotonic()

    # --- cross-checking -------------------------------------------------------------------------

    async def validate_agreement(self) -> None:
        """No two upstreams verified different blocks at one height (else: conflict, stop serving)."""
        for upstream in self.upstreams:
            self.compare_new_headers(upstream)
        await self.compare_at_lowest_head()

    def compare_new_headers(self, upstream: Upstream) -> None:
        checked = self.checked_up_to[upstream.name]
        for number, header in list(upstream.client.headers.items()):
            if number > checked:
                self.compare_header(upstream.name, header)
        self.checked_up_to[upstream.name] = upstream.client.head.number

    def compare_header(self, name: str, header: Header) -> None:
        known = self.seen.get(header.number)
        if known is None:
            self.seen[header.number] = (name, header.hash)
            while len(self.seen) > MAX_KEPT_HEADERS:
                self.seen.popitem(last=False)
            return
        if known[1] != header.hash:
            self.conflict = ConflictingUpstreams(header.number, known[0], known[1], name, header.hash)
            log.critical("%s", self.conflict)
            raise self.conflict

    async def compare_at_lowest_head(self) -> None:
        """Skipping sync verifies few heights, so two upstreams may share none: backfill each upstream
        (by parent hashes, from its own verified head) to the lowest verified head and compare there."""
        synced = [u for u in self.upstreams if u.client.head.number > self.root.number and u.marked is None]
        if len(synced) < 2:
            return
        lowest = min(u.client.head.number for u in synced)
        for upstream in synced:
            try:
                header = await upstream.client.get_header(lowest)
            except UPSTREAM_ERRORS as error:
                self.mark(upstream, error)
                continue
            self.compare_header(upstream.name, header)

    # --- verified reads -------------------------------------------------------------------------

    def get_candidates(self, height: int) -> list[Upstream]:
        """Upstreams whose verified chain reaches `height`: unmarked first, highest head first."""
        able = [u for u in self.upstreams if u.client.head.number >= height]
        return sorted(able, key=lambda u: (u.marked is not None, -u.client.head.number))

    async def read(self, height: int, action: Callable[[LightClient], Awaitable[T]]) -> T:
        """`action` on the best upstream for `height`; one that lies or fails is marked and the next tried."""
        if self.conflict is not None:
            raise self.conflict
        candidates = self.get_candidates(height)
        if not candidates:
            raise NotVerified(f"block {height} is beyond the verified head", got=height,
                              expected=f"<= {self.head.number}")
        last: LightClientError | None = None
        for upstream in candidates:
            try:
                return await action(upstream.client)
            except (RPCFailure, VerificationFailed) as error:
                self.mark(upstream, error)
                last = error
        raise last

    async def get_header(self, height: int | None = None) -> Header:
        if height is None:
            return self.head
        return await self.read(height, lambda client: client.get_header(height))

    async def get_account(self, address: bytes, height: int | None = None) -> VerifiedAccount:
        number = self.head.number if height is None else height
        return await self.read(number, lambda client: client.get_account(address, number))

    async def get_block(self, height: int | None = None) -> VerifiedBlock:
        number = self.head.number if height is None else height
        return await self.read(number, lambda client: client.get_block(number))
