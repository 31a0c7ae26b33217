"""Generation backends for real: the worker against llama-cpp-python's own OpenAI-compatible server.

The server (`python -m llama_cpp.server`) runs as a subprocess on loopback,
serving the embedded default GGUF (or a requantisation of it); the worker
keeps its own copy of the model to render prompts, tokenise and verify. Also
here: engine settings (threads, GPU layers, context, batch) and their node
flags, and the typed errors a misbehaving server gets.
"""
from __future__ import annotations

import functools
import json
import logging

import httpx
import llama_cpp
import pytest
import trio

from inference.backends import JobRun, OpenAIBackend, SSEParser, get_backend_prompt_text, parse_backend_spec
from inference.calibration import CALIBRATION_PROMPTS
from inference.engine import EngineSettings, load_model, supports_gpu_offload
from inference.exceptions import (
    BackendError,
    BackendModelMismatch,
    BackendModelNotServed,
    BackendProtocolError,
    BackendResponseTooLarge,
    BackendServerError,
    BackendStreamBroken,
    BackendTimeout,
    BackendUnreachable,
    EngineSettingsError,
    JobDeadlineExceeded,
)
from inference.jobs import JobSpec, get_prompt_tokens
from inference.models import DEFAULT_MODEL_SHA256, FTYPE_Q8_0, get_default_model_path, make_requantized_model
from inference.worker import Worker
from tests.inference.llama_server import Server, get_free_port

pytestmark = pytest.mark.model

FRENCH = "Quelle est la capitale de l'Italie ?"


# --- a real llama-cpp-python server ------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    running = Server(get_default_model_path())
    yield running
    running.stop()


@pytest.fixture(scope="module")
def other_model(tmp_path_factory):
    """A second model: the default GGUF requantised to Q4_0 (same tokenizer and template, other weights)."""
    return make_requantized_model(get_default_model_path(), tmp_path_factory.mktemp("models") / "smol-q4_0.gguf",
                                  llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0)


@pytest.fixture
async def remote_worker(model, server):
    """A started worker on the server (its capacity declared: the first test measures it)."""
    async with trio.open_nursery() as nursery:
        worker = await nursery.start(Worker(model=model, backend=OpenAIBackend(server.url), declared_capacity=50).run)
        yield worker
        nursery.cancel_scope.cancel()


def make_job(model, chat, max_tokens):
    return JobSpec.from_chat(chat, model.sha256, max_tokens)


# --- the worker on an OpenAI-compatible server -------------------------------------------------


async def test_remote_worker_passes_the_start_up_check_and_is_verified(model, server, verifier, nursery):
    """Probes accepted, capacity measured through the server, and every output accepted by the local verifier."""
    remote_worker = await nursery.start(Worker(model=model, backend=OpenAIBackend(server.url)).run)
    probes = remote_worker.backend_probes
    assert len(probes) == 3 and all(p.accepted and p.score_ppm == 1_000_000 for p in probes), probes
    assert all(p.server_prompt_tokens == p.local_prompt_tokens for p in probes)  # same tokenizer and template
    stats = remote_worker.statistics()
    assert stats.backend == "openai" and stats.backend_url.endswith("/v1") and stats.backend_model
    assert stats.capacity_tokens_per_second > 0
    description = remote_worker.describe()
    assert description["backend"] == "openai" and description["ctx"] == 2048 and description["batch"] == 512
    assert len(description["probes"]) == 3

    # The French prompt (CALIBRATION_PROMPTS[27]), code, a system turn, multi-turn, German.
    chats = [CALIBRATION_PROMPTS[i] for i in (27, 1, 6, 40, 42, 44)]
    assert chats[0] == (("user", FRENCH),)
    same = 0
    for chat in chats:
        job = make_job(model, chat, 32)
        output = await remote_worker.complete(job)
        verdict = verifier.evaluate(job, output.tokens)
        assert verdict.accepted, (chat, output.text, verdict)
        same += output.tokens == tuple(model.iter_greedy(get_prompt_tokens(model, job), 32))
    assert same >= len(chats) // 2  # mostly the very tokens local decoding gives; the rest differ within tolerance


