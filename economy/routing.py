"""Routing views of the registered workers, as the router reads them, cached by their records' bytes."""
from __future__ import annotations

from typing import Iterable, Mapping, NamedTuple

import rlp

from chain.abc import StateAPI
from economy.maths import compute_decayed
from economy.params import EconomyParams
from economy.records import make_record, try_encode_record
from economy.router import (
    MAX_QUALITY_PPM,
    SCHEDULABLE_DENOMINATOR,
    SCHEDULABLE_NUMERATOR,
    InvalidRoutingInput,
    WorkerView,
    make_routing_snapshot,
)
from economy.store import (
    REGISTER_WORKER_ADDRESS,
    STANDING_SLOT,
    WORKER_REGISTRY_SLOT,
    WORKER_SLOT,
    get_registered_workers,
    get_standing,
    get_worker_record,
)


def get_worker_view(state: StateAPI, address: bytes, params: EconomyParams, block_number: int,
                    pending_load: int = 0) -> WorkerView:
    worker = get_worker_record(state, address)
    standing = get_standing(state, address)
    assert worker is not None and standing is not None, "registered workers have both records"
    return make_record(WorkerView, (
        address, worker.model_sha256, worker.capacity, standing.load + pending_load,
        min(standing.quality_ppm, MAX_QUALITY_PPM),
        compute_decayed(standing.recent_rewards, standing.recent_rewards_block, block_number,
                        params.recent_rewards_half_life_blocks)))


class RoutingTerms(NamedTuple):
    """A `WorkerView`'s fields as a plain tuple: the router reads them per request, and rlp's field access is slow."""

    address: bytes
    model_sha256: bytes
    capacity: int
    load: int
    quality_ppm: int
    recent_rewards: int


class RoutingView(NamedTuple):
    """One worker's `WorkerView`, its RLP as the routing snapshot holds it, and its fields for `select_worker`."""

    view: WorkerView
    encoded: bytes
    terms: RoutingTerms


class RoutingViewCache:
    """Every registered worker's routing view, rebuilt only for the workers whose records changed.

    A request routes over all registered workers, and building and encoding a
    `WorkerView` for each of them per request was most of a block's cost. A view
    is a pure function of the worker's two records (their bytes), its address
    and the block's half-life period (the decay of recent rewards moves only
    at period boundaries), so views are cached under exactly that key: the
    cache can never serve a view the records would not give, whatever state,
    snapshot or revert it is read under. `test_economy_perf` checks it against
    `get_routing_snapshot`.
    """

    LIMIT = 1 << 16  # entries; cleared wholesale when full (a new block's views are rebuilt on demand)

    def __init__(self, params: EconomyParams) -> None:
        self.params = params
        self._views: dict[tuple[bytes, bytes, bytes, int], RoutingView] = {}
        self._registries: dict[bytes, tuple[bytes, ...]] = {}

    def get_views(self, state: StateAPI, block_number: int) -> list[RoutingView]:
        """The routing views of every registered worker, ordered by address (the snapshot's canonical order)."""
        period = block_number // self.params.recent_rewards_half_life_blocks
        views = []
        get_storage, get_cached = state.get_storage, self._views.get  # bound once: this loop runs per request
        for address in self.get_ordered_registry(state):
            key = (address, get_storage(address, WORKER_SLOT), get_storage(address, STANDING_SLOT), period)
            view = get_cached(key)
            if view is None:
                view = self.compute_view(state, address, block_number)
                if len(self._views) >= self.LIMIT:
                    self._views.clear()
                self._views[key] = view
            views.append(view)
        return views

    def get_ordered_registry(self, state: StateAPI) -> tuple[bytes, ...]:
        raw = state.get_storage(REGISTER_WORKER_ADDRESS, WORKER_REGISTRY_SLOT)
        ordered = self._registries.get(raw)
        if ordered is None:
            ordered = tuple(sorted(rlp.decode(raw))) if raw else ()
            if len(set(ordered)) != len(ordered):
                raise InvalidRoutingInput("workers", len(ordered), "each address at most once")
            if len(self._registries) >= 64:
                self._registries.clear()
            self._registries[raw] = ordered
        return ordered

    def compute_view(self, state: StateAPI, address: bytes, block_number: int) -> RoutingView:
        view = get_worker_view(state, address, self.params, block_number)
        return RoutingView(view, try_encode_record(view) or rlp.encode(view), RoutingTerms(*view))


def validate_routing_floor(quality_floor_ppm: int) -> None:
    """The check `make_routing_snapshot` makes of the floor, for the routing done without a snapshot."""
    if not 0 <= quality_floor_ppm <= MAX_QUALITY_PPM:
        raise InvalidRoutingInput("quality_floor_ppm", quality_floor_ppm, f"0..{MAX_QUALITY_PPM}")


def get_routing_snapshot(state: StateAPI, params: EconomyParams, block_number: int, *,
                         excluded: Iterable[bytes] = (), pending_loads: Mapping[bytes, int] | None = None):
    """The router's view: every registered worker but the excluded, with its scheduled load.

    On chain the load is what state records; a node's RPC front door adds the
    loads of the assignments it has made that are not in a block yet (`pending_loads`).
    """
    excluded = set(excluded)
    pending_loads = pending_loads or {}
    views = [get_worker_view(state, a, params, block_number, pending_loads.get(a, 0))
             for a in get_registered_workers(state) if a not in excluded]
    return make_routing_snapshot(views, params.quality_floor_ppm)


def get_free_room(state: StateAPI, params: EconomyParams, model_sha256: bytes, excluded: bytes = b"") -> list[int]:
    """Each worker's schedulable room (tokens/s of job cost it can still take) for the model, on `state`.

    Only workers serving the model at or above the quality floor, never
    `excluded` (the requester); room is what stays outside sacred space. Eligibility
    does not depend on recent rewards, so no block number is needed.
    """
    rooms = []
    for address in get_registered_workers(state):
        view = get_worker_view(state, address, params, 0)
        if address == excluded or view.model_sha256 != model_sha256 or view.quality_ppm < params.quality_floor_ppm:
            continue
        room = SCHEDULABLE_NUMERATOR * view.capacity // SCHEDULABLE_DENOMINATOR - view.load
        if room > 0:
            rooms.append(room)
    return rooms
