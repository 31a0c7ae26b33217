"""The devnet's load generator: signed work submitted through JSON-RPC, as any outside user would.

Owns a set of requester accounts (deterministic devnet keys, INSECURE, zero
balance: work needs no balance at a zero tip) and their nonces, and three
kinds of traffic sent with `eth_sendRawTransaction` to a node picked at random:
- chat jobs (`inference_request` for the model the registered workers serve);
- annotation tasks (`annotation_task`, answered by the validators' annotators);
- now and then an offering into the pool. Offerings move value, so they come
  from the funded genesis validator accounts, at the pending nonce their node
  reports (the node's own duties share that nonce sequence; a lost race is a
  refused offering, counted, and the next one asks again).
It also follows the jobs it submitted through `muagic_getJob`, so the view can
show how many were served and verified.

`submit_burst(count, max_tokens)` is the burst of issue 11: `count` long
inference requests at once, each from a fresh zero-balance account (so no
per-account limit holds them back), spread over the nodes; what the nodes
refuse (e.g. "network busy: ...") is counted by its message.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import NamedTuple

import httpx
import rlp
from eth_utils import keccak

from chain.payloads import AnnotationTask, Offering, compute_work_id
from chain.transactions import sign_work_transaction
from genesis.keys import devnet_private_key, get_address
from inference.jobs import JobSpec
from inference.models import DEFAULT_MODEL_SHA256

logger = logging.getLogger("node.loadgen")

LOAD_SEED = b"magicoin-devnet-load-%d"  # INSECURE, public: requester accounts for the devnet only
BURST_SEED = b"magicoin-devnet-burst-%d-%d"  # INSECURE, public: (round, index) -> a fresh burst account
BURST_PROMPT = "Write a long, detailed story about a lighthouse keeper, chapter by chapter."
PROMPTS = (
    "Name a primary colour.",
    "What is 7 times 6?",
    "Give one word that rhymes with cat.",
    "Write a four-word sentence about the sea.",
    "What is the capital of France?",
    "Say hello in Spanish.",
    "Name a fruit that is yellow.",
    "Count from one to five.",
)
ANNOTATIONS = (
    ("The service was quick and friendly.", ("positive", "negative")),
    ("The parcel arrived broken and late.", ("positive", "negative")),
    ("Paris is the capital of France.", ("true", "false")),
    ("Water boils at 10 degrees Celsius at sea level.", ("true", "false")),
    ("def add(a, b): return a - b", ("correct", "buggy")),
)
FINAL_STATUSES = ("accepted", "failed_audit", "unverified", "expired")


def get_load_key(index: int) -> bytes:
    """INSECURE, public: keccak(b"magicoin-devnet-load-<index>")."""
    return keccak(LOAD_SEED % index)


def get_burst_key(round_: int, index: int) -> bytes:
    """INSECURE, public: a fresh account per burst request (a new round, new accounts)."""
    return keccak(BURST_SEED % (round_, index))


class BurstReport(NamedTuple):
    job_ids: list[bytes]  # requests a node admitted
    tx_hashes: list[bytes]  # their transactions, in the same order
    refused: Counter  # error message -> how many requests got it
    seconds: float  # how long sending the whole burst took


def get_reliabilities(url: str, client: httpx.Client | None = None) -> dict[str, float]:
    """Each registered worker's reliability (0..1) as `muagic_getWorkers` reports it: address hex -> value."""
    response = (client or httpx).post(url, json={"jsonrpc": "2.0", "id": 1, "method": "muagic_getWorkers",
                                                 "params": []}, timeout=10)
    return {w["address"]: int(w["reliability"], 16) / 1_000_000 for w in response.json()["result"]}


@dataclass(frozen=True)
class LoadConfig:
    accounts: int = 8
    chat_interval: float = 4.0  # seconds between chat jobs (the workers share 2 cores with everything else)
    annotation_interval: float = 6.0
    offering_interval: float = 20.0
    max_tokens: int = 24
    annotators: int = 2  # k of each annotation task
    offering_wei: int = 10**16
    track_jobs: int = 64  # most recent jobs followed through muagic_getJob


