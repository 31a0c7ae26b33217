"""`p2p_inference`: ask the network for a completion, get the text and the job id, optionally wait for its audit.

    from node.client import p2p_inference
    result = p2p_inference("Name a colour.", wait_for_verification=True)
    print(result.text, result.job_id.hex(), result.job["status"])

It talks to a node's HTTP server only: `/v1/chat/completions` for the
completion (the node signs the request on chain and routes it) and JSON-RPC
`muagic_getJob` for the job's fate. The three policy arguments name how the
network treats the job; the network has exactly one of each, so anything else
is refused rather than silently ignored.
"""
from __future__ import annotations

import time
from typing import Any, NamedTuple

import httpx

from node.exceptions import NodeError

ROUTINGS = ("whoever_needs_most",)  # economy.router: the eligible worker with the least recent reward
VALIDATIONS = ("annotation_quality",)  # audits scored by a recognition-weighted committee
REWARDS = ("muagic_on_recognition",)  # paid from the pool in MUAGIC, raising recognition
FINAL_JOB_STATUSES = ("accepted", "failed_audit", "unverified", "expired")
DEFAULT_RPC_URL = "http://127.0.0.1:8545"


class ClientError(NodeError):
    """The node refused the request, or the job did not reach the state asked for in time."""


class InferenceResult(NamedTuple):
    text: str
    job_id: bytes
    worker: bytes
    request_tx: bytes
    model: str
    finish_reason: str
    job: dict | None  # muagic_getJob's record once waited for (None when not waited)

    def __str__(self) -> str:
        return self.text

    @property
    def verified(self) -> bool:
        return bool(self.job and self.job.get("verified"))


def validate_policy(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ClientError(f"unsupported {name}", got=value, expected=allowed)


def p2p_inference(
    prompt: str | list[dict],
    routing: str = "whoever_needs_most",
    validation: str = "annotation_quality",
    reward: str = "muagic_on_recognition",
    *,
    rpc_url: str = DEFAULT_RPC_URL,
    max_tokens: int = 256,
    model: str = "default",
    wait_for_verification: bool = False,
    timeout: float = 120.0,
    poll_interval: float = 0.5,
) -> InferenceResult:
    """Run `prompt` (a user message, or OpenAI-style messages) on the network.

    Returns when the completion is in; with `wait_for_verification`, only once the
    job is final on chain (accepted, failed its audit, unverified or expired), its
    record in `result.job`. Raises ClientError on refusal or timeout.
    """
    validate_policy("routing", routing, ROUTINGS)
    validate_policy("validation", validation, VALIDATIONS)
    validate_policy("reward", reward, REWARDS)
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=rpc_url.rstrip("/"), timeout=timeout) as http:
        completion = post_json(http, "/v1/chat/completions",
                               {"model": model, "messages": messages, "max_tokens": max_tokens})
        info = completion["magicoin"]
        choice = completion["choices"][0]
        job = None
        if wait_for_verification:
            job = wait_for_job(http, info["job_id"], deadline, poll_interval)
    return InferenceResult(
        text=choice["message"]["content"],
        job_id=bytes.fromhex(info["job_id"][2:]),
        worker=bytes.fromhex(info["worker"][2:]),
        request_tx=bytes.fromhex(info["request_tx"][2:]),
        model=completion["model"],
        finish_reason=choice["finish_reason"],
        job=job,
    )


def post_json(http: httpx.Client, path: str, body: Any) -> Any:
    try:
        response = http.post(path, json=body)
    except httpx.HTTPError as error:
        raise ClientError(f"cannot reach the node: {error}", got=str(http.base_url), expected="a running node") from None
    try:
        payload = response.json()
    except ValueError:
        raise ClientError("the node answered with something that is not JSON", got=response.text[:200],
                          expected="JSON") from None
    if response.status_code != 200:
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        message = error.get("message", response.text[:200]) if isinstance(error, dict) else str(error)
        raise ClientError(f"the node refused the request: {message}", got=response.status_code, expected=200)
    return payload


def call_rpc(http: httpx.Client, method: str, params: list) -> Any:
    payload = post_json(http, "/", {"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    if "error" in payload:
        raise ClientError(f"{method} failed: {payload['error'].get('message')}", got=payload["error"], expected="a result")
    return payload["result"]


def get_job(rpc_url: str, job_id: bytes | str, timeout: float = 10.0) -> dict | None:
    """muagic_getJob on the node at rpc_url (None while the request is not yet in a block)."""
    job_hex = job_id if isinstance(job_id, str) else "0x" + job_id.hex()
    with httpx.Client(base_url=rpc_url.rstrip("/"), timeout=timeout) as http:
        return call_rpc(http, "muagic_getJob", [job_hex])


def wait_for_job(http: httpx.Client, job_id: str, deadline: float, poll_interval: float) -> dict:
    """Poll muagic_getJob until the job is final; the request may not be in a block yet at first."""
    job = None
    while time.monotonic() < deadline:
        job = call_rpc(http, "muagic_getJob", [job_id])
        if job is not None and job["status"] in FINAL_JOB_STATUSES:
            return job
        time.sleep(poll_interval)
    raise ClientError("the job did not become final in time", got=None if job is None else job["status"],
                      expected=FINAL_JOB_STATUSES)
