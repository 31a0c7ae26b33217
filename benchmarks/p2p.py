"""p2p benchmark: signed gossip throughput, request round trips and range sync between two nodes.

Two OS processes on loopback, each running a real `P2PService` (Noise XX, signed
hello, msgpack frames). The measurements:

- signed gossip: each message is `rlp([rlp([seq, tag, filler]), signature])`,
  about 180 bytes like a vote, signed with eth-keys (coincurve) before the clock
  starts, as a vote is signed once when it is made (the signing rate is reported
  too). The receiver's validator recovers the signer with eth-keys and accepts
  only the publisher's key; that check is inside the clock.
  Rate = messages / (first publish .. receiver has delivered them all), and
  messages per CPU-second of each process (the machine is shared, so wall-clock
  rates fall with the load average, which is recorded too). The
  publisher keeps its outbox for the peer under half full, as a node producing
  faster than its peer reads would otherwise (correctly) be dropped.
- raw gossip: the same without signing or verifying: what the transport costs.
- request round trip: sequential `echo` requests, p50/p99 in ms.
- range sync: `sync_to_peer_head` of 2,000 blobs of 1 KiB from the other node.

Run: ``python -m benchmarks.p2p [--json] [--quick]``; writes benchmarks/results/p2p.json.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics as stats
import time
from pathlib import Path

import rlp
import trio
from eth_keys import keys
from eth_utils import keccak

from p2p import (
    P2PConfig,
    P2PService,
    SyncProviderAPI,
    Topic,
    ValidationResult,
    register_sync_handlers,
    sync_to_peer_head,
)
from benchmarks.results_io import finish_benchmark

RESULTS_PATH = Path(__file__).parent / "results" / "p2p.json"
CHAIN_ID = 7771
GENESIS_HASH = keccak(b"p2p benchmark genesis")
FILLER = b"\x5a" * 100
TARGET_SIGNED_MSGS_PER_S = 4000  # what a plain trio protocol reached on this machine


class BlobChain(SyncProviderAPI):
    def __init__(self, blobs: list[bytes]) -> None:
        self.blobs = blobs

    def get_headers(self, start: int, count: int) -> list[bytes]:
        return [keccak(blob) for blob in self.blobs[start : start + count]]

    def get_blocks(self, start: int, count: int) -> list[bytes]:
        return self.blobs[start : start + count]

    def status(self) -> tuple[int, bytes]:
        return len(self.blobs) - 1, keccak(self.blobs[-1])


def make_blobs(count: int, size: int) -> list[bytes]:
    return [rlp.encode([height, os.urandom(size)]) for height in range(count + 1)]


def make_config(key: keys.PrivateKey) -> P2PConfig:
    return P2PConfig(
        private_key=key, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, send_queue_size=4096
    )


# --- the receiving node (its own process) -----------------------------------


def run_receiver(key_bytes: bytes, publisher_id: bytes, sync_blobs: int, pipe) -> None:
    trio.run(receiver_main, keys.PrivateKey(key_bytes), publisher_id, sync_blobs, pipe)


async def receiver_main(key: keys.PrivateKey, publisher_id: bytes, sync_blobs: int, pipe) -> None:
    service = P2PService(make_config(key))
    register_sync_handlers(service, BlobChain(make_blobs(sync_blobs, 1024)))
    counts = {"signed": 0, "raw": 0, "rejected": 0}
    changed = trio.Event()

    def validate_signed(message) -> ValidationResult:
        try:
            body, signature = rlp.decode(message.payload)
            signer = keys.Signature(signature).recover_public_key_from_msg_hash(keccak(body))
        except Exception:
            return ValidationResult.REJECT
        return (
            ValidationResult.ACCEPT
            if signer.to_bytes() == publisher_id
            else ValidationResult.REJECT
        )

    async def count(receiver, name: str) -> None:
        nonlocal changed
        async for _ in receiver:
            counts[name] += 1
            changed.set()
            changed = trio.Event()

    async def wait_for(node_id: bytes, params) -> list[int]:
        name, expected = params
        while counts[name] < expected:
            await changed.wait()
        return [counts[name], service.statistics().gossip_rejected, time.process_time()]

    async def echo(node_id: bytes, params):
        return params

    async def cpu(node_id: bytes, params) -> float:
        return time.process_time()

    signed = service.subscribe(Topic.VOTES, validate_signed, buffer=100_000)
    raw = service.subscribe(
        Topic.TRANSACTIONS, lambda message: ValidationResult.ACCEPT, buffer=100_000
    )
    service.register_handler("wait_for", wait_for)
    service.register_handler("echo", echo)
    service.register_handler("cpu", cpu)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        nursery.start_soon(count, signed, "signed")
        nursery.start_soon(count, raw, "raw")
        pipe.send(service.enode.port)
        await trio.to_thread.run_sync(pipe.recv)  # parent says stop
        nursery.cancel_scope.cancel()


# --- the measuring node -------------------------------------------------------


async def publish_paced(
    service: P2PService, peer_id: bytes, topic: Topic, payloads: list[bytes]
) -> None:
    peer = service.get_peer(peer_id)
    limit = service.config.send_queue_size // 2
    for payload in payloads:
        while peer.queued >= limit:
            await trio.sleep(0.001)  # not a busy wait: sender CPU then measures real work
        service.publish(topic, payload)


def make_signed_payloads(key: keys.PrivateKey, count: int, tag: bytes) -> list[bytes]:
    payloads = []
    for seq in range(count):
        body = rlp.encode([seq, tag, FILLER])
        signature = key.sign_msg_hash(keccak(body)).to_bytes()
        payloads.append(rlp.encode([body, signature]))
    return payloads


async def measure_gossip(
    service, peer_id, key, count: int, signed: bool, run_tag: bytes, sent: dict
) -> dict:
    """`sent` holds what earlier runs published per kind: the receiver's counters are cumulative."""
    name = "signed" if signed else "raw"
    # Messages are signed before the clock starts, as a vote is signed once when it is
    # made; the receiver's signature check is inside the clock. Signing speed is reported apart.
    sign_started = time.perf_counter()
    if signed:
        payloads = make_signed_payloads(key, count, run_tag)
        topic = Topic.VOTES
    else:
        payloads = [rlp.encode([seq, run_tag, FILLER]) for seq in range(count)]
        topic = Topic.TRANSACTIONS
    sign_seconds = time.perf_counter() - sign_started
    receiver_cpu_before = await service.request(peer_id, "cpu", None)
    sender_cpu_before = time.process_time()
    started = time.perf_counter()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(publish_paced, service, peer_id, topic, payloads)
        total = sent.get(name, 0) + count
        delivered, rejected, receiver_cpu_after = await service.request(
            peer_id, "wait_for", [name, total], timeout=600
        )
    elapsed = time.perf_counter() - started
    sender_cpu = time.process_time() - sender_cpu_before
    receiver_cpu = receiver_cpu_after - receiver_cpu_before
    delivered -= sent.get(name, 0)
    sent[name] = total
    return {
        "messages": count,
        "payload_bytes": len(payloads[0]),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(count / elapsed),
        "delivered": delivered,
        "rejected": rejected,
        # CPU seconds each process spent: on a shared machine, msgs per CPU-second is
        # what the code costs, msgs per wall-second is what we got.
        "receiver_cpu_s": round(receiver_cpu, 3),
        "sender_cpu_s": round(sender_cpu, 3),
        "msgs_per_receiver_cpu_s": round(count / receiver_cpu) if receiver_cpu > 0 else None,
        "msgs_per_sender_cpu_s": round(count / sender_cpu) if sender_cpu > 0 else None,
        **({"signatures_per_s_eth_keys": round(count / sign_seconds)} if signed else {}),
    }


