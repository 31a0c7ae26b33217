"""`p2p_inference` end to end: completion over HTTP, the job recorded, answered, audited and accepted on chain."""
from __future__ import annotations

import functools

import pytest
import trio

from node.client import ClientError, get_job, p2p_inference
from node.http import serve_http
from tests.node.conftest_rpc import LocalModelGateway, RPCTestNode, register_worker, run_auditors

pytestmark = pytest.mark.model

PROMPT = "Say hello."
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def model():
    from inference.engine import load_model

    local = load_model()
    yield local
    local.close()


async def test_p2p_inference_returns_the_completion_and_waits_for_verification(tmp_path, nursery, model):
    node = RPCTestNode(tmp_path / "db")
    register_worker(node, model.sha256)
    gateway = node.inference = LocalModelGateway(node, model, nursery)
    # An empty block after a result's block lets the economy draw the audit committee.
    nursery.start_soon(functools.partial(node.run_producer, wants_block=node.has_results_awaiting_audit_draw))
    nursery.start_soon(run_auditors, node, model, gateway.limiter)
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)

    result = await trio.to_thread.run_sync(functools.partial(
        p2p_inference, PROMPT, "whoever_needs_most", "annotation_quality", "muagic_on_recognition",
        rpc_url=url, max_tokens=MAX_TOKENS, wait_for_verification=True, timeout=60, poll_interval=0.1))

    prompt = model.tokenize_chat([("user", PROMPT)])
    tokens = gateway.results[result.job_id]
    assert list(tokens) == list(model.iter_greedy(prompt, MAX_TOKENS))
    assert result.text == model.detokenize([t for t in tokens if not model.is_end_of_generation(t)])
    assert str(result) == result.text and result.text.strip()
    assert result.job["status"] == "accepted" and result.verified
    assert result.job["audited"] and len(result.job["attestations"]) == len(result.job["committee"]) >= 1
    assert int(result.job["score"], 16) == 1_000_000  # the auditor reproduced every token
    assert int(result.job["result"]["outputTokens"], 16) == len(tokens)
    assert result.job["worker"] == "0x" + result.worker.hex()

    record = await trio.to_thread.run_sync(get_job, url, result.job_id)
    assert record["status"] == "accepted" and int(record["reward"], 16) > 0
    nursery.cancel_scope.cancel()


async def test_p2p_inference_refuses_unknown_policies_and_reports_refusals(tmp_path, nursery):
    with pytest.raises(ClientError) as caught:
        p2p_inference("hi", routing="round_robin")
    assert caught.value.got == "round_robin" and caught.value.expected == ("whoever_needs_most",)
    with pytest.raises(ClientError):
        p2p_inference("hi", reward="tokens")

    node = RPCTestNode(tmp_path / "db")  # serves no inference
    url = await nursery.start(serve_http, node, "127.0.0.1", 0)
    with pytest.raises(ClientError) as caught:
        await trio.to_thread.run_sync(functools.partial(p2p_inference, "hi", rpc_url=url, timeout=5))
    assert caught.value.got == 503
    with pytest.raises(ClientError):
        await trio.to_thread.run_sync(functools.partial(p2p_inference, "hi", rpc_url="http://127.0.0.1:1", timeout=2))
    nursery.cancel_scope.cancel()
