"""Admission control of the JSON-RPC server: who may have a request served now, and who hears 429 at once.

The node's consensus shares one process (and one GIL) with the JSON-RPC
server, so the server must never take more than its share: a request is
admitted only while

- the server holds fewer than `max_concurrency + max_queue` requests (running
  in worker threads or waiting for one): beyond that, queueing would only add
  latency and memory, so the answer is an immediate refusal;
- its client (the peer's IP address) has fewer than `max_per_client` requests
  in flight, so one client cannot fill the queue alone;
- its client's token bucket (`rate_limit` tokens/s, `burst` deep) holds the
  request's cost: 1 for a cheap read, more for the methods that walk tries,
  scan blocks or run code (`METHOD_COSTS`), the sum of its members for a batch;
- the server's own bucket (`server_rate_limit` tokens/s for all clients
  together) holds it too, so that many addresses, each within its allowance,
  still cannot add up to more work than the node gives its RPC.

A refused request is answered with HTTP 429 and JSON-RPC error -32005
"limit exceeded" (as Infura and geth-style proxies answer), naming the limit,
what was got and what is allowed, and `Retry-After`. Everything here is a
plain counter behind one `threading.Lock`: it is called from the trio thread
(admission, release) and from worker threads (charging the cost, known only
once the body is parsed).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from node.rpc_errors import MAX_BATCH_SIZE, RPCError

# Tokens a request for a method costs; what is not listed costs DEFAULT_COST.
METHOD_COSTS = {
    "eth_getProof": 5,  # a trie walk per account and per slot, and proof nodes re-encoded
    "eth_getLogs": 9,  # scans blocks
    "muagic_getAccountWork": 9,  # scans up to 10,000 blocks
    "eth_call": 3,
    "eth_estimateGas": 2,
    "eth_getBlockReceipts": 3,
    "muagic_getHeaders": 5,  # up to 256 headers
    "eth_feeHistory": 2,
}
DEFAULT_COST = 1
# Subscribing and unsubscribing (websockets, node.ws) run nothing: they cost no tokens.
SUBSCRIPTION_METHODS = ("eth_subscribe", "eth_unsubscribe")


class RPCLimits(NamedTuple):
    """The JSON-RPC server's admission limits (flags `--http.*`, see node/config.py); 0 disables a limit."""

    max_concurrency: int = 2  # worker threads serving requests at once (0: 4); each holds the GIL as it computes
    # Admitted requests waiting for a worker; more are refused. Waiting requests hold no thread and cost
    # consensus nothing (the worker count does): the bound caps memory and the wait, not the CPU.
    max_queue: int = 64
    max_per_client: int = 32  # requests one client IP may have in flight
    # Tokens per second per client IP: 2,000 cheap reads, 400 proofs, 2,000 transactions in batches.
    rate_limit: float = 2000.0
    burst: float = 4000.0  # tokens a client may spend at once
    # Tokens per second for every client together (bursts of one second's worth): many addresses each
    # under `rate_limit` still cannot make the node compute more than this.
    server_rate_limit: float = 2000.0
    # Serve everything on the node's loop, JSON-RPC inline and unlimited: the behaviour before issue 14,
    # kept only as the baseline of benchmarks/rpc_flood.py.
    on_loop: bool = False
    # Parse and admit HTTP in a process of its own (node.rpc_front) rather than a thread of the node's.
    front_process: bool = True


DEFAULT_RPC_LIMITS = RPCLimits()


class LimitExceeded(RPCError):
    """-32005: the request was not served because a limit was reached; it may be retried later."""

    code = -32005

    def __init__(self, limit: str, got: Any, expected: Any, retry_after: float) -> None:
        self.limit = limit
        self.retry_after = retry_after
        self.request_id: Any = None
        super().__init__(f"limit exceeded: {limit}", {"limit": limit, "got": got, "expected": expected,
                                                       "retryAfterSeconds": round(retry_after, 3)})


