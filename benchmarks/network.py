"""Network benchmark: a 4-validator devnet of `magicoin node` processes, each also a worker on the default model.

Measured, in this order, on one devnet (node defaults: the devnet `make devnet` runs):
- finality latency, two ways: what a user sees, one transaction at a time from
  `eth_sendRawTransaction` until its receipt exists (it is in a final block; the
  target is judged on this); and each node's own seconds from the height's first
  proposal it saw to the decision (muagic_status' lastFinalityMs, sampled per
  height on every node), with the block timestamp gap beside it;
- finalised tx/s through JSON-RPC: offerings of value 0 (valid from zero-balance
  accounts at a zero tip; the lightest kind the chain applies itself, and one no
  worker duty reacts to) pre-signed from many accounts before the clock starts,
  then sent as batched `eth_sendRawTransaction` over the four nodes from a few
  threads; rate = included / (first send .. the block holding the last one seen);
- inference: each prompt decoded greedily in this process with `inference.engine`
  (direct llama.cpp, 1 thread like the workers), then right after as a streamed
  `/v1/chat/completions` on node0, which signs the job on chain and routes it to
  another node's worker over p2p. Compared with direct: end-to-end tok/s and
  time to first token (the difference is the added latency). Greedy decoding on
  both sides, so the texts must be equal; that is checked and reported;
- peak RSS of every node process (psutil, sampled through the whole run).

Run: ``python -m benchmarks.network [--json] [--quick]``; writes benchmarks/results/network.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import rlp
from eth_utils import keccak

from benchmarks.results_io import print_result_line, write_result
from chain.payloads import Offering
from chain.transactions import sign_work_transaction
from genesis import load_devnet_genesis
from node.devnet import Devnet, make_free_config, rpc_call

RESULTS_PATH = Path(__file__).parent / "results" / "network.json"
TARGETS = {"finality_p50_s": 0.5, "finalised_tx_per_s": 500, "inference_tok_s_ratio": 0.90,
           "added_latency_p50_ms": 20.0}
PROMPTS = (
    "Name three primary colours.",
    "What is the capital of Italy? Answer in one sentence.",
    "Write a short sentence about the moon.",
    "List four animals that live in the sea.",
    "Explain in one sentence what a computer does.",
    "Give two words that rhyme with light.",
    "What is 12 plus 30?",
    "Describe rain in one sentence.",
)
BENCH_SEED = b"magicoin-bench-account-%d"  # INSECURE, public: throwaway benchmark senders
RPC_BATCH = 100  # node.rpc.MAX_BATCH_SIZE


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- peak RSS -------------------------------------------------------------------------------------

class RssSampler:
    """Peak resident set size of every node process, sampled every 0.5 s in a thread."""

    def __init__(self, devnet: Devnet) -> None:
        self.devnet = devnet
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[int, int]:
        self._stop.set()
        self._thread.join(5)
        return self.peaks

    def run(self) -> None:
        while not self._stop.is_set():
            for node in self.devnet.nodes:
                if node.pid is None:
                    continue
                try:
                    rss = psutil.Process(node.pid).memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[node.index] = max(self.peaks.get(node.index, 0), rss)
            self._stop.wait(0.5)


# --- direct llama.cpp -------------------------------------------------------------------------------

def run_direct(model, prompt: str, max_tokens: int) -> dict:
    tokens = model.tokenize_chat([("user", prompt)])
    started = time.perf_counter()
    first = None
    output = []
    for token in model.iter_greedy(tokens, max_tokens):
        if first is None:
            first = time.perf_counter() - started
        output.append(token)
    seconds = time.perf_counter() - started
    return {"prompt": prompt, "tokens": len(output), "seconds": seconds, "ttft_s": first,
            "text": model.detokenize(output)}


# --- finality -------------------------------------------------------------------------------------

def measure_finality(devnet: Devnet, seconds: float) -> dict:
    """Per-height decision times as each node reports them, and block timestamp gaps."""
    samples: dict[tuple[int, int], int] = {}
    client = httpx.Client(timeout=2.0)
    start_height = int(rpc_call(devnet.rpc_urls[0], "eth_blockNumber"), 16)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for node in devnet.nodes:
            try:
                status = rpc_call(node.rpc_url, "muagic_status", client=client)
            except (httpx.HTTPError, ValueError):
                continue
            if status.get("lastFinalityMs") is not None:
                samples[(node.index, status["height"])] = status["lastFinalityMs"]
        time.sleep(0.05)
    end_height = int(rpc_call(devnet.rpc_urls[0], "eth_blockNumber"), 16)
    stamps = [int(rpc_call(devnet.rpc_urls[0], "eth_getBlockByNumber", [hex(n), False], client=client)["timestampMs"], 16)
              for n in range(start_height, end_height + 1)]
    client.close()
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    values = [ms / 1000 for ms in samples.values()]
    return {
        "seconds": seconds, "blocks": end_height - start_height, "samples": len(values),
        "p50_s": round(percentile(values, 0.5), 3), "p99_s": round(percentile(values, 0.99), 3),
        "mean_s": round(statistics.fmean(values), 3) if values else None,
        "block_gap_p50_s": round(percentile(gaps, 0.5) / 1000, 3) if gaps else None,
        "blocks_per_s": round((end_height - start_height) / seconds, 2),
        "samples_s": [round(value, 4) for value in values],  # the distribution, for the finality plot
        "measure": "node-reported seconds from the height's first proposal seen to its decision "
                   "(muagic_status lastFinalityMs)",
    }


def measure_tx_finality(devnet: Devnet, count: int) -> dict:
    """One transaction at a time: seconds from eth_sendRawTransaction until a receipt (it is in a final block)."""
    chain_id = load_devnet_genesis().chain_id
    key = keccak(b"magicoin-bench-finality" + os.urandom(8))
    data = rlp.encode(Offering(b"bench finality", b""))
    client = httpx.Client(timeout=5)
    latencies = []
    for nonce in range(count):
        raw = sign_work_transaction(key, chain_id=chain_id, nonce=nonce, kind="offering", data=data, gas=100_000)
        url = devnet.rpc_urls[nonce % len(devnet.rpc_urls)]
        started = time.perf_counter()
        tx_hash = rpc_call(url, "eth_sendRawTransaction", ["0x" + raw.hex()], client=client)
        deadline = time.monotonic() + 30
        while rpc_call(url, "eth_getTransactionReceipt", [tx_hash], client=client) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"transaction {tx_hash} not final within 30 s")
            time.sleep(0.01)
        latencies.append(time.perf_counter() - started)
        time.sleep(0.137 * (nonce % 5))  # spread the submissions over the block interval
    client.close()
    return {"transactions": count, "p50_s": round(percentile(latencies, 0.5), 3),
            "p99_s": round(percentile(latencies, 0.99), 3), "mean_s": round(statistics.fmean(latencies), 3),
            "samples_s": [round(value, 4) for value in latencies],
            "measure": "eth_sendRawTransaction until eth_getTransactionReceipt answers (the block is final)"}


# --- transactions per second ----------------------------------------------------------------------

def presign_offerings(accounts: int, per_account: int, chain_id: int) -> list[list[bytes]]:
    """Per account, `per_account` value-0 offerings at nonces 0.. (fresh accounts: nonce 0 is theirs)."""
    data = rlp.encode(Offering(b"bench", b""))
    signed = []
    for index in range(accounts):
        key = keccak(BENCH_SEED % index + os.urandom(8))  # fresh per run, so a rerun never finds used nonces
        signed.append([sign_work_transaction(key, chain_id=chain_id, nonce=nonce, kind="offering", data=data,
                                             gas=100_000) for nonce in range(per_account)])
    return signed


def measure_tx_throughput(devnet: Devnet, accounts: int, per_account: int, timeout: float) -> dict:
    chain_id = load_devnet_genesis().chain_id
    signing_started = time.perf_counter()
    per_sender = presign_offerings(accounts, per_account, chain_id)
    signing_seconds = time.perf_counter() - signing_started
    # Interleave by nonce so every block can take from many accounts (16 per account per block at most).
    ordered = [txs[nonce] for nonce in range(per_account) for txs in per_sender]
    hashes = {keccak(raw) for raw in ordered}
    batches = [ordered[i:i + RPC_BATCH] for i in range(0, len(ordered), RPC_BATCH)]
    urls = devnet.rpc_urls
    start_height = int(rpc_call(urls[0], "eth_blockNumber"), 16)
    refused: list[str] = []

    def send(item) -> int:
        index, batch = item
        body = [{"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}
                for i, raw in enumerate(batch)]
        # A sender's nonces go to one node in order; batches of later nonces follow on the same node.
        url = urls[index % len(urls)]
        answers = httpx.post(url, json=body, timeout=60).json()
        errors = [a["error"]["message"] for a in answers if "error" in a]
        refused.extend(errors)
        return len(batch) - len(errors)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=4) as pool:
        accepted = sum(pool.map(send, enumerate(batches)))
    sent_seconds = time.perf_counter() - started
    included, last_seen, height = 0, started, start_height
    deadline = time.monotonic() + timeout
    client = httpx.Client(timeout=10)
    while included < accepted and time.monotonic() < deadline:
        head = int(rpc_call(urls[0], "eth_blockNumber", client=client), 16)
        for number in range(height + 1, head + 1):
            block = rpc_call(urls[0], "eth_getBlockByNumber", [hex(number), False], client=client)
            ours = sum(1 for tx in block["transactions"] if bytes.fromhex(tx[2:]) in hashes)
            if ours:
                included += ours
                last_seen = time.perf_counter()
        height = head
        time.sleep(0.05)
    client.close()
    seconds = last_seen - started
    return {
        "kind": "offering (value 0, tip 0)", "accounts": accounts, "per_account": per_account,
        "submitted": len(ordered), "accepted": accepted, "refused": len(refused),
        "refusal_examples": sorted(set(refused))[:3], "included": included,
        "blocks": height - start_height, "signing_s": round(signing_seconds, 2),
        "rpc_submit_s": round(sent_seconds, 2), "rpc_accept_per_s": round(accepted / sent_seconds, 1),
        "seconds_to_last_inclusion": round(seconds, 2),
        "finalised_tx_per_s": round(included / seconds, 1) if seconds > 0 else 0.0,
    }


# --- inference through the network ----------------------------------------------------------------

def make_chat_client() -> httpx.Client:
    """One HTTP client for all the chat requests, built before any clock starts (building one loads
    an SSL context, ~30 ms, which is no part of the network path). No keep-alive: every request
    still opens its own TCP connection to the node, as a fresh client would."""
    return httpx.Client(timeout=300, limits=httpx.Limits(max_keepalive_connections=0))


def stream_chat(client: httpx.Client, url: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": "default", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "stream": True}
    started = time.perf_counter()
    first = None
    pieces: list[str] = []
    job_id = None
    with client.stream("POST", url + "/v1/chat/completions", json=body) as response:
        # Headers come once the node has signed the job, routed it and the worker accepted its chat_stream.
        headers_at = time.perf_counter() - started
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"chat completion refused: {response.status_code} {response.text[:200]}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            job_id = job_id or (chunk.get("magicoin") or {}).get("job_id")
            for choice in chunk.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter() - started
                    pieces.append(text)
    return {"seconds": time.perf_counter() - started, "ttft_s": first, "headers_s": headers_at, "chunks": len(pieces),
            "text": "".join(pieces), "job": job_id}


def wait_for_workers(url: str, count: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    workers = []
    while time.monotonic() < deadline:
        workers = rpc_call(url, "muagic_getWorkers")
        if len(workers) >= count:
            break
        time.sleep(0.5)
    return len(workers)


def wait_until_final(url: str, job_id: str | None, timeout: float) -> str | None:
    """The job's status once final (its audit re-runs are over), or the last status seen at the timeout."""
    deadline = time.monotonic() + timeout
    status = None
    while job_id and time.monotonic() < deadline:
        job = rpc_call(url, "muagic_getJob", [job_id])
        status = job["status"] if job else None
        if job and job["final"]:
            break
        time.sleep(0.25)
    return status


