"""The unmodified `openai` SDK against /v1 on a real socket, served by the default model through a gateway.

The gateway records each request on chain (a signed inference_request, routed
by `economy.router`), so the completion's id names a job that `muagic_getJob`
then shows; the text must be exactly what the model produces greedily.
"""
from __future__ import annotations

import functools

import httpx
import openai
import pytest
import trio

from node.http import serve_http
from tests.node.conftest_rpc import LocalModelGateway, RPCTestNode, register_worker

pytestmark = pytest.mark.model

PROMPT = [{"role": "user", "content": "Name one colour of the rainbow."}]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def model():
    from inference.engine import load_model

    local = load_model()
    yield local
    local.close()


@pytest.fixture(scope="module")
def expected_text(model):
    prompt = model.tokenize_chat([(m["role"], m["content"]) for m in PROMPT])
    tokens = [t for t in model.iter_greedy(prompt, MAX_TOKENS) if not model.is_end_of_generation(t)]
    return model.detokenize(tokens)


@pytest.fixture(scope="module")
def expected_run(model):
    """The greedy run a worker makes for PROMPT: its tokens (end-of-generation included) and prompt size."""
    prompt = model.tokenize_chat([(m["role"], m["content"]) for m in PROMPT])
    return list(model.iter_greedy(prompt, MAX_TOKENS)), len(prompt)


@pytest.fixture
async def served(tmp_path, nursery, model):
    node = RPCTestNode(tmp_path / "db")
    register_worker(node, model.sha256)
    node.inference = LocalModelGateway(node, model, nursery)
    nursery.start_soon(node.run_producer)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    yield node, url
    nursery.cancel_scope.cancel()


async def in_thread(fn, *args, **kwargs):
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


async def get_job(url: str, job_id: str) -> dict | None:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = (await http.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "muagic_getJob",
                                             "params": [job_id]})).json()
    return answer["result"]


def assert_usage(usage, expected_run) -> None:
    """The worker's own counts: the rendered prompt, and every generated token (end-of-generation included)."""
    tokens, prompt_tokens = expected_run
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt_tokens, len(tokens))
    assert usage.total_tokens == prompt_tokens + len(tokens)


async def test_openai_sdk_lists_models_and_completes_with_and_without_streaming(served, model, expected_text,
                                                                                expected_run):
    _node, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)

    models = await in_thread(client.models.list)
    assert [m.id for m in models.data] == ["default", "SmolLM2-135M-Instruct-Q4_1"]  # the model card's name
    assert models.data[1].model_extra == {"sha256": model.sha256.hex(), "context_length": 2048}

    completion = await in_thread(client.chat.completions.create, model="SmolLM2-135M-Instruct-Q4_1", messages=PROMPT,
                                 max_tokens=MAX_TOKENS)
    text = completion.choices[0].message.content
    assert text == expected_text and text.strip()
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert_usage(completion.usage, expected_run)
    info = completion.model_extra["magicoin"]
    assert completion.id == "job-" + info["job_id"][2:]
    assert completion.model == model.sha256.hex()

    def stream():
        chunks = list(client.chat.completions.create(model=model.sha256.hex(), messages=PROMPT,
                                                     max_tokens=MAX_TOKENS, stream=True,
                                                     stream_options={"include_usage": True}))
        return chunks

    chunks = await in_thread(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == expected_text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # really streamed
    assert not chunks[-1].choices and chunks[-1].usage is not None  # the usage chunk comes last, as OpenAI's
    assert_usage(chunks[-1].usage, expected_run)
    assert all(c.usage is None for c in chunks[:-1])
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        completion.choices[0].finish_reason]
    stream_job = chunks[0].model_extra["magicoin"]["job_id"]
    assert stream_job != info["job_id"] and chunks[0].id == "job-" + stream_job[2:]

    # Both requests are jobs on chain, assigned to the worker the response named.
    with trio.fail_after(20):
        while (job := await get_job(url, info["job_id"])) is None or job["worker"] is None:
            await trio.sleep(0.05)
    assert job["worker"] == info["worker"] and job["requestTx"] == info["request_tx"]
    assert job["messages"] == PROMPT and job["maxTokens"] == hex(MAX_TOKENS)
    with trio.fail_after(20):
        while await get_job(url, stream_job) is None:
            await trio.sleep(0.05)


async def test_openai_errors(served):
    node, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        await in_thread(client.chat.completions.create, model="ab" * 32, messages=PROMPT)
    with pytest.raises(openai.BadRequestError) as caught:
        await in_thread(client.chat.completions.create, model="default", messages=[{"role": "robot", "content": "x"}])
    assert caught.value.body["param"] == "messages[0].role"
    with pytest.raises(openai.BadRequestError):
        await in_thread(client.chat.completions.create, model="default", messages=PROMPT, max_tokens=100_000)
    with pytest.raises(openai.BadRequestError):
        await in_thread(client.chat.completions.create, model="default", messages=[])
    node.inference = None
    with pytest.raises(openai.InternalServerError):  # 503: this node serves no inference
        await in_thread(client.models.list)
    assert len(node.mempool) == 0 and node.submitted == []  # nothing refused reached the chain


