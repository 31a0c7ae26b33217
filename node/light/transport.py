"""How the light client talks to an untrusted JSON-RPC server: batches over HTTP, or in-process.

A transport answers a batch of (method, params) calls with one outcome per call:
the JSON result, or an `RPCFailure` (the server's JSON-RPC error, a missing
answer). A server that cannot be reached or is too slow fails the whole batch
with `RPCFailure`/`RPCTimeout`. Nothing here trusts or interprets results;
`node.light.client` verifies them.

`DispatcherTransport` hands the same JSON bodies to a full node's
`node.rpc.RPCDispatcher` in-process, so the benchmark can measure verification
without loopback HTTP in the way.
"""
from __future__ import annotations

import json
from typing import Any, Protocol, Sequence

import httpx

from node.light.exceptions import RPCFailure, RPCTimeout

Call = tuple[str, list]


class TransportAPI(Protocol):
    async def call_batch(self, calls: Sequence[Call]) -> list[Any]:
        """One result or RPCFailure per call, in order."""

    async def aclose(self) -> None: ...


def encode_batch(calls: Sequence[Call]) -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "id": index, "method": name, "params": params}
                       for index, (name, params) in enumerate(calls)]).encode()


def decode_batch(calls: Sequence[Call], body: bytes) -> list[Any]:
    """Match responses to calls by id; a call with no (or a malformed) answer becomes an RPCFailure."""
    try:
        responses = json.loads(body)
    except ValueError as error:
        raise RPCFailure("server answered with invalid JSON", got=body[:120], expected="JSON-RPC batch") from error
    if isinstance(responses, dict):
        # A whole-batch error (e.g. batch too large) is one error object.
        error = responses.get("error")
        raise RPCFailure(f"server refused the batch: {error}", got=error, expected="a batch response")
    if not isinstance(responses, list):
        raise RPCFailure("server answered with a non-batch", got=str(responses)[:120], expected="JSON array")
    by_id = {r.get("id"): r for r in responses if isinstance(r, dict)}
    outcomes: list[Any] = []
    for index, (name, params) in enumerate(calls):
        response = by_id.get(index)
        if response is None:
            outcomes.append(RPCFailure(f"no answer to {name}{params}", got=None, expected="a response"))
        elif "error" in response:
            outcomes.append(RPCFailure(f"{name}{params} failed on the server: {response['error']}",
                                       got=response["error"], expected="a result"))
        elif "result" not in response:
            outcomes.append(RPCFailure(f"{name}{params}: response without result", got=response,
                                       expected="a result"))
        else:
            outcomes.append(response["result"])
    return outcomes


class HTTPTransport:
    """JSON-RPC batches over HTTP(S) with httpx; `timeout` bounds each request (a withholding server)."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout)
        self.requests = 0

    async def call_batch(self, calls: Sequence[Call]) -> list[Any]:
        self.requests += 1
        try:
            response = await self.client.post(self.url, content=encode_batch(calls),
                                              headers={"content-type": "application/json"})
        except httpx.TimeoutException:
            raise RPCTimeout(f"{self.url} did not answer {calls[0][0]} (and {len(calls) - 1} more) in time",
                             got=None, expected=f"an answer within {self.timeout}s") from None
        except httpx.HTTPError as error:
            raise RPCFailure(f"cannot reach {self.url}: {error}", got=type(error).__name__,
                             expected="a JSON-RPC server") from None
        if response.status_code != 200:
            raise RPCFailure(f"{self.url} answered HTTP {response.status_code}", got=response.status_code,
                             expected=200)
        return decode_batch(calls, response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


class DispatcherTransport:
    """In-process: the JSON body goes straight to a full node's RPCDispatcher (benchmarks)."""

    def __init__(self, dispatcher) -> None:
        self.dispatcher = dispatcher
        self.requests = 0

    async def call_batch(self, calls: Sequence[Call]) -> list[Any]:
        self.requests += 1
        return decode_batch(calls, self.dispatcher.handle(encode_batch(calls)))

    async def aclose(self) -> None:
        return None