def measure_inference(devnet: Devnet, prompts, max_tokens: int, pause: float) -> dict:
    """Each prompt directly in this process, then through the network, back to back under the same machine load.

    Before the next prompt the previous job must be final: its audit (a committee
    re-running it) would otherwise share the cores with the next measurement.
    """
    from inference.engine import LocalModel
    from inference.models import resolve_model_file

    runs, direct = [], []
    with LocalModel(resolve_model_file()) as model, make_chat_client() as client:
        run_direct(model, prompts[0], 4)  # warm the context once, as the workers' capacity probe warmed theirs
        for prompt in prompts:
            time.sleep(pause)
            baseline = run_direct(model, prompt, max_tokens)
            direct.append(baseline)
            network = stream_chat(client, devnet.rpc_urls[0], prompt, max_tokens)
            network["tokens"] = baseline["tokens"] if network["text"] == baseline["text"] else network["chunks"]
            network["same_text_as_direct"] = network["text"] == baseline["text"]
            network["job_status"] = wait_until_final(devnet.rpc_urls[0], network["job"], 60)
            runs.append(network)
    direct_tps = sum(r["tokens"] for r in direct) / sum(r["seconds"] for r in direct)
    network_tps = sum(r["tokens"] for r in runs) / sum(r["seconds"] for r in runs)
    added = [(n["ttft_s"] - d["ttft_s"]) * 1000 for n, d in zip(runs, direct) if n["ttft_s"] and d["ttft_s"]]
    return {
        "prompts": len(runs), "max_tokens": max_tokens,
        "direct_tok_per_s": round(direct_tps, 1), "network_tok_per_s": round(network_tps, 1),
        "tok_s_ratio": round(network_tps / direct_tps, 3),
        "direct_ttft_p50_ms": round(percentile([d["ttft_s"] * 1000 for d in direct], 0.5), 1),
        "network_ttft_p50_ms": round(percentile([n["ttft_s"] * 1000 for n in runs if n["ttft_s"]], 0.5), 1),
        "added_latency_p50_ms": round(percentile(added, 0.5), 1),
        # Where the added time goes: up to the response headers is the node's gateway (sign, route,
        # the worker's acceptance of the chat_stream over p2p); the rest is the worker's decode and the push.
        "network_headers_p50_ms": round(percentile([n["headers_s"] * 1000 for n in runs], 0.5), 1),
        "same_text_as_direct": sum(1 for r in runs if r["same_text_as_direct"]),
        "jobs": [r["job"] for r in runs],
        "job_statuses": [r["job_status"] for r in runs],
        "direct_runs": [{k: v for k, v in r.items() if k != "text"} for r in direct],
        "network_runs": [{k: v for k, v in r.items() if k != "text"} for r in runs],
    }


