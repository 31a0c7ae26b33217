"""Two models on one devnet, one worker generating on a separately started llama.cpp server (issue 12's "done").

Real `magicoin node` processes (`--models default,<Q8_0 requantisation>` as `make devnet` takes it), node0's
worker on `python -m llama_cpp.server` over loopback (`--worker.backend openai:URL`); chat jobs for both
models through /v1/chat/completions by model name. Every job must be served, audited by committees that
hold its model, and accepted: all workers are honest, so no output may be rejected.
"""
from __future__ import annotations

import time

import httpx
import pytest

from inference.models import get_default_model_path, make_requantized_model
from node.devnet import rpc_call
from tests.inference.llama_server import Server
from tests.node.devnet_helpers import make_test_config, running_devnet

pytestmark = pytest.mark.model
PROMPTS = ("Name three colours.", "Quelle est la capitale de l'Italie ?", "Write a haiku about rain.")


def wait_for_served_models(url: str, count: int, timeout: float) -> list[dict]:
    deadline = time.monotonic() + timeout
    served: list[dict] = []
    while time.monotonic() < deadline:
        served = [m for m in httpx.get(url + "/v1/models", timeout=5).json()["data"] if m["id"] != "default"]
        if len(served) >= count:
            return served
        time.sleep(1)
    raise AssertionError(f"models served after {timeout} s: {served}")


def wait_until_final(url: str, job_ids: list[str], timeout: float) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    jobs: dict[str, dict] = {}
    while time.monotonic() < deadline:
        jobs = {job_id: rpc_call(url, "muagic_getJob", [job_id]) for job_id in job_ids}
        if all(job["final"] for job in jobs.values()):
            return jobs
        time.sleep(1)
    raise AssertionError(f"jobs not final after {timeout} s: {[(j['status'], j['audited']) for j in jobs.values()]}")


def test_two_models_one_on_a_llama_cpp_server_are_served_audited_and_rewarded(tmp_path):
    second = make_requantized_model(get_default_model_path(), tmp_path / "smollm2-q8_0.gguf").path
    server = Server(get_default_model_path())
    try:
        # node0 serves the default model on the server; nodes 1-3 serve the second model and hold the default
        # one for audits (and node0 holds theirs): every default job is node0's, every job has holders to audit.
        config = make_test_config(tmp_path / "devnet", worker=True, models=("default", str(second), str(second),
                                                                             str(second)),
                                  backend=f"openai:{server.url}")
        with running_devnet(config, timeout=240) as devnet:
            url = devnet.rpc_urls[1]
            served = wait_for_served_models(url, 2, 240)
            workers = {w["address"]: w for w in rpc_call(url, "muagic_getWorkers")}
            node0 = workers["0x" + devnet.nodes[0].address.hex()]
            assert node0["engine"].startswith("backend=openai")  # declared in its registration
            status = rpc_call(devnet.rpc_urls[0], "muagic_status")
            assert status["workerBackend"]["backendUrl"].startswith(server.url.removesuffix("/v1"))
            jobs = []
            with httpx.Client(timeout=300) as client:
                for prompt in PROMPTS:
                    for model in served:
                        body = {"model": model["id"], "max_tokens": 24,
                                "messages": [{"role": "user", "content": prompt}]}
                        response = client.post(url + "/v1/chat/completions", json=body)
                        assert response.status_code == 200, response.text
                        completion = response.json()
                        assert completion["choices"][0]["message"]["content"].strip()
                        jobs.append((model, completion["magicoin"]))
            final = wait_until_final(url, [info["job_id"] for _, info in jobs], 240)
            for model, info in jobs:
                job = final[info["job_id"]]
                assert job["model"] == "0x" + model["sha256"]
                assert job["status"] == "accepted", (model["id"], job)  # 0 honest outputs rejected
            default_workers = {info["worker"] for model, info in jobs if model["sha256"] == get_default_sha()}
            assert default_workers == {"0x" + devnet.nodes[0].address.hex()}  # all served through the server
            audited = [final[info["job_id"]] for _, info in jobs if final[info["job_id"]]["audited"]]
            for job in audited:  # committees hold the job's model: members are the other model's servers too
                assert job["committee"] and all(seat["address"] != job["worker"] for seat in job["committee"])
            rewarded = [w for w in rpc_call(url, "muagic_getWorkers") if int(w["recentRewards"], 16) > 0]
            assert {w["model"] for w in rewarded} == {"0x" + m["sha256"] for m in served}
    finally:
        server.stop()


def get_default_sha() -> str:
    from inference.models import DEFAULT_MODEL_SHA256

    return DEFAULT_MODEL_SHA256.hex()