async def test_streaming_through_worker_generate(remote_worker, model, verifier):
    job = make_job(model, (("user", FRENCH),), 40)
    async with remote_worker.generate(job) as stream:
        pieces = [piece async for piece in stream]
    output = stream.output
    assert pieces and len(pieces) <= job.max_tokens
    assert [p.index for p in pieces] == list(range(len(pieces)))
    # Streamed token ids are provisional; the text is the server's, and the claim spells the same text.
    assert "".join(p.text for p in pieces) == output.text
    assert stream.prompt_tokens == len(get_prompt_tokens(model, job))
    assert verifier.evaluate(job, output.tokens).accepted


async def test_a_job_deadline_cancels_the_remote_job(remote_worker, model):
    job = make_job(model, (("user", "Write a long essay about the history of rivers."),), 1500)
    with pytest.raises(JobDeadlineExceeded) as caught:
        await remote_worker.complete(job, timeout=0.5)
    assert caught.value.tokens_done < 1500
    with trio.fail_after(10):
        while remote_worker.statistics().jobs_running:
            await trio.sleep(0.01)
    # The server noticed the client leaving; the next job is served at once.
    with trio.fail_after(30):
        output = await remote_worker.complete(make_job(model, (("user", "Say hi."),), 4))
    assert output.tokens


async def test_a_server_with_another_model_is_refused(model, other_model):
    server = Server(other_model.path)
    try:
        worker = Worker(model=model, backend=OpenAIBackend(server.url))
        async with trio.open_nursery() as nursery:
            with pytest.raises(BackendModelMismatch) as caught:
                await nursery.start(worker.run)
        assert caught.value.got and min(caught.value.got) < 0.98
    finally:
        server.stop()


async def test_a_server_dying_mid_job_is_a_typed_error_and_the_worker_keeps_running(model, verifier):
    server = Server(get_default_model_path())
    try:
        async with trio.open_nursery() as nursery:
            worker = await nursery.start(
                Worker(model=model, backend=OpenAIBackend(server.url), declared_capacity=10).run)
            job = make_job(model, (("user", "Write a long essay about forests."),), 1500)
            with pytest.raises(BackendStreamBroken):
                async with worker.generate(job) as stream:
                    async for piece in stream:
                        if piece.index == 2:
                            server.kill()
            with pytest.raises(BackendUnreachable):
                await worker.complete(make_job(model, (("user", "Hi"),), 4))
            assert worker.statistics().jobs_failed == 2
            # The local model still serves the node's other duties.
            assert (await worker.verify(job, [model.eos_token])).n_tokens == 1
            nursery.cancel_scope.cancel()
    finally:
        server.stop()


async def test_nothing_listening_is_a_typed_error_at_start(model):
    worker = Worker(model=model, backend=OpenAIBackend(f"http://127.0.0.1:{get_free_port()}"))
    async with trio.open_nursery() as nursery:
        with pytest.raises(BackendUnreachable):
            await nursery.start(worker.run)


async def test_a_silent_server_times_out(model):
    """A server that accepts the connection and never answers hits the idle timeout, not a hang."""

    async def never_answer(stream):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        worker = Worker(model=model, backend=OpenAIBackend(f"http://127.0.0.1:{port}", idle_timeout=0.5))
        with trio.fail_after(10), pytest.raises(BackendTimeout):
            await nursery.start(worker.run)
        nursery.cancel_scope.cancel()


# --- a misbehaving server: typed errors --------------------------------------------------------


def make_mock_backend(handler, **options) -> OpenAIBackend:
    return OpenAIBackend("http://backend.test/v1", transport=httpx.MockTransport(handler), **options)


def sse(*events) -> bytes:
    return b"".join(b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events)


