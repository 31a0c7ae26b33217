"""Prometheus metrics of one node: height, finality latency, peers, mempool, jobs and tokens/s.

Each node has its own `CollectorRegistry` (so several in-process nodes in tests
do not collide); `serve_metrics` exposes it on --metrics.port with
prometheus_client's own HTTP server.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

FINALITY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


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

    def render(self) -> bytes:
        return generate_latest(self.registry)


def serve_metrics(metrics: NodeMetrics, host: str, port: int):
    """Start the exposition server (a daemon thread); returns the server so it can be shut down."""
    server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    return server