async def test_no_worker_is_503_and_a_worker_failing_mid_stream_is_an_error_event(tmp_path, nursery, model):
    from node.exceptions import WorkerUnreachable

    node = RPCTestNode(tmp_path / "db")  # no worker registered yet
    gateway = node.inference = LocalModelGateway(node, model, nursery)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        await in_thread(client.chat.completions.create, model="default", messages=PROMPT)
    assert caught.value.status_code == 503 and caught.value.body["code"] == "NoWorkerAvailable"
    assert len(node.mempool) == 0  # refused before anything was signed

    register_worker(node, model.sha256)
    original = gateway.stream

    async def breaking_stream(job_id, chat, max_tokens):
        count = 0
        async for chunk in original(job_id, chat, max_tokens):
            yield chunk
            count += 1
            if count == 3:
                raise WorkerUnreachable("stream broke", got=count, expected="more tokens")

    gateway.stream = breaking_stream
    received = []

    def stream():
        for chunk in client.chat.completions.create(model="default", messages=PROMPT, max_tokens=MAX_TOKENS,
                                                    stream=True):
            received.append(chunk)

    with pytest.raises(openai.APIError) as caught:
        await in_thread(stream)
    assert "did not complete" in caught.value.message
    assert caught.value.code == "WorkerUnreachable"  # the gateway's typed error, named in OpenAI's error shape
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices)  # the part that came
    # The server is still serving after the failure.
    assert [m.id for m in (await in_thread(client.models.list)).data][0] == "default"


async def test_models_retrieve_by_id_name_and_sha256(served, model):
    _node, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    listed = {m.id: m for m in (await in_thread(client.models.list)).data}
    for wanted in ("default", "SmolLM2-135M-Instruct-Q4_1", model.sha256.hex(), "0x" + model.sha256.hex().upper()):
        retrieved = await in_thread(client.models.retrieve, wanted)
        canonical = "default" if wanted == "default" else "SmolLM2-135M-Instruct-Q4_1"
        assert retrieved.id == canonical and retrieved.model_dump() == listed[canonical].model_dump()
    with pytest.raises(openai.NotFoundError) as caught:
        await in_thread(client.models.retrieve, "ab" * 32)
    assert caught.value.body["code"] == "model_not_found" and caught.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as caught:  # an id far too long is named by an excerpt only
        await in_thread(client.models.retrieve, "m" * 5000)
    assert len(caught.value.body["message"]) < 200


async def test_legacy_completions_run_the_prompt_as_one_user_message(served, model, expected_text, expected_run):
    _node, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    prompt = PROMPT[0]["content"]
    completion = await in_thread(client.completions.create, model="default", prompt=prompt, max_tokens=MAX_TOKENS)
    assert completion.object == "text_completion" and completion.id.startswith("job-")
    # The same job as the chat with that one user message: same greedy text, same counts.
    assert completion.choices[0].text == expected_text
    assert_usage(completion.usage, expected_run)
    tokens, _ = expected_run
    reason = "stop" if model.is_end_of_generation(tokens[-1]) else "length"
    assert completion.choices[0].finish_reason == reason
    info = completion.model_extra["magicoin"]
    assert info["prompt_as"] == "user_message"
    with trio.fail_after(20):
        while (job := await get_job(url, info["job_id"])) is None:
            await trio.sleep(0.05)
    assert job["messages"] == PROMPT  # what the chain recorded for the raw prompt

    def stream():
        return list(client.completions.create(model="default", prompt=[prompt], max_tokens=MAX_TOKENS, stream=True,
                                              stream_options={"include_usage": True}))

    chunks = await in_thread(stream)
    assert all(c.object == "text_completion" for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == expected_text
    assert len([c for c in chunks if c.choices and c.choices[0].text]) > 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [reason]
    assert_usage(chunks[-1].usage, expected_run)

    # What would change the text's meaning is refused, not ignored.
    for extra in ({"echo": True}, {"suffix": "end"}, {"best_of": 2}, {"logprobs": 2}):
        with pytest.raises(openai.BadRequestError) as caught:
            await in_thread(client.completions.create, model="default", prompt=prompt, **extra)
        assert caught.value.body["param"] == next(iter(extra))
    for bad in (["a", "b"], [1, 2, 3], None):
        with pytest.raises(openai.BadRequestError) as caught:
            await in_thread(client.completions.create, model="default", prompt=bad)
        assert caught.value.body["param"] == "prompt"