MODELS = {"object": "list", "data": [{"id": "smol", "object": "model"}]}


def answer(models=MODELS, completions=None, status=200):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=models) if isinstance(models, dict) else httpx.Response(200, content=models)
        return httpx.Response(status, content=completions)

    return handler


@pytest.mark.parametrize("models, error", [
    (b"<html>not json</html>", BackendProtocolError),
    ({"data": "smol"}, BackendProtocolError),
    ({"data": [{"name": "smol"}]}, BackendProtocolError),
    ({"data": []}, BackendModelNotServed),
    (b"[" * 100_000, BackendProtocolError),
])
async def test_a_bad_model_list_is_refused(model, models, error):
    with pytest.raises(error):
        await make_mock_backend(answer(models)).start(model)


async def test_the_backend_model_must_be_listed(model):
    with pytest.raises(BackendModelNotServed) as caught:
        await make_mock_backend(answer(), model_name="llama3").start(model)
    assert caught.value.got == ["smol"] and caught.value.expected == "llama3"


@pytest.mark.parametrize("body, status, error", [
    (b'{"error": "boom"}', 500, BackendServerError),
    (sse({"error": {"message": "out of memory"}}), 200, BackendServerError),
    (sse(b"{not json"), 200, BackendProtocolError),
    (sse({"choices": [{"text": 7}]}), 200, BackendProtocolError),
    (sse({"choices": [{"text": "Hi", "finish_reason": "content_filter"}]}, b"[DONE]"), 200, BackendProtocolError),
    (sse({"choices": [{"text": "Hi", "finish_reason": None}]}), 200, BackendStreamBroken),
    (sse(*[{"choices": [{"text": "word " * 200, "finish_reason": None}]}] * 40), 200, BackendResponseTooLarge),
    (b"data: " + b"x" * (70 << 10), 200, BackendResponseTooLarge),
])
async def test_a_bad_completion_stream_is_a_typed_error(model, body, status, error):
    backend = make_mock_backend(answer(completions=body, status=status))
    await backend.start(model)
    run = JobRun(model, trio.CapacityLimiter(1), make_job(model, (("user", "Hi"),), 8), lambda *piece: None)
    with pytest.raises(error) as caught:
        await backend.generate(run)
    assert isinstance(caught.value, BackendError) and caught.value.got is not None
    assert len(run.tokens) <= 8
    await backend.aclose()


def test_sse_parser_handles_comments_fields_and_split_chunks():
    parser = SSEParser()
    stream = b": ping\r\nevent: x\r\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata: [DONE]\n\n"
    events = []
    for i in range(len(stream)):
        events += parser.feed(stream[i:i + 1])
    assert events == ['{"a":\n1}', "[DONE]"]


def test_backend_prompt_text_tokenises_to_the_protocol_prompt(model):
    chat = (("system", "Be brief."), ("user", FRENCH))
    text = get_backend_prompt_text(model, chat)
    # As a llama.cpp front end tokenises a completion prompt: specials parsed, BOS when the vocabulary asks.
    server_tokens = ([model.bos_token] if model.adds_bos else []) + model._tokenize(
        text.encode(), add_bos=False, parse_special=True)
    assert server_tokens == model.tokenize_chat(chat)


def test_backend_specs():
    assert parse_backend_spec("local").kind == "local"
    remote = parse_backend_spec("openai:http://127.0.0.1:11434", "smollm2:135m")
    assert remote.url == "http://127.0.0.1:11434/v1" and remote.model_name == "smollm2:135m"
    assert parse_backend_spec("openai:http://h:1/v1/").url == "http://h:1/v1"
    for bad in ("ollama", "openai:", "openai:ftp://h/v1"):
        with pytest.raises(BackendError):
            parse_backend_spec(bad)


# --- engine settings -----------------------------------------------------------------------------