def get_client_host(scope: dict) -> str:
    """An ASGI connection's peer address, which the limits count by (its port changes with every connection)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def compute_cost(message: Any) -> int:
    """Tokens a decoded request body costs: its method's price, or the sum over a batch.

    A batch the dispatcher refuses whole (empty, or over MAX_BATCH_SIZE) costs one
    token: it is answered with one error and runs nothing.
    """
    if isinstance(message, list):
        if not message or len(message) > MAX_BATCH_SIZE:
            return DEFAULT_COST
        return sum(compute_request_cost(item) for item in message)
    return compute_request_cost(message)


def compute_request_cost(request: Any) -> int:
    method = request.get("method") if isinstance(request, dict) else None
    return METHOD_COSTS.get(method, DEFAULT_COST) if isinstance(method, str) else DEFAULT_COST


class TokenBucket:
    __slots__ = ("in_flight", "tokens", "updated")

    def __init__(self, tokens: float, now: float) -> None:
        self.tokens = tokens
        self.updated = now
        self.in_flight = 0


class Admission:
    """The limits' counters for one server. `admit` before serving, `release` after, `charge` once the cost is known."""

    # Buckets of clients idle this long are full again, so they can be forgotten.
    IDLE_FORGET_SECONDS = 60.0
    MAX_CLIENTS = 10_000

    def __init__(self, limits: RPCLimits = DEFAULT_RPC_LIMITS, clock: Callable[[], float] = time.monotonic,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.limits = limits
        self.clock = clock
        self.on_refused = on_refused
        self._lock = threading.Lock()
        self._buckets: dict[str, TokenBucket] = {}
        self.in_flight = 0
        self.refused = 0
        self._server = TokenBucket(limits.server_rate_limit, clock())

    @property
    def capacity(self) -> int:
        """Requests the server holds at most (running + queued); 0: unbounded."""
        if not self.limits.max_concurrency or not self.limits.max_queue:
            return 0
        return self.limits.max_concurrency + self.limits.max_queue

    def admit(self, client: str, cost: int = DEFAULT_COST) -> None:
        """Count a request in, paying `cost` tokens (its first, when its cost is not known yet), or raise LimitExceeded.

        A server that knows the cost before admitting (the front process parses
        first) pays it whole here, so a refused request takes nothing from the
        server's bucket.
        """
        with self._lock:
            now = self.clock()
            bucket = self._get_bucket(client, now)
            if self.capacity and self.in_flight >= self.capacity:
                self._refuse("server busy")
                raise LimitExceeded("server busy: too many requests in flight", self.in_flight,
                                    f"< {self.capacity}", 0.1)
            if self.limits.max_per_client and bucket.in_flight >= self.limits.max_per_client:
                self._refuse("client concurrency")
                raise LimitExceeded(f"requests in flight from {client}", bucket.in_flight,
                                    f"< {self.limits.max_per_client}", 0.1)
            self._take(bucket, client, cost)
            bucket.in_flight += 1
            self.in_flight += 1

    def charge(self, client: str, tokens: int) -> None:
        """Pay what the request costs beyond its first token, or raise LimitExceeded (it stays counted in)."""
        if tokens <= 0:
            return
        with self._lock:
            self._take(self._get_bucket(client, self.clock()), client, tokens)

    def release(self, client: str) -> None:
        with self._lock:
            self.in_flight -= 1
            bucket = self._buckets.get(client)
            if bucket is not None:
                bucket.in_flight -= 1

    # --- under the lock -----------------------------------------------------------------------

    def _get_bucket(self, client: str, now: float) -> TokenBucket:
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= self.MAX_CLIENTS:
                self._forget_idle(now)
            bucket = self._buckets[client] = TokenBucket(self.limits.burst, now)
        elif self.limits.rate_limit:
            bucket.tokens = min(self.limits.burst, bucket.tokens + (now - bucket.updated) * self.limits.rate_limit)
        bucket.updated = now
        return bucket

    def _take(self, bucket: TokenBucket, client: str, tokens: int) -> None:
        """Pay `tokens` from the client's bucket and the server's, or from neither and raise LimitExceeded."""
        if self.limits.rate_limit and bucket.tokens < tokens:
            self._refuse("client rate")
            wait = (tokens - bucket.tokens) / self.limits.rate_limit
            raise LimitExceeded(f"request rate of {client}", f"{tokens} tokens asked, {bucket.tokens:.1f} left",
                                f"{self.limits.rate_limit:g} tokens/s, bursts of {self.limits.burst:g}", wait)
        self._take_server(tokens)
        if self.limits.rate_limit:
            bucket.tokens -= tokens

    def _take_server(self, tokens: int) -> None:
        rate = self.limits.server_rate_limit
        if not rate:
            return
        now = self.clock()
        server = self._server
        server.tokens = min(rate, server.tokens + (now - server.updated) * rate)
        server.updated = now
        if server.tokens < tokens:
            self._refuse("server rate")
            raise LimitExceeded("request rate of all clients", f"{tokens} tokens asked, {server.tokens:.1f} left",
                                f"{rate:g} tokens/s for the whole server", (tokens - server.tokens) / rate)
        server.tokens -= tokens

    def _forget_idle(self, now: float) -> None:
        idle = [key for key, b in self._buckets.items()
                if not b.in_flight and now - b.updated > self.IDLE_FORGET_SECONDS]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= self.MAX_CLIENTS:  # all recently active: refill the oldest idle ones anyway
            for key in [k for k, b in self._buckets.items() if not b.in_flight][: self.MAX_CLIENTS // 10]:
                del self._buckets[key]

    def _refuse(self, reason: str) -> None:
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(reason)
