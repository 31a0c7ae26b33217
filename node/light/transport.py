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
import trio

from node.light.exceptions import MalformedResponse, ResponseTooLarge, RPCFailure, RPCTimeout
from primitives.limits import BoundedInputError, InputTooLarge, decode_json_bounded

Call = tuple[str, list]

# The largest honest answer is a block of full transactions (a few MB of hex); past this a server is
# feeding us garbage, so reading stops there and memory stays bounded by it.
MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0


class TransportAPI(Protocol):
    async def call_batch(self, calls: Sequence[Call]) -> list[Any]:
        """One result or RPCFailure per call, in order."""

    async def aclose(self) -> None: ...


def encode_batch(calls: Sequence[Call]) -> bytes:
    return json.dumps([{"jsonrpc": "2.0", "id": index, "method": name, "params": params}
                       for index, (name, params) in enumerate(calls)]).encode()


def decode_batch(calls: Sequence[Call], body: bytes, max_size: int = MAX_RESPONSE_BYTES) -> list[Any]:
    """Match responses to calls by id; a call with no answer becomes an RPCFailure.

    A body that is not a JSON-RPC batch answer (not JSON, too deep, ids that are not the
    integers we sent, or sent twice) is a `MalformedResponse` for the whole batch: such a
    server cannot be trusted to have matched any answer to its question.
    """
    try:
        responses = decode_json_bounded(body, max_size=max_size)
    except InputTooLarge as error:
        raise ResponseTooLarge("server's answer is too large", got=error.got, expected=error.expected) from None
    except BoundedInputError as error:
        raise MalformedResponse(f"server answered with invalid JSON ({error.message})", got=body[:120],
                                expected="a JSON-RPC batch") from None
    if isinstance(responses, dict) and isinstance(responses.get("error"), dict):
        # A whole-batch error (e.g. batch too large) is one error object.
        error = responses["error"]
        raise RPCFailure(f"server refused the batch: {str(error)[:200]}", got=str(error)[:200],
                         expected="a batch response")
    if not isinstance(responses, list):
        raise MalformedResponse("server answered with a non-batch", got=str(responses)[:120], expected="JSON array")
    by_id = index_responses(responses, len(calls))
    return [compute_outcome(name, params, by_id.get(index)) for index, (name, params) in enumerate(calls)]


def index_responses(responses: list, count: int) -> dict[int, dict]:
    """Responses by id; every response must be an object whose id is one we sent, once."""
    if len(responses) > count:
        raise MalformedResponse("batch answer has more responses than requests", got=len(responses),
                                expected=f"at most {count}")
    by_id: dict[int, dict] = {}
    for response in responses:
        if not isinstance(response, dict):
            raise MalformedResponse("batch answer holds a non-object", got=str(response)[:120],
                                    expected="a JSON-RPC response object")
        response_id = response.get("id")
        if not is_sent_id(response_id, count):
            raise MalformedResponse("batch answer has an id we did not send", got=str(response_id)[:120],
                                    expected=f"an integer in [0, {count})")
        if response_id in by_id:
            raise MalformedResponse("batch answer repeats an id", got=response_id, expected="each id once")
        by_id[response_id] = response
    return by_id


def is_sent_id(value: Any, count: int) -> bool:
    # bool is an int in Python; JSON true is not the id 1.
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < count


def compute_outcome(name: str, params: list, response: dict | None) -> Any:
    if response is None:
        return RPCFailure(f"no answer to {name}{str(params)[:80]}", got=None, expected="a response")
    if "error" in response:
        return RPCFailure(f"{name}{str(params)[:80]} failed on the server: {str(response['error'])[:200]}",
                          got=response["error"], expected="a result")
    if "result" not in response:
        return RPCFailure(f"{name}{str(params)[:80]}: response without result", got=str(response)[:120],
                          expected="a result")
    return response["result"]


class HTTPTransport:
    """JSON-RPC batches over HTTP(S) with httpx.

    `timeout` is a deadline on each whole request (connect, send, every byte of the answer): httpx's
    own timeouts apply per read, so a server dripping a byte every few seconds would never hit them.
    The body is streamed and reading stops past `max_response_bytes`, so memory stays bounded.
    """

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT, *,
                 max_response_bytes: int = MAX_RESPONSE_BYTES) -> None:
        self.url = url
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.client = httpx.AsyncClient(timeout=timeout)
        self.requests = 0

    async def call_batch(self, calls: Sequence[Call]) -> list[Any]:
        self.requests += 1
        try:
            with trio.fail_after(self.timeout):
                body = await self.post(encode_batch(calls))
        except (trio.TooSlowError, httpx.TimeoutException):
            raise RPCTimeout(f"{self.url} did not answer {calls[0][0]} (and {len(calls) - 1} more) in time",
                             got=None, expected=f"a whole answer within {self.timeout}s") from None
        except httpx.HTTPError as error:
            raise RPCFailure(f"cannot reach {self.url}: {str(error)[:200]}", got=type(error).__name__,
                             expected="a JSON-RPC server") from None
        return decode_batch(calls, body, self.max_response_bytes)

    async def post(self, content: bytes) -> bytes:
        async with self.client.stream("POST", self.url, content=content,
                                      headers={"content-type": "application/json"}) as response:
            if response.status_code != 200:
                raise RPCFailure(f"{self.url} answered HTTP {response.status_code}", got=response.status_code,
                                 expected=200)
            validate_declared_size(response.headers.get("content-length"), self.max_response_bytes)
            return await read_capped(response, self.max_response_bytes)

    async def aclose(self) -> None:
        await self.client.aclose()


def validate_declared_size(declared: str | None, max_size: int) -> None:
    """Refuse before reading when the server says up front that the answer is too large."""
    if declared is not None and declared.isdigit() and int(declared) > max_size:
        raise ResponseTooLarge("server's answer is too large (content-length)", got=int(declared),
                               expected=f"at most {max_size} bytes")


async def read_capped(response: httpx.Response, max_size: int) -> bytes:
    """The (decoded) body, read chunk by chunk and abandoned as soon as it passes `max_size`."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_size:
            raise ResponseTooLarge("server's answer is too large", got=f"more than {max_size} bytes",
                                   expected=f"at most {max_size} bytes")
    return bytes(body)


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
