"""Prometheus metrics of one node: height, finality latency, peers, mempool, jobs and tokens/s, JSON-RPC
admission, and the trio loop's scheduling lag.

Each node has its own `CollectorRegistry` (so several in-process nodes in tests
do not collide); `serve_metrics` exposes it on --metrics.port with
prometheus_client's own HTTP server. `watch_loop_lag` is the loop's watchdog:
a task that asks to wake every 10 ms and records how late it woke, which is
how long any ready task on the loop (a vote arriving, a timer firing) waits to
run. Its recent samples also feed `muagic_status` (`loopLag`).
"""
from __future__ import annotations

import collections
import threading

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

FINALITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
RPC_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
LAG_INTERVAL = 0.01  # the watchdog's sleep: fine enough to see a 10 ms stall, cheap (100 wake-ups/s)
LAG_WINDOW = 1000  # samples kept for muagic_status: the last ~10 s


class LagWindow:
    """The last LAG_WINDOW loop-lag samples, summarised for muagic_status (read from any thread)."""

    def __init__(self, size: int = LAG_WINDOW) -> None:
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._samples.append(seconds)

    def get_summary(self) -> dict | None:
        with self._lock:
            ordered = sorted(self._samples)
        if not ordered:
            return None
        def at(q: float) -> float:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)
        return {"p50Ms": at(0.5), "p99Ms": at(0.99), "maxMs": round(ordered[-1] * 1000, 2), "samples": len(ordered)}


class NodeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.height = Gauge("magicoin_chain_height", "Height of the canonical head", registry=r)
        self.finality = Histogram("magicoin_finality_seconds", "From the start of a height to its decision",
                                  buckets=FINALITY_BUCKETS, registry=r)
        self.rounds = Counter("magicoin_consensus_rounds_total", "Rounds needed to decide, summed", registry=r)
        self.peers = Gauge("magicoin_p2p_peers", "Connected peers", registry=r)
        self.mempool_size = Gauge("magicoin_mempool_size", "Pending transactions", registry=r)
        self.block_txs = Counter("magicoin_block_transactions_total", "Transactions in imported blocks", registry=r)
        self.jobs_served = Counter("magicoin_jobs_served_total", "Inference jobs this node served as worker",
                                   registry=r)
        self.tokens = Counter("magicoin_tokens_generated_total", "Tokens this node generated", registry=r)
        self.tokens_per_second = Gauge("magicoin_tokens_per_second", "Decode speed of the last job", registry=r)
        self.attestations = Counter("magicoin_attestations_total", "Audits this node attested", registry=r)
        self.annotations = Counter("magicoin_annotations_total", "Annotations this node submitted", registry=r)
        self.loop_lag = Histogram("magicoin_loop_lag_seconds", "How late the trio loop woke a task asking for "
                                  f"{LAG_INTERVAL * 1000:g} ms", buckets=LAG_BUCKETS, registry=r)
        self.loop_lag_window = LagWindow()
        self.rpc_requests = Counter("magicoin_rpc_requests_total", "JSON-RPC request bodies by outcome "
                                    "(served, limited)", ["outcome"], registry=r)
        self.rpc_refused = Counter("magicoin_rpc_refused_total", "JSON-RPC requests refused with 429 by limit",
                                   ["limit"], registry=r)
        self.rpc_in_flight = Gauge("magicoin_rpc_in_flight", "JSON-RPC requests admitted and not yet answered",
                                   registry=r)
        self.http_front_restarts = Counter("magicoin_http_front_restarts_total", "Times the HTTP front process "
                                           "(node.rpc_front) ended and was started again", registry=r)
        self.rpc_seconds = Histogram("magicoin_rpc_seconds", "From admission to the response body, per JSON-RPC "
                                     "request body (queue wait included)", buckets=RPC_BUCKETS, registry=r)

    def observe_loop_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        self.loop_lag_window.add(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


async def watch_loop_lag(metrics: NodeMetrics, interval: float = LAG_INTERVAL) -> None:
    """Record, forever, how late the loop wakes a task that sleeps `interval`."""
    while True:
        due = trio.current_time() + interval
        await trio.sleep(interval)
        metrics.observe_loop_lag(max(0.0, trio.current_time() - due))


def serve_metrics(metrics: NodeMetrics, host: str, port: int):
    """Start the exposition server (a daemon thread); returns the server so it can be shut down."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