class Account:
    def __init__(self, key: bytes) -> None:
        self.key = key
        self.address = get_address(key)
        self.nonce: int | None = None  # unknown until asked


class LoadGenerator:
    """Runs in a background thread (the devnet's main thread draws the view); `stop()` joins it."""

    def __init__(self, rpc_urls: list[str], *, chain_id: int, config: LoadConfig = LoadConfig(),
                 validator_keys: list[bytes] | None = None, seed: int = 0) -> None:
        self.rpc_urls = list(rpc_urls)
        self.chain_id = chain_id
        self.config = config
        self.accounts = [Account(get_load_key(i)) for i in range(config.accounts)]
        self.validator_keys = validator_keys if validator_keys is not None else \
            [devnet_private_key(i) for i in range(len(rpc_urls))]
        self.random = random.Random(seed)
        self.counts: Counter = Counter()  # submitted/refused per kind, and job outcomes
        self.jobs: deque[bytes] = deque(maxlen=config.track_jobs)
        self.job_models: dict[bytes, bytes] = {}  # job id -> model sha256, for the per-model outcomes
        self.job_status: dict[bytes, str] = {}
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = httpx.Client(timeout=5.0)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="loadgen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._client.close()

    def run(self) -> None:
        due = {"chat": 0.0, "annotation": 1.0, "offering": self.config.offering_interval / 2, "follow": 2.0}
        intervals = {"chat": self.config.chat_interval, "annotation": self.config.annotation_interval,
                     "offering": self.config.offering_interval, "follow": 2.0}
        actions = {"chat": self.submit_chat_job, "annotation": self.submit_annotation_task,
                   "offering": self.submit_offering, "follow": self.follow_jobs}
        started = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic() - started
            for name, at in due.items():
                if now >= at:
                    due[name] = now + intervals[name] * self.random.uniform(0.7, 1.3)
                    self.do(name, actions[name])
            self._stop.wait(0.1)

    def do(self, name: str, action) -> None:
        try:
            action()
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
            # A node down (fault tests, restarts) must not stop the load; the error is shown in the view.
            self.counts[f"{name}_errors"] += 1
            self.last_error = f"{name}: {error}"

    # --- traffic ----------------------------------------------------------------------------

    def submit_chat_job(self) -> bytes | None:
        """An inference_request for the workers' model; returns the job id if a node took it."""
        model = self.get_served_model()
        prompt = self.random.choice(PROMPTS)
        job = JobSpec.from_chat([("user", prompt)], model, self.config.max_tokens)
        account = self.random.choice(self.accounts)
        job_id = self.send_work(account, "inference_request", job.encode(), "chat")
        if job_id is not None:
            self.jobs.append(job_id)
            self.job_models[job_id] = model
        return job_id

    def submit_burst(self, count: int, max_tokens: int, round_: int = 0) -> BurstReport:
        """`count` zero-fee requests of `max_tokens` from fresh accounts, as fast as the nodes answer."""
        model = self.get_served_model()
        data = JobSpec.from_chat([("user", BURST_PROMPT)], model, max_tokens).encode()
        job_ids: list[bytes] = []
        tx_hashes: list[bytes] = []
        refused: Counter = Counter()
        started = time.monotonic()
        for index in range(count):
            key = get_burst_key(round_, index)
            raw = sign_work_transaction(key, chain_id=self.chain_id, nonce=0, kind="inference_request", data=data,
                                        gas=1_000_000)
            url = self.rpc_urls[index % len(self.rpc_urls)]
            payload = self._client.post(url, json={"jsonrpc": "2.0", "id": index, "method": "eth_sendRawTransaction",
                                                   "params": ["0x" + raw.hex()]}).json()
            if "error" in payload:
                refused[payload["error"].get("message", "")] += 1
                self.counts["burst_refused"] += 1
            else:
                job_ids.append(compute_work_id(get_address(key), 0))
                tx_hashes.append(bytes.fromhex(payload["result"][2:]))
                self.counts["burst_submitted"] += 1
        return BurstReport(job_ids, tx_hashes, refused, time.monotonic() - started)

    def submit_annotation_task(self) -> bytes | None:
        content, labels = self.random.choice(ANNOTATIONS)
        task = AnnotationTask(content.encode(), [label.encode() for label in labels], self.config.annotators)
        return self.send_work(self.random.choice(self.accounts), "annotation_task", rlp.encode(task), "annotation")

    def submit_offering(self) -> bytes | None:
        index = self.random.randrange(len(self.validator_keys))
        key = self.validator_keys[index]
        url = self.rpc_urls[index % len(self.rpc_urls)]
        nonce = int(self.call(url, "eth_getTransactionCount", ["0x" + get_address(key).hex(), "pending"]), 16)
        raw = sign_work_transaction(key, chain_id=self.chain_id, nonce=nonce, kind="offering",
                                    data=rlp.encode(Offering(b"devnet load", b"")), value=self.config.offering_wei,
                                    gas=100_000)
        return self.send_raw(url, raw, "offering")

    def send_work(self, account: Account, kind: str, data: bytes, label: str) -> bytes | None:
        url = self.random.choice(self.rpc_urls)
        if account.nonce is None:
            account.nonce = int(self.call(url, "eth_getTransactionCount", ["0x" + account.address.hex(), "pending"]), 16)
        nonce = account.nonce
        raw = sign_work_transaction(account.key, chain_id=self.chain_id, nonce=nonce, kind=kind, data=data,
                                    gas=1_000_000)
        if self.send_raw(url, raw, label) is None:
            account.nonce = None  # ask again next time: the node's view of our nonce wins
            return None
        account.nonce = nonce + 1
        return compute_work_id(account.address, nonce)

    def send_raw(self, url: str, raw: bytes, label: str) -> bytes | None:
        response = self._client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                                "params": ["0x" + raw.hex()]})
        payload = response.json()
        if "error" in payload:
            self.counts[f"{label}_refused"] += 1
            self.last_error = f"{label}: {payload['error'].get('message')}"
            return None
        self.counts[f"{label}_submitted"] += 1
        return bytes.fromhex(payload["result"][2:])

    def get_served_model(self) -> bytes:
        """One of the models the registered workers serve, chosen at random: every model gets traffic."""
        workers = self.call(self.random.choice(self.rpc_urls), "muagic_getWorkers", [])
        models = sorted({worker["model"] for worker in workers})
        return bytes.fromhex(self.random.choice(models)[2:]) if models else DEFAULT_MODEL_SHA256

    # --- following the jobs -----------------------------------------------------------------

    def follow_jobs(self) -> None:
        url = self.random.choice(self.rpc_urls)
        for job_id in list(self.jobs):
            if self.job_status.get(job_id) in FINAL_STATUSES:
                continue
            job = self.call(url, "muagic_getJob", ["0x" + job_id.hex()])
            if job is not None:
                self.job_status[job_id] = job["status"]
        for stale in set(self.job_status) - set(self.jobs):
            del self.job_status[stale]
        for stale in set(self.job_models) - set(self.jobs):
            del self.job_models[stale]

    def call(self, url: str, method: str, params: list):
        response = self._client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        payload = response.json()
        if "error" in payload:
            raise ValueError(f"{method}: {payload['error'].get('message')}")
        return payload["result"]

    def statistics(self) -> dict:
        outcomes = Counter(self.job_status.values())
        per_model: dict[str, Counter] = {}
        for job_id, status in self.job_status.items():
            model = self.job_models.get(job_id)
            if model is not None:
                per_model.setdefault(model.hex()[:16], Counter())[status] += 1
        return {"counts": dict(self.counts), "recent_jobs": len(self.jobs), "job_outcomes": dict(outcomes),
                "job_outcomes_by_model": {m: dict(c) for m, c in per_model.items()}, "last_error": self.last_error}