# --- the run --------------------------------------------------------------------------------------

def run_benchmark(quick: bool) -> dict:
    settings = {
        "finality_seconds": 15 if quick else 40, "finality_txs": 15 if quick else 50,
        "tx_accounts": 100 if quick else 400, "tx_per_account": 8 if quick else 10,
        "prompts": PROMPTS[:3] if quick else PROMPTS, "max_tokens": 32 if quick else 64,
    }
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="magicoin-bench-") as datadir:
        devnet = Devnet(make_free_config(Path(datadir), 4, worker=True))
        sampler = RssSampler(devnet)
        devnet.start()
        sampler.start()
        try:
            devnet.wait_until_serving(timeout=180)
            workers = wait_for_workers(devnet.rpc_urls[0], 4, 120)
            finality = measure_finality(devnet, settings["finality_seconds"])
            finality["submit_to_final"] = measure_tx_finality(devnet, settings["finality_txs"])
            throughput = measure_tx_throughput(devnet, settings["tx_accounts"], settings["tx_per_account"], 120)
            inference = measure_inference(devnet, settings["prompts"], settings["max_tokens"], pause=1.0)
        finally:
            peaks = sampler.stop()
            codes = devnet.stop()
    return {
        "benchmark": "network",
        "quick": quick,
        "nodes": 4, "workers_registered": workers,
        "setup": "4 `magicoin node` processes on 127.0.0.1, node default timeouts and block interval, "
                 "each a worker on the default model (1 llama.cpp thread)",
        "cpu_count": os.cpu_count(),
        # The machine is shared with other engineers' runs: the load average says how much CPU we had.
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "finality": finality,
        "throughput": throughput,
        "inference": inference,
        "peak_rss_mib": {f"node{index}": round(rss / 2**20, 1) for index, rss in sorted(peaks.items())},
        "node_exit_codes": {f"node{index}": code for index, code in codes.items()},
        "targets": {
            **TARGETS,
            # Judged on what a user sees (submission to a final block), the stricter of the two measures.
            "finality_met": finality["submit_to_final"]["p50_s"] <= TARGETS["finality_p50_s"],
            "consensus_decision_met": finality["p50_s"] <= TARGETS["finality_p50_s"],
            "tx_met": throughput["finalised_tx_per_s"] >= TARGETS["finalised_tx_per_s"],
            "inference_ratio_met": inference["tok_s_ratio"] >= TARGETS["inference_tok_s_ratio"],
            "added_latency_met": inference["added_latency_p50_ms"] <= TARGETS["added_latency_p50_ms"],
        },
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    finality, throughput, inference, targets = (report["finality"], report["throughput"], report["inference"],
                                                report["targets"])

    def met(flag: bool) -> str:
        return "[green]met[/]" if flag else "[red]NOT met[/]"

    table = Table(title=f"network: 4-validator devnet, real processes ({'quick' if report['quick'] else 'full'})")
    for column in ("measure", "result", "target", "", "detail"):
        table.add_column(column)
    final = finality["submit_to_final"]
    table.add_row("finality: tx submitted -> final", f"p50 {final['p50_s']} s, p99 {final['p99_s']} s", "p50 <= 0.5 s",
                  met(targets["finality_met"]), f"{final['transactions']} transactions, one at a time, receipt polled")
    table.add_row("finality: proposal -> decided", f"p50 {finality['p50_s']} s, p99 {finality['p99_s']} s",
                  "p50 <= 0.5 s", met(targets["consensus_decision_met"]),
                  f"node-reported, {finality['samples']} samples over {finality['blocks']} blocks; block gap p50 "
                  f"{finality['block_gap_p50_s']} s (the 0.5 s block interval comes before a height starts)")
    table.add_row("finalised tx/s (JSON-RPC)", f"{throughput['finalised_tx_per_s']:,}", ">= 500", met(targets["tx_met"]),
                  f"{throughput['included']}/{throughput['submitted']} included from {throughput['accounts']} accounts "
                  f"in {throughput['seconds_to_last_inclusion']} s; RPC accepted {throughput['rpc_accept_per_s']}/s")
    table.add_row("inference tok/s vs direct", f"{inference['network_tok_per_s']} vs {inference['direct_tok_per_s']} "
                  f"({inference['tok_s_ratio']:.0%})", ">= 90%", met(targets["inference_ratio_met"]),
                  f"{inference['prompts']} prompts, same text {inference['same_text_as_direct']}/{inference['prompts']}")
    table.add_row("added latency (first token)", f"p50 {inference['added_latency_p50_ms']} ms", "<= 20 ms",
                  met(targets["added_latency_met"]),
                  f"TTFT p50 network {inference['network_ttft_p50_ms']} ms (response headers "
                  f"{inference['network_headers_p50_ms']} ms), direct {inference['direct_ttft_p50_ms']} ms")
    table.add_row("peak RSS per node", ", ".join(f"{v} MiB" for v in report["peak_rss_mib"].values()), "", "",
                  "node0..node3, each with the model loaded")
    console = Console(stderr=True, width=160)
    console.print(table)
    load = report["load_average"]
    console.print(f"load average (1/5/15 min) on {report['cpu_count']} shared cores: before {load['before']}, "
                  f"after {load['after']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report last on stdout")
    parser.add_argument("--quick", action="store_true", help="shorter phases and fewer prompts, for CI")
    args = parser.parse_args(argv)
    report = run_benchmark(args.quick)
    write_result(report, RESULTS_PATH)
    print_table(report)
    if args.json:
        print_result_line(report)
    return report


if __name__ == "__main__":
    main()
