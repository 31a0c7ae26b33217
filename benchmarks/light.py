"""Light-client benchmark: verified headers/s (sequential and skipping), proof check time, peak RSS.

The chain is built locally by `node.devchain` on the real rules and LevelDB,
and every block is finalised by a commit really signed by its validator set
(4 equal validators by default; the genesis epoch is short, so the set is
re-derived from recognition at every epoch boundary and the light client follows
the changes). It is served by the full node's own JSON-RPC dispatcher
(`node.rpc.RPCDispatcher`), either in-process (`DispatcherTransport`, the JSON
bodies are still encoded and decoded) or over loopback HTTP (`node.http`, in a
child process so server and client get a core each).

Figures:
- sequential: every header verified (parent link, validators hash, commit with
  > 2/3 of the weight), headers per second of wall time, fetch included;
- skipping: from genesis to the head CometBFT-style; heights advanced per second
  (the client checks a handful of commits, so this is latency-bound), plus the
  commits it actually checked;
- proof check: eth_getProof (storage key 0) verified against the verified root,
  per account, fetch excluded and included;
- peak RSS of the process after the light-client runs (the builder's chain is
  in LevelDB on disk, but the process also holds the full node's dispatcher in
  the in-process mode, so the figure is an upper bound).

Signature recovery memoised by `consensus.votes` is cleared before each timed
run, so every signature is really recovered.

Run: ``python -m benchmarks.light [--json] [--quick]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import trio

from benchmarks.results_io import print_result_line, write_result
from chain.chain import Chain
from chain.db import LevelDB
from economy import make_work_rules
from genesis import MUAGIC, Genesis
from node.devchain import ChainNode, VALIDATOR_KEYS as KEYS, build_signed_chain, make_dev_genesis, make_evidence, \
    make_offering

RESULTS_PATH = Path(__file__).parent / "results" / "light.json"
TARGET_HEADERS_PER_SECOND = 2000


# --- measurements -------------------------------------------------------------------------------------

def clear_signature_cache() -> None:
    """Forget memoised recoveries so every commit signature is really recovered in the timed run."""
    from consensus import votes

    votes._recover.cache_clear()


def peak_rss_mb() -> float:
    """This process's peak RSS in MiB: VmHWM of its own address space.

    Not getrusage's ru_maxrss: Linux carries that across fork+exec, so a child would
    report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def measure_sync(genesis: Genesis, transport, skipping: bool) -> dict:
    from node.light import LightClient

    clear_signature_cache()
    client = await LightClient.from_genesis(genesis, transport)
    started, cpu_started = time.perf_counter(), time.process_time()
    head = await client.sync(skipping=skipping)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    stats = client.stats
    return {"heights": head.number, "seconds": round(elapsed, 4),
            "headers_per_second": round(head.number / elapsed, 1),
            # CPU seconds of this process (all threads): steadier than wall time on a shared machine.
            "cpu_seconds": round(cpu, 4), "headers_per_cpu_second": round(head.number / max(cpu, 1e-9), 1),
            "commits_checked": stats.commits_checked, "bisections": stats.bisections,
            "validator_sets_fetched": stats.validator_sets_fetched}


async def measure_proofs(genesis: Genesis, transport, addresses: Sequence[bytes], rounds: int) -> dict:
    """Per account: the pure check (proof already fetched) and the whole get_account (fetch + check)."""
    from node.light import LightClient
    from node.light.proofs import verify_account_proof

    client = await LightClient.from_genesis(genesis, transport)
    head = await client.sync()
    proofs = []
    started = time.perf_counter()
    for _ in range(rounds):
        for address in addresses:
            await client.get_account(address)
    fetch_and_check = (time.perf_counter() - started) / (rounds * len(addresses))
    for address in addresses:
        result = (await transport.call_batch([("eth_getProof", ["0x" + address.hex(), ["0x0"], hex(head.number)])]))[0]
        proofs.append((address, result))
    started = time.perf_counter()
    for _ in range(rounds):
        for address, result in proofs:
            verify_account_proof(address, head.number, head.state_root, result)
    check = (time.perf_counter() - started) / (rounds * len(proofs))
    return {"accounts": len(addresses), "rounds": rounds, "check_ms": round(check * 1000, 3),
            "fetch_and_check_ms": round(fetch_and_check * 1000, 3)}


