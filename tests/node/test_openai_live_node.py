"""The unmodified `openai` SDK and `p2p_inference` against a real 4-node network with worker duties.

Three validators serve and audit jobs on one shared default model; the fourth
is the node the clients talk to over HTTP. The completion comes from a worker
over p2p, and its job shows up on chain, answered, audited and accepted, by
the worker the response named (the gateway reads the chain's assignment before
it answers, whatever it predicted).
"""
from __future__ import annotations

import functools
import json
import shutil
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import openai
import pytest
import trio

from economy import compute_model_name, get_job, get_worker_record
from genesis import DEFAULT_MODEL_CARD
from inference.worker import Worker
from node.client import p2p_inference
from node.duties import Duties
from tests.node.nodekit import (
    JS_DIR,
    VALIDATOR_KEYS,
    install_js_packages,
    make_node,
    make_test_genesis,
    start_node,
    wait_for_peers,
)

pytestmark = pytest.mark.model

STREAMS = 3  # streamed requests back to back: each one's result and audit moves the loads the next is routed on


async def test_openai_sdk_and_p2p_inference_through_a_live_network(tmp_path):
    async with live_network(tmp_path) as (front, workers, worker):
        await run_python_flows(front, workers, worker)


@asynccontextmanager
async def live_network(tmp_path):
    """Three duty nodes sharing one model and an HTTP front node, all registered as workers: (front, workers, model)."""
    genesis = make_test_genesis()
    with trio.fail_after(150):
        async with trio.open_nursery() as outer:
            worker = await outer.start(Worker().run)  # one model shared by the duty nodes; it outlives them
            async with trio.open_nursery() as nursery:
                nodes = []
                for index, key in enumerate(VALIDATOR_KEYS):
                    node = make_node(genesis, tmp_path / f"n{index}", key, [str(n.p2p.enode) for n in nodes],
                                     duties=Duties(worker, start_worker=False) if index < 3 else None,
                                     block_interval=0.2, http=("127.0.0.1", 0) if index == 3 else None)
                    nodes.append(await start_node(nursery, node))
                workers, front = nodes[:3], nodes[3]
                await wait_for_peers(nodes, 3)
                while not all(get_worker_record(front.chain.state, n.address) for n in workers):
                    await trio.sleep(0.1)
                yield front, workers, worker
                nursery.cancel_scope.cancel()
            outer.cancel_scope.cancel()


def stream_chat(client: openai.OpenAI, content: str) -> tuple[list, float]:
    """The chunks of one streamed chat, and the seconds from the request to the first content."""
    started = time.perf_counter()
    first = None
    chunks = []
    for chunk in client.chat.completions.create(model="default", messages=[{"role": "user", "content": content}],
                                                max_tokens=8, stream=True, stream_options={"include_usage": True}):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        chunks.append(chunk)
    return chunks, first


async def run_python_flows(front, workers, worker) -> None:
    client = openai.OpenAI(base_url=front.http_url + "/v1", api_key="x", max_retries=0)
    models = await trio.to_thread.run_sync(client.models.list)
    assert [m.id for m in models.data] == ["default", compute_model_name(DEFAULT_MODEL_CARD)]
    assert models.data[1].model_extra["sha256"] == worker.model_sha256.hex()

    first_token_seconds = []
    for index in range(STREAMS):
        chunks, first = await trio.to_thread.run_sync(stream_chat, client, f"Say hello in one word, #{index}.")
        first_token_seconds.append(first)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert text.strip() and len(finals) == 1 and finals[0] in ("stop", "length")
        usage = chunks[-1].usage  # the last chunk, with no choices, as OpenAI sends it
        assert not chunks[-1].choices and usage.prompt_tokens > 0 and 1 <= usage.completion_tokens <= 8
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        info = chunks[0].model_extra["magicoin"]
        assert {c.model_extra["magicoin"]["worker"] for c in chunks} == {info["worker"]}
        # Already on chain when the first chunk came, assigned to the worker every chunk names (unless a
        # starved machine made that worker miss its deadline since, and the chain moved the job on).
        record = get_job(front.chain.state, bytes.fromhex(info["job_id"][2:]))
        assert record is not None and ("0x" + record.worker.hex() == info["worker"] or record.attempts > 1), (
            record, info)
    print(f"\ntime to first token, {STREAMS} streamed chats (s): "
          + " ".join(f"{seconds:.3f}" for seconds in first_token_seconds)
          + f"; gateway switched workers {front.inference.counters['worker_switched']} times"
          " (noisy: 2 shared cores)")

    result = await trio.to_thread.run_sync(functools.partial(
        p2p_inference, "Name a colour.", rpc_url=front.http_url, max_tokens=8, wait_for_verification=True,
        timeout=90, poll_interval=0.2))
    assert result.text.strip()
    assert result.job["status"] == "accepted", result.job
    assert result.job["requester"] == "0x" + front.address.hex()
    if result.job["attempts"] == "0x1":  # (a job reassigned after a missed deadline has a new worker)
        assert result.job["worker"] == "0x" + result.worker.hex()  # the chain's worker is the one named
    assert result.job["worker"] in {"0x" + n.address.hex() for n in workers}
    if result.job["audited"]:
        assert result.job["attestations"]


def run_js_flow(base_url: str, tmp_path: Path) -> dict:
    plan_path = tmp_path / "openai_plan.json"
    plan_path.write_text(json.dumps({"baseURL": base_url, "prompt": "Name a colour.", "maxTokens": 8}))
    done = subprocess.run(["node", str(JS_DIR / "openai_flow.mjs"), str(plan_path)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("node") is None or shutil.which("npm") is None, reason="needs node and npm")
async def test_openai_js_sdk_through_a_live_network(tmp_path):
    await trio.to_thread.run_sync(install_js_packages, "openai")
    async with live_network(tmp_path) as (front, _workers, worker):
        results = await trio.to_thread.run_sync(run_js_flow, front.http_url + "/v1", tmp_path)
        name = compute_model_name(DEFAULT_MODEL_CARD)
        assert results["models"] == [{"id": "default", "sha256": None}, {"id": name, "sha256": worker.model_sha256.hex()}]
        assert results["retrieved"]["byId"]["id"] == name == results["retrieved"]["bySha"]["id"]
        assert results["missing"]["error"]["status"] == 404, results["missing"]
        assert results["missing"]["error"]["code"] == "model_not_found"

        chat = results["chat"]
        assert "error" not in chat, chat
        assert chat["text"].strip() and chat["contentChunks"] >= 1 and len(chat["finishReasons"]) == 1
        usage = chat["usage"]
        assert usage["prompt_tokens"] > 0 and 1 <= usage["completion_tokens"] <= 8
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        record = get_job(front.chain.state, bytes.fromhex(chat["magicoin"]["job_id"][2:]))
        assert "0x" + record.worker.hex() == chat["magicoin"]["worker"] or record.attempts > 1  # the chain's worker

        completion, streamed = results["completion"], results["completionStream"]
        assert "error" not in completion and "error" not in streamed, (completion, streamed)
        assert completion["object"] == "text_completion" and completion["magicoin"]["prompt_as"] == "user_message"
        # Greedy and the same single user turn: every run of the prompt gives the same text.
        assert completion["text"] == streamed["text"] == chat["text"] and completion["text"].strip()
        assert [completion["finishReason"]] == streamed["finishReasons"] == chat["finishReasons"]
        assert completion["usage"] == usage