async def measure_round_trips(service, peer_id, count: int) -> dict:
    samples = []
    for n in range(count):
        started = time.perf_counter()
        await service.request(peer_id, "echo", [n, b"x" * 32])
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "requests": count,
        "p50_ms": round(samples[len(samples) // 2], 3),
        "p99_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.99))], 3),
        "mean_ms": round(stats.fmean(samples), 3),
    }


async def measure_sync(service, blobs: int) -> dict:
    local = BlobChain(make_blobs(0, 1024))

    async def import_batch(start: int, batch: list[bytes]) -> None:
        local.blobs.extend(batch)

    started = time.perf_counter()
    result = await sync_to_peer_head(service, local, import_batch, batch_size=128, max_in_flight=4)
    elapsed = time.perf_counter() - started
    return {
        "blobs": result.imported,
        "blob_bytes": 1024,
        "seconds": round(elapsed, 3),
        "blobs_per_s": round(result.imported / elapsed),
        "mib_per_s": round(result.imported * 1024 / elapsed / 2**20, 2),
    }


async def measure(
    peer_port: int, peer_id: bytes, key: keys.PrivateKey, quick: bool, sync_blobs: int
) -> dict:
    n_gossip = 3000 if quick else 30000
    n_requests = 300 if quick else 3000
    service = P2PService(make_config(key))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        await service.connect(f"{peer_id.hex()}@127.0.0.1:{peer_port}")
        sent: dict = {}
        await measure_gossip(
            service, peer_id, key, 200, True, b"warm-up", sent
        )  # warms buffers and caches
        report = {
            "signed_gossip": await measure_gossip(
                service, peer_id, key, n_gossip, True, b"signed", sent
            ),
            "raw_gossip": await measure_gossip(
                service, peer_id, key, n_gossip, False, b"raw", sent
            ),
            "request_round_trip": await measure_round_trips(service, peer_id, n_requests),
            "range_sync": await measure_sync(service, sync_blobs),
            "statistics": {
                key_: value
                for key_, value in vars(service.statistics()).items()
                if key_
                in (
                    "bytes_out",
                    "bytes_in",
                    "messages_out",
                    "messages_in",
                    "drops",
                    "bans",
                    "faults",
                )
            },
        }
        nursery.cancel_scope.cancel()
    return report


def run_benchmark(quick: bool) -> dict:
    sync_blobs = 500 if quick else 2000
    publisher_key = keys.PrivateKey(os.urandom(32))
    receiver_key = keys.PrivateKey(os.urandom(32))
    context = multiprocessing.get_context("spawn")
    parent_pipe, child_pipe = context.Pipe()
    receiver = context.Process(
        target=run_receiver,
        args=(receiver_key.to_bytes(), publisher_key.public_key.to_bytes(), sync_blobs, child_pipe),
        daemon=True,
    )
    load_before = os.getloadavg()[0]
    receiver.start()
    try:
        if not parent_pipe.poll(60):
            raise RuntimeError("receiver process did not start")
        port = parent_pipe.recv()
        report = trio.run(
            measure, port, receiver_key.public_key.to_bytes(), publisher_key, quick, sync_blobs
        )
    finally:
        parent_pipe.send("stop")
        receiver.join(10)
        if receiver.is_alive():
            receiver.kill()
    signed = report["signed_gossip"]["msgs_per_s"]
    return {
        "benchmark": "p2p",
        "quick": quick,
        "transport": "Noise_XX_25519_ChaChaPoly_SHA256 over TCP 127.0.0.1, msgpack frames",
        "processes": 2,
        "cpu_count": os.cpu_count(),
        # The machine is shared: the 1-minute load average says how much CPU we really had.
        "load_average_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        **report,
        "targets": {
            "signed_msgs_per_s": TARGET_SIGNED_MSGS_PER_S,
            "signed_met": signed >= TARGET_SIGNED_MSGS_PER_S,
        },
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"p2p: two nodes, two processes, loopback ({'quick' if report['quick'] else 'full'})"
    )
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("detail")
    for name in ("signed_gossip", "raw_gossip"):
        row = report[name]
        table.add_row(
            name.replace("_", " "),
            f"{row['msgs_per_s']:,} msg/s",
            f"{row['messages']:,} x {row['payload_bytes']} B in {row['seconds']} s, "
            f"delivered {row['delivered']:,}, rejected {row['rejected']}; "
            f"per CPU-second: receiver {row['msgs_per_receiver_cpu_s']:,}, "
            f"sender {row['msgs_per_sender_cpu_s']:,}"
            + (
                f"; signing alone {row['signatures_per_s_eth_keys']:,}/s"
                if "signatures_per_s_eth_keys" in row
                else ""
            ),
        )
    rtt = report["request_round_trip"]
    table.add_row(
        "request round trip",
        f"p50 {rtt['p50_ms']} ms",
        f"p99 {rtt['p99_ms']} ms over {rtt['requests']:,} requests",
    )
    sync = report["range_sync"]
    table.add_row(
        "range sync",
        f"{sync['blobs_per_s']:,} blobs/s",
        f"{sync['blobs']:,} x {sync['blob_bytes']} B in {sync['seconds']} s"
        f" ({sync['mib_per_s']} MiB/s)",
    )
    console = Console(stderr=True, width=130)
    console.print(table)
    load = report["load_average_1m"]
    console.print(
        f"load average (1 min) on {report['cpu_count']} cores: "
        f"{load['before']} before, {load['after']} after"
    )
    target = report["targets"]
    console.print(
        f"target signed gossip >= {target['signed_msgs_per_s']:,} msg/s: "
        f"{'met' if target['signed_met'] else 'NOT met'}"
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report last on stdout")
    parser.add_argument("--quick", action="store_true", help="fewer messages, for CI")
    args = parser.parse_args(argv)
    report = run_benchmark(args.quick)
    return finish_benchmark(report, RESULTS_PATH, print_table, args.json)


if __name__ == "__main__":
    main()