def bench_addresses(genesis: Genesis) -> list[bytes]:
    from chain.transactions import POOL_ADDRESS

    return [v.address for v in genesis.validators] + [POOL_ADDRESS, b"\x42" * 20]


async def run_client_measurements(genesis: Genesis, transport, rounds: int) -> dict:
    return {
        "sequential": await measure_sync(genesis, transport, skipping=False),
        "skipping": await measure_sync(genesis, transport, skipping=True),
        "proofs": await measure_proofs(genesis, transport, bench_addresses(genesis), rounds),
    }


# --- child processes: the served chain and a clean light-client process ---------------------------------

async def serve_database(path: str, port: int) -> None:
    from node.http import serve_http

    db = LevelDB(Path(path))
    chain = Chain.open(db, make_work_rules)
    async with trio.open_nursery() as nursery:
        url = await nursery.start(serve_http, ChainNode(chain), "127.0.0.1", port)
        print(url, flush=True)


async def client_process(url: str, genesis_path: str, rounds: int) -> None:
    from genesis import load_genesis
    from node.light import HTTPTransport

    transport = HTTPTransport(url, timeout=60)
    result = await run_client_measurements(load_genesis(genesis_path), transport, rounds)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    await transport.aclose()
    print(json.dumps(result), flush=True)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure_over_http(db_path: Path, genesis_path: Path, rounds: int) -> dict:
    """Server and light client as two processes talking loopback HTTP (one core each, if the machine allows)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.light", "--serve", str(db_path), str(port)],
                              stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"benchmark server did not start: {url!r}")
        output = subprocess.run([sys.executable, "-m", "benchmarks.light", "--client", url, str(genesis_path),
                                 str(rounds)], capture_output=True, text=True, check=True).stdout
        return json.loads(output.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait(timeout=30)


def measure_bisection(path: Path, blocks: int) -> dict:
    """Skipping across a set change the trusted set cannot vouch for: three of four validators are
    slashed at block 3, so from height 11 the set is the fourth alone (1/4 of the trusted weight)
    and the client must bisect down to the epoch boundary before it can skip again."""
    from node.light import DispatcherTransport
    from node.rpc import RPCDispatcher

    genesis = make_dev_genesis(4, epoch_length=10)
    churn = build_signed_chain(path, genesis, blocks, txs_at={3: [make_evidence(KEYS[3], key, index)
                                                                  for index, key in enumerate(KEYS[:3])]})
    transport = DispatcherTransport(RPCDispatcher(ChainNode(churn.chain)))
    result = trio.run(measure_sync, genesis, transport, True)
    churn.db.close()
    return result


# --- the report ------------------------------------------------------------------------------------------

def run(quick: bool) -> dict:
    blocks = 1000 if quick else 5000
    rounds = 5 if quick else 20
    genesis = make_dev_genesis(4, epoch_length=100)
    workdir = Path(tempfile.mkdtemp(prefix="light-bench-"))
    db_path, genesis_path = workdir / "db", workdir / "genesis.json"
    from genesis import save_genesis

    save_genesis(genesis, genesis_path)
    started = time.perf_counter()
    # One validator is slashed at block 3, so the set changes at the first epoch boundary (101).
    built = build_signed_chain(db_path, genesis, blocks, txs_at={3: [make_evidence(KEYS[1], KEYS[0])],
                                                                 5: [make_offering(KEYS[1], MUAGIC)]})
    build_seconds = time.perf_counter() - started

    from node.light import DispatcherTransport
    from node.rpc import RPCDispatcher

    in_process = trio.run(run_client_measurements, genesis, DispatcherTransport(RPCDispatcher(ChainNode(built.chain))),
                          rounds)
    in_process["peak_rss_mb_upper_bound"] = round(peak_rss_mb(), 1)
    built.db.close()
    over_http = measure_over_http(db_path, genesis_path, rounds)
    in_process["skipping_with_bisection"] = measure_bisection(workdir / "churn", 300 if quick else 1000)
    return {
        "benchmark": "light",
        "quick": quick,
        "chain": {"blocks": blocks, "validators": 4, "signatures_per_commit": 4, "validator_set_changes": 1,
                  "build_seconds": round(build_seconds, 1)},
        "target_headers_per_second": TARGET_HEADERS_PER_SECOND,
        "in_process": in_process,
        "http": over_http,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "notes": ("skipping_with_bisection = a second chain whose set shrinks to 1 of 4 validators, so skipping "
              "from genesis must bisect; "
              "sequential = every header verified with its commit (signatures counted until > 2/3: 3 of 4 "
              "recovered); skipping = heights advanced per second from genesis to the head, with the commits "
              "actually checked listed; http = server and light client in separate processes over loopback; "
              "headers_per_cpu_second divides by the CPU time of the measuring process (in-process: client and "
              "server together; http: the light client alone); the machine is shared, see load_average"),
    }


def print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"light client ({result['chain']['blocks']} blocks, 4 validators, load "
                        f"{result['load_average'][0]})")
    for column in ("figure", "in-process", "loopback HTTP", "target"):
        table.add_column(column)
    target = f">= {result['target_headers_per_second']}"
    for mode in ("sequential", "skipping"):
        a, b = result["in_process"][mode], result["http"][mode]
        table.add_row(f"{mode} verified headers/s", f"{a['headers_per_second']:.0f}", f"{b['headers_per_second']:.0f}",
                      target)
        table.add_row(f"  {mode} headers per CPU-second", f"{a['headers_per_cpu_second']:.0f}",
                      f"{b['headers_per_cpu_second']:.0f}", "")
        table.add_row(f"  {mode} commits checked", str(a["commits_checked"]), str(b["commits_checked"]), "")
    bisecting = result["in_process"]["skipping_with_bisection"]
    table.add_row("skipping across a 3/4 set change, headers/s", f"{bisecting['headers_per_second']:.0f}", "",
                  target)
    table.add_row(f"  commits checked / bisections ({bisecting['heights']} heights)",
                  f"{bisecting['commits_checked']} / {bisecting['bisections']}", "", "")
    a, b = result["in_process"]["proofs"], result["http"]["proofs"]
    table.add_row("proof check per account (ms)", f"{a['check_ms']:.3f}", f"{b['check_ms']:.3f}", "")
    table.add_row("  with fetch (ms)", f"{a['fetch_and_check_ms']:.3f}", f"{b['fetch_and_check_ms']:.3f}", "")
    table.add_row("peak RSS (MB)", f"<= {result['in_process']['peak_rss_mb_upper_bound']} (with the full node)",
                  f"{result['http']['peak_rss_mb']} (light client alone)", "")
    Console(stderr=True).print(table)


def main(argv: Sequence[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.light", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the result object last, as JSON")
    parser.add_argument("--quick", action="store_true", help="a 1,000-block chain instead of 5,000")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--client", nargs=3, metavar=("URL", "GENESIS", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        trio.run(serve_database, args.serve[0], int(args.serve[1]))
        return None
    if args.client:
        trio.run(client_process, args.client[0], args.client[1], int(args.client[2]))
        return None
    result = run(args.quick)
    write_result(result, RESULTS_PATH)
    print_table(result)
    if args.json:
        print_result_line(result)
    return result


if __name__ == "__main__":
    main()
