"""Polled filters: eth_newFilter, eth_newBlockFilter, eth_getFilterChanges, eth_getFilterLogs, eth_uninstallFilter.

As geth has them. A filter remembers the next block it has not reported:
`eth_getFilterChanges` returns what the blocks imported since the last poll
hold (block hashes for a block filter, matching logs for a log filter) and
moves that mark to the head; `eth_getFilterLogs` runs a log filter's whole
query again (`node.rpc_logs`). A log filter with a numeric `toBlock` reports
nothing past it. One poll reports at most `MAX_POLL_BLOCKS` blocks; the rest
come with the next poll. Blocks are final when imported (BFT), so nothing is
ever reported `removed`.

Bounds: a filter not polled for `FILTER_TIMEOUT` seconds (5 minutes, geth's) is
uninstalled; at most `MAX_FILTERS` filters are installed per node (-32005
beyond, as a provider's limit answers). `eth_newPendingTransactionFilter`
answers -32601 "not available" (geth's code for a method a node does not
offer), saying why: the mempool is not offered as a stream.

The filters of a node live in a `FilterRegistry` found by the node's block
store (`get_filter_registry`), the one object a request's chain view
(`chain.chain.ChainView`) shares with the live chain, so every RPC worker
thread of one node sees the same filters; a lock guards them.
"""
from __future__ import annotations

import secrets
import threading
import time
import weakref

from node.abc import NodeAPI
from node.rpc_core import MethodTable, Param, RPCError, encode_data
from node.rpc_logs import (
    LogQuery,
    get_logs,
    get_logs_in_range,
    parse_log_query,
)

FILTER_TIMEOUT = 300.0
MAX_FILTERS = 1024
MAX_POLL_BLOCKS = 10_000

FILTER_METHODS = MethodTable()


class FilterNotFound(RPCError):
    code = -32000  # geth's answer for an unknown or expired id

    def __init__(self) -> None:
        super().__init__("filter not found")


class TooManyFilters(RPCError):
    code = -32005

    def __init__(self) -> None:
        super().__init__(f"limit exceeded: at most {MAX_FILTERS} installed filters",
                         {"limit": "filters", "expected": MAX_FILTERS})


class NotSupported(RPCError):
    code = -32601


class InstalledFilter:
    """One filter: a log query (None for a block filter), the next unreported block, when it was last polled."""

    __slots__ = ("lock", "next_block", "polled_at", "query")

    def __init__(self, query: LogQuery | None, next_block: int, now: float) -> None:
        self.query = query
        self.next_block = next_block
        self.polled_at = now
        self.lock = threading.Lock()  # one poll at a time, so no block is reported twice


class FilterRegistry:
    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.filters: dict[str, InstalledFilter] = {}
        self.lock = threading.Lock()

    def install(self, query: LogQuery | None, next_block: int) -> str:
        with self.lock:
            self.expire()
            if len(self.filters) >= MAX_FILTERS:
                raise TooManyFilters()
            filter_id = "0x" + secrets.token_hex(16)
            self.filters[filter_id] = InstalledFilter(query, next_block, self.clock())
            return filter_id

    def get(self, filter_id: str) -> InstalledFilter:
        with self.lock:
            self.expire()
            installed = self.filters.get(filter_id) if isinstance(filter_id, str) else None
            if installed is None:
                raise FilterNotFound()
            installed.polled_at = self.clock()
            return installed

    def uninstall(self, filter_id: str) -> bool:
        with self.lock:
            return self.filters.pop(filter_id, None) is not None

    def expire(self) -> None:
        deadline = self.clock() - FILTER_TIMEOUT
        for filter_id in [i for i, f in self.filters.items() if f.polled_at < deadline]:
            del self.filters[filter_id]


_REGISTRIES: weakref.WeakKeyDictionary[object, FilterRegistry] = weakref.WeakKeyDictionary()
_REGISTRIES_LOCK = threading.Lock()


def get_filter_registry(node: NodeAPI) -> FilterRegistry:
    """The filters of the node `node` serves (keyed by its block store, shared by all its chain views)."""
    with _REGISTRIES_LOCK:
        registry = _REGISTRIES.get(node.chain.store)
        if registry is None:
            registry = _REGISTRIES[node.chain.store] = FilterRegistry()
        return registry


def parse_filter_id(value) -> str:
    if not isinstance(value, str) or len(value) > 66:
        raise FilterNotFound()
    return value.lower()


# --- methods ------------------------------------------------------------------------------------------

@FILTER_METHODS.method("eth_newFilter", Param("filter", parse_log_query))
def eth_new_filter(node: NodeAPI, query: LogQuery) -> str:
    return get_filter_registry(node).install(query, node.chain.height + 1)


@FILTER_METHODS.method("eth_newBlockFilter")
def eth_new_block_filter(node: NodeAPI) -> str:
    return get_filter_registry(node).install(None, node.chain.height + 1)


@FILTER_METHODS.method("eth_newPendingTransactionFilter")
def eth_new_pending_transaction_filter(node: NodeAPI) -> str:
    raise NotSupported("the method eth_newPendingTransactionFilter is not available: pending transaction filters "
                       "are not supported; poll eth_getTransactionByHash, or subscribe to newHeads over the websocket")


@FILTER_METHODS.method("eth_uninstallFilter", Param("id", parse_filter_id))
def eth_uninstall_filter(node: NodeAPI, filter_id: str) -> bool:
    return get_filter_registry(node).uninstall(filter_id)


@FILTER_METHODS.method("eth_getFilterChanges", Param("id", parse_filter_id))
def eth_get_filter_changes(node: NodeAPI, filter_id: str) -> list:
    installed = get_filter_registry(node).get(filter_id)
    with installed.lock:
        head = node.chain.height
        first = installed.next_block
        last = min(head, first + MAX_POLL_BLOCKS - 1)
        if installed.query is None:
            changes = [encode_data(node.chain.store.get_canonical_hash(n)) for n in range(first, last + 1)]
        else:
            changes = get_log_changes(node, installed.query, first, last)
        installed.next_block = max(first, last + 1)
        return changes


def get_log_changes(node: NodeAPI, query: LogQuery, first: int, last: int) -> list[dict]:
    """A log filter's matches in first..last, within its own fromBlock/toBlock numbers when it has them."""
    if query.block_hash is not None:
        return []  # a query of one known block never changes
    if query.from_tag.number is not None:
        first = max(first, query.from_tag.number)
    if query.to_tag.number is not None:
        last = min(last, query.to_tag.number)
    if first > last:
        return []
    return get_logs_in_range(node, query.criteria, first, last)


@FILTER_METHODS.method("eth_getFilterLogs", Param("id", parse_filter_id))
def eth_get_filter_logs(node: NodeAPI, filter_id: str) -> list[dict]:
    installed = get_filter_registry(node).get(filter_id)
    if installed.query is None:
        raise FilterNotFound()  # geth: a block filter has no logs to return
    return get_logs(node, installed.query)


__all__ = ["FILTER_METHODS", "FilterRegistry", "get_filter_registry"]