@pytest.mark.parametrize("settings, name", [
    (EngineSettings(n_ctx=1024), "n_ctx"),
    (EngineSettings(n_batch=4), "n_batch"),
    (EngineSettings(n_ctx=4096, n_batch=8192), "n_batch"),
    (EngineSettings(n_threads=-1), "n_threads"),
    (EngineSettings(n_gpu_layers=-2), "n_gpu_layers"),
    (EngineSettings(n_threads=True), "n_threads"),
])
def test_engine_settings_are_validated_before_loading(settings, name):
    with pytest.raises(EngineSettingsError) as caught:
        load_model(settings=settings)
    assert caught.value.name == name and caught.value.got == getattr(settings, name)


def test_other_engine_settings_generate_outputs_the_verifier_accepts(model, verifier, caplog):
    """GPU layers without a GPU build: a warning and the CPU; another context and batch size: still verified."""
    if supports_gpu_offload():
        pytest.skip("this llama.cpp build has a GPU backend")
    with caplog.at_level(logging.WARNING, logger="inference.engine"):
        other = load_model(settings=EngineSettings(n_threads=1, n_gpu_layers=99, n_ctx=4096, n_batch=64))
    try:
        assert other.settings == EngineSettings(n_threads=1, n_gpu_layers=0, n_ctx=4096, n_batch=64)
        assert any("no GPU backend" in record.getMessage() for record in caplog.records)
        assert other.n_ctx == 2048  # the protocol's window, whatever the context holds
        for chat in (CALIBRATION_PROMPTS[1], (("user", FRENCH),)):
            # A prompt longer than one 64-token batch: the prefill is chunked differently from the verifier's.
            job = make_job(model, chat + (("user", "Answer in detail, please, with examples. " * 6),), 24)
            tokens = list(other.iter_greedy(get_prompt_tokens(other, job), job.max_tokens))
            assert verifier.evaluate(job, tokens).accepted
    finally:
        other.close()


def test_n_threads_keyword_still_works():
    assert EngineSettings().n_threads == 0
    with load_model(n_threads=1, settings=EngineSettings(n_threads=2, n_batch=128)) as loaded:
        assert loaded.settings.n_threads == 1 and loaded.n_threads == 1 and loaded.n_batch == 128


def test_requantized_model_is_another_model(tmp_path):
    assert FTYPE_Q8_0 == llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    made = make_requantized_model(get_default_model_path(), tmp_path / "smol-q8_0.gguf")
    with load_model(made.path, n_threads=1) as loaded:
        assert loaded.sha256 == made.sha256 != DEFAULT_MODEL_SHA256
        assert loaded.tokenize_chat([("user", FRENCH)])  # same tokenizer and chat template


# --- node flags -------------------------------------------------------------------------------------


def test_worker_flags_and_toml(tmp_path):
    from node.cli_node import make_backend, make_engine_settings
    from node.config import build_config
    from node.exceptions import ConfigError

    config_file = tmp_path / "node.toml"
    config_file.write_text('[worker]\nenabled = true\ngpu-layers = 4\nctx = 4096\n'
                           'backend = "openai:http://127.0.0.1:11434/v1"\nbackend-model = "smollm2:135m"\n')
    config = build_config(config_file, {"worker.batch": "256", "worker.threads": "1"})
    assert config.worker and (config.worker_gpu_layers, config.worker_ctx, config.worker_batch) == (4, 4096, 256)
    assert make_engine_settings(config) == EngineSettings(n_threads=1, n_gpu_layers=4, n_ctx=4096, n_batch=256)
    backend = make_backend(config)
    assert (backend.kind, backend.url, backend.model_name) == ("openai", "http://127.0.0.1:11434/v1", "smollm2:135m")
    assert make_engine_settings(build_config(None, {})) == EngineSettings()
    with pytest.raises(ConfigError):
        make_engine_settings(build_config(None, {"worker.ctx": "1024"}))
    for bad in ({"worker.backend": "ollama"}, {"worker.gpu-layers": "-1"}):
        with pytest.raises(ConfigError):
            build_config(None, bad)
