"""Two models on one devnet, one worker on a separately started llama.cpp server: jobs accepted per model.

    python -m benchmarks.models [--quick] [--json]

The setup issue 12 names: 4 `magicoin node` processes on loopback
(`make devnet ARGS="--models default,PATH,PATH,PATH"`): node0 serving the default
model, nodes 1-3 a Q8_0 requantisation of it made here, each holding the other
model for audits; node0 generates its jobs on llama-cpp-python's OpenAI-compatible server
(`python -m llama_cpp.server`, started here on loopback with the default GGUF;
`--backend openai:URL`). Chat jobs go in through /v1/chat/completions, by model
name, alternating models; then every job is followed to its final status.
All workers are honest, so every `failed_audit` is an honest output rejected:
the figure must be 0. Writes `benchmarks/results/models.json`.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from benchmarks.results_io import finish_benchmark
from node.devnet import Devnet, make_free_config, rpc_call

RESULTS_PATH = Path(__file__).parent / "results" / "models.json"
PROMPTS = ("Name three colours.", "What is the capital of France?", "Write a haiku about rain.",
           "Quelle est la capitale de l'Italie ?", "List two fruits.", "Count from one to five.")


def get_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_second_model(directory: Path) -> Path:
    from inference.models import get_default_model_path, make_requantized_model

    return make_requantized_model(get_default_model_path(), directory / "smollm2-135m-q8_0.gguf").path


def start_llama_server(model: Path, port: int, log: Path) -> subprocess.Popen:
    """llama-cpp-python's own OpenAI-compatible server, as a user would start it."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", "1", "--n_ctx", "2048", "--logits_all", "false"]
    return subprocess.Popen(command, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_for_server(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}")
        try:
            if httpx.get(url + "/models", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server not serving {url} after {timeout} s")


def wait_for_models(url: str, count: int, timeout: float) -> list[dict]:
    """/v1/models once `count` models are served by registered workers."""
    deadline = time.monotonic() + timeout
    models: list[dict] = []
    while time.monotonic() < deadline:
        models = [m for m in httpx.get(url + "/v1/models", timeout=5).json()["data"] if m["id"] != "default"]
        if len(models) >= count:
            return models
        time.sleep(1)
    raise RuntimeError(f"only {len(models)} models served after {timeout} s")


def send_chat(client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    response = client.post(url + "/v1/chat/completions", json=body)
    payload = response.json()
    if response.status_code != 200:
        return {"model": model, "error": payload.get("error", {}).get("message", response.text[:200])}
    info = payload["magicoin"]
    return {"model": model, "job": info["job_id"], "worker": info["worker"],
            "tokens": payload["usage"]["completion_tokens"]}


def follow_jobs(url: str, jobs: list[dict], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = [j for j in jobs if "job" in j]
    while pending and time.monotonic() < deadline:
        for job in list(pending):
            record = rpc_call(url, "muagic_getJob", [job["job"]])
            job["status"], job["audited"] = record["status"], record["audited"]
            if record["final"]:
                pending.remove(job)
        time.sleep(1)


def summarise(jobs: list[dict], models: list[dict]) -> list[dict]:
    rows = []
    for model in models:
        mine = [j for j in jobs if j["model"] == model["id"]]
        statuses = Counter(j.get("status", "refused" if "error" in j else "unknown") for j in mine)
        rows.append({"model": model["id"], "sha256": model["sha256"], "requests": len(mine),
                     "accepted": statuses["accepted"], "failed_audit": statuses["failed_audit"],
                     "unverified": statuses["unverified"], "expired": statuses["expired"],
                     "refused": statuses["refused"], "audited": sum(1 for j in mine if j.get("audited")),
                     "workers": sorted({j["worker"] for j in mine if "worker" in j}), "statuses": dict(statuses)})
    return rows


def run_benchmark(quick: bool) -> dict:
    jobs_per_model = 4 if quick else 12
    max_tokens = 24 if quick else 48
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="magicoin-models-") as tmp:
        tmp_path = Path(tmp)
        second = make_second_model(tmp_path)
        port = get_free_port()
        backend_url = f"http://127.0.0.1:{port}/v1"
        from inference.models import get_default_model_path

        server = start_llama_server(get_default_model_path(), port, tmp_path / "llama_server.log")
        devnet = None
        try:
            wait_for_server(backend_url, server, 120)
            # node0 serves the default model on the server (so every default job goes through it); nodes 1-3
            # serve the second model, and every node holds the other model for audits.
            devnet = Devnet(make_free_config(tmp_path / "devnet", 4, worker=True,
                                             models=("default", str(second), str(second), str(second)),
                                             backend=f"openai:{backend_url}"))
            devnet.start()
            devnet.wait_until_serving(timeout=240)
            url = devnet.rpc_urls[1]
            models = wait_for_models(url, 2, 240)
            workers = rpc_call(url, "muagic_getWorkers")
            jobs = []
            started = time.monotonic()
            with httpx.Client(timeout=300) as client:
                for index in range(jobs_per_model):
                    for model in models:
                        jobs.append(send_chat(client, url, model["id"], PROMPTS[index % len(PROMPTS)], max_tokens))
            follow_jobs(url, jobs, 300)
            seconds = time.monotonic() - started
        finally:
            codes = devnet.stop() if devnet is not None else {}
            server.terminate()
            server.wait(15)
    rows = summarise(jobs, models)
    return {
        "benchmark": "models", "quick": quick, "seconds": round(seconds, 1),
        "setup": "4 `magicoin node` processes (--models default,Q8,Q8,Q8 with Q8 a Q8_0 requantisation), node0 "
                 "generating on "
                 "`python -m llama_cpp.server` (default GGUF, 1 thread) via --worker.backend openai:URL; chat jobs "
                 f"through /v1/chat/completions by model name, {jobs_per_model} per model, max_tokens {max_tokens}",
        "cpu_count": os.cpu_count(),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
        "workers": [{"address": w.get("address"), "model": w.get("model"), "engine": w.get("engine")} for w in workers],
        "per_model": rows,
        "honest_rejected": sum(row["failed_audit"] for row in rows),
        "node_exit_codes": {f"node{i}": code for i, code in codes.items()},
        "targets": {"honest_rejected": 0, "honest_rejected_met": sum(row["failed_audit"] for row in rows) == 0,
                    "both_models_accepted_met": all(row["accepted"] > 0 for row in rows)},
    }


def print_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"models: two models on a 4-node devnet, node0 on llama_cpp.server "
                        f"({'quick' if report['quick'] else 'full'})")
    for column in ("model", "requests", "accepted", "audited", "failed audit", "unverified", "expired", "refused",
                   "workers"):
        table.add_column(column)
    for row in report["per_model"]:
        table.add_row(row["model"], str(row["requests"]), str(row["accepted"]), str(row["audited"]),
                      str(row["failed_audit"]), str(row["unverified"]), str(row["expired"]), str(row["refused"]),
                      ", ".join(w[:10] for w in row["workers"]))
    console = Console(stderr=True, width=160)
    console.print(table)
    console.print(f"honest outputs rejected: {report['honest_rejected']} (target 0); load average before "
                  f"{report['load_average']['before']}, after {report['load_average']['after']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the JSON report last on stdout")
    parser.add_argument("--quick", action="store_true", help="fewer jobs, for CI")
    args = parser.parse_args(argv)
    report = run_benchmark(args.quick)
    return finish_benchmark(report, RESULTS_PATH, print_table, args.json)


if __name__ == "__main__":
    main()
