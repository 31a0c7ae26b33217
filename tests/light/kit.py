"""Test kit for the light client: a built multi-validator chain served by the node's real HTTP server,
and a tampering JSON-RPC proxy on loopback that rewrites chosen responses.

The proxy forwards every request (single or batch) to the upstream server with
httpx, then hands each (method, params, response) to the test's `tamper`
function, which returns the response to send (possibly rewritten), `WITHHOLD`
to answer `null`, or `HANG` to not answer at all in time.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable

import httpx
import rlp
import trio
from hypercorn.trio import serve

from chain.blocks import decode_header
from genesis import MUAGIC
from node.devchain import ChainNode, VALIDATOR_KEYS as KEYS, build_signed_chain, make_dev_genesis, make_evidence, \
    make_offering
from node.asgi import on_lifespan
from node.http import HTTPLimits, make_config, serve_http

WITHHOLD = object()
HANG = object()

EPOCH = 5
BLOCKS = 40


def build_test_chain(path: Path):
    """4 equal validators; block 3 slashes three of them (the set shrinks to one at height 6);
    offerings at 8 and 12 change a balance."""
    genesis = make_dev_genesis(4, epoch_length=EPOCH)
    evidence = [make_evidence(KEYS[3], key, index) for index, key in enumerate(KEYS[:3])]
    txs = {3: evidence, 8: [make_offering(KEYS[3], 2 * MUAGIC)], 12: [make_offering(KEYS[3], 3 * MUAGIC)]}
    return genesis, build_signed_chain(path, genesis, BLOCKS, txs_at=txs)


async def serve_chain(nursery: trio.Nursery, chain) -> str:
    return await nursery.start(serve_http, ChainNode(chain), "127.0.0.1", 0)


Tamper = Callable[[str, list, dict], Any]


def no_tamper(method: str, params: list, response: dict) -> dict:
    return response


class TamperingProxy:
    """ASGI JSON-RPC proxy; `self.tamper` may be swapped by a test at any time."""

    def __init__(self, upstream: str, tamper: Tamper = no_tamper, hang_seconds: float = 30.0) -> None:
        self.upstream = upstream
        self.tamper = tamper
        self.hang_seconds = hang_seconds
        self.client = httpx.AsyncClient(timeout=30)
        self.seen: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        upstream = (await self.client.post(self.upstream, content=body,
                                           headers={"content-type": "application/json"})).json()
        requests = request if isinstance(request, list) else [request]
        responses = upstream if isinstance(upstream, list) else [upstream]
        by_id = {r.get("id"): r for r in requests}
        rewritten = []
        for response in responses:
            call = by_id.get(response.get("id"), {})
            self.seen.append(call.get("method", "?"))
            outcome = self.tamper(call.get("method"), call.get("params") or [], response)
            if call.get("method") == "muagic_getHeaders" and outcome is response:
                outcome = self.tamper_range(response)
            if outcome is HANG:
                await trio.sleep(self.hang_seconds)
                outcome = response
            if outcome is WITHHOLD:
                outcome = {"jsonrpc": "2.0", "id": response.get("id"), "result": None}
            rewritten.append(outcome)
        payload = json.dumps(rewritten if isinstance(upstream, list) else rewritten[0]).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


    def tamper_range(self, response: dict) -> Any:
        """A muagic_getHeaders answer rewritten item by item, each header and commit passed to `tamper` as
        the muagic_getHeader / muagic_getCommit answer for its height, so every lie a test tells about one
        height reaches a client that syncs by ranges too."""
        items = response.get("result")
        if not isinstance(items, list):
            return response
        rewritten = []
        for item in items:
            tag = [item["number"]]
            header = self.tamper("muagic_getHeader", tag, with_result(
                response, {key: item[key] for key in ("number", "hash", "rlp")}))
            commit = self.tamper("muagic_getCommit", tag, with_result(
                response, {"rlp": item["commit"]} if item["commit"] is not None else None))
            if HANG in (header, commit):
                return HANG
            header = None if header is WITHHOLD else header.get("result")
            commit = None if commit is WITHHOLD else commit.get("result")
            rewritten.append(None if header is None else {
                **header, "commit": commit.get("rlp") if isinstance(commit, dict) else None})
        return with_result(response, rewritten)


async def start_proxy(nursery: trio.Nursery, upstream: str, tamper: Tamper = no_tamper) -> tuple[TamperingProxy, str]:
    proxy = TamperingProxy(upstream, tamper)
    binds = await nursery.start(partial(serve, proxy, make_config("127.0.0.1", 0, HTTPLimits()), mode="asgi"))
    return proxy, binds[0]


# --- rewriting helpers ------------------------------------------------------------------------------

def height_of(params: list) -> int | None:
    if params and isinstance(params[0], str) and params[0].startswith("0x") and len(params[0]) < 20:
        return int(params[0], 16)
    return None


def at(method: str, height: int, rewrite):
    """Rewrite answers to `method` for block `height` only."""
    def tamper(name, params, response):
        if name == method and height_of(params) == height and response.get("result") is not None:
            return rewrite(response)
        return response
    return tamper


def with_result(response: dict, result: Any) -> dict:
    return {"jsonrpc": "2.0", "id": response["id"], "result": result}


def rewrite_header(response: dict, keep_claimed_hash: bool, **fields) -> dict:
    header = decode_header(bytes.fromhex(response["result"]["rlp"][2:])).copy(**fields)
    claimed = response["result"]["hash"] if keep_claimed_hash else "0x" + header.hash.hex()
    return with_result(response, {**response["result"], "rlp": "0x" + rlp.encode(header).hex(), "hash": claimed})
