"""Hostile JSON-RPC input against a real node on loopback (issue 14): every attack gets an error, the node lives.

The node runs in its own process (`tests.node.hostile_node`) with Python's
recursion limit raised to 100,000 after start-up, as py_ecc does on import, so
the tests prove that the bounds checked before parsing hold without the
interpreter's recursion guard: a 100,000-deep body used to segfault the node in
`_json`. After each attack the process must be alive and answer
eth_blockNumber; at the end the chain must still be finalising.

Also: errors say what was expected and echo at most a few dozen bytes of the
input, whatever was sent.
"""
from __future__ import annotations

import json
import os
import sys
import time

import httpx
import pytest
import rlp
from hypothesis import HealthCheck, given, settings, strategies as st
from rlp.codec import length_prefix

from chain.transactions import WORK_KINDS, sign_work_transaction
from tests.node.hostile_node import RAISED_RECURSION_LIMIT, HostileNode, start_hostile_node
from tests.node.nodekit import CHAIN_ID

ATTACKER_KEY = b"\x42" * 32
MAX_ERROR_JSON = 600  # bytes of a whole error object: code, message and data, whatever the input was
MAX_ECHO = 100  # characters of the input echoed back as an error's data.got
MAX_MESSAGE = 400  # characters of an error's message (got and expected included), whatever the input's size


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> HostileNode:
    node = start_hostile_node(tmp_path_factory.mktemp("hostile-rpc"))
    yield node
    node.stop()


def make_nested_json(depth: int, opener: str = "[", closer: str = "]", inner: str = "") -> bytes:
    return (opener * depth + inner + closer * depth).encode()


def make_nested_rlp(depth: int, inner: bytes = b"\xc0") -> bytes:
    item = inner
    for _ in range(depth):
        item = length_prefix(len(item), 0xC0) + item
    return item


def make_request(params_json: str, request_id: int = 1) -> str:
    return f'{{"jsonrpc":"2.0","id":{request_id},"method":"eth_blockNumber","params":{params_json}}}'


def get_error(response, status: int = 200) -> dict:
    """The one JSON-RPC error object of a response, checked for its bounded size and the absence of a trace."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    error = body["error"] if isinstance(body, dict) else body[0]["error"]
    text = json.dumps(error)
    assert "Traceback" not in text
    assert len(text) <= MAX_ERROR_JSON, f"{len(text)}-byte error echoes the input: {text[:300]}"
    data = error.get("data")
    if isinstance(data, dict) and "got" in data:
        echoed = json.dumps(data["got"])
        assert len(echoed) <= MAX_ECHO, f"echoed {len(echoed)} bytes: {echoed:.200}"
    return error


def test_the_node_runs_with_the_recursion_guard_disabled(node):
    # The point of the whole module: nothing below relies on RecursionError.
    assert node.recursion_limit == RAISED_RECURSION_LIMIT
    assert node.get_height() >= 0


# --- nested and oversized JSON -------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1_000, 20_000, 100_000])
@pytest.mark.parametrize("shape", ["array", "object", "params", "batch"])
def test_nested_json_is_refused_before_parsing(node, depth, shape):
    nested = make_nested_json(depth) if shape != "object" else make_nested_json(depth, '{"a":', "}", "1")
    if shape == "params":
        body = make_request(nested.decode()).encode()
    elif shape == "batch":
        body = f"[{make_request('[]')},{make_request(nested.decode(), 2)}]".encode()
    else:
        body = nested
    error = get_error(node.post(body))
    assert error["code"] == -32700
    assert "nested" in error["message"], error
    assert error["data"]["expected"].startswith("at most"), error
    node.get_height()


def post_oversized(node: HostileNode, body) -> int | None:
    """The status of an over-limit upload: 413, or None when the server cut the upload off (both are refusals)."""
    # Its own connection: one the server cut off mid-upload must not be reused for the next check.
    with httpx.Client(base_url=node.url, timeout=30) as client:
        try:
            response = client.post("/", content=body, headers={"content-type": "application/json"})
        except (httpx.RemoteProtocolError, httpx.WriteError):
            return None
    if response.status_code == 413:
        error = get_error(response, status=413)
        assert error["code"] == -32600 and "limit" in error["message"], error
    return response.status_code


def test_a_million_deep_body_is_refused(node):
    # Balanced, it is over the body limit (413); unbalanced, it fits and is refused by the depth check.
    assert post_oversized(node, make_nested_json(1_000_000)) in (413, None)
    for body in (b"[" * 1_000_000, ("[" + make_request("[]") + "," + make_request("[" * 1_000_000)).encode()):
        error = get_error(node.post(body))  # alone, and in a batch
        assert error["code"] == -32700 and "nested" in error["message"]
    node.get_height()


def test_deep_json_inside_strings_is_not_nesting(node):
    # Brackets inside strings (escaped quotes included) are text: the request is served.
    text = '\\"' + "[" * 5000 + "{" * 5000 + '\\\\'
    body = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[],"note":"' + text + '"}'
    response = node.post(body.encode())
    assert "result" in response.json(), response.text[:300]


def test_oversized_bodies_are_refused(node):
    body = b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":["' + b"a" * (2 << 20) + b'"]}'
    assert post_oversized(node, body) in (413, None)
    # Without a content-length (chunked), the body is cut off as it arrives.
    assert post_oversized(node, (body[i:i + 65536] for i in range(0, len(body), 65536))) in (413, None)
    node.get_height()


JUNK_BODIES = {
    "bad utf-8 in a string": b'{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber\xff\xfe","params":[]}',
    "bad utf-8": b"\xff" * 1000,
    "encoded surrogate": b'{"jsonrpc":"2.0","id":1,"method":"\xed\xa0\x80","params":[]}',
    "utf-16": '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'.encode("utf-16"),
    "nul bytes": b"\x00" * 1000,
    "unterminated escapes": b'"' + b"\\" * 10001 + b'"',
    "huge integer": b"9" * 100_000,  # past Python's int digit limit
}


@pytest.mark.parametrize("body", list(JUNK_BODIES.values()), ids=list(JUNK_BODIES))
def test_bad_utf8_and_junk_get_parse_errors(node, body):
    error = get_error(node.post(body))
    assert error["code"] == -32700
    node.get_height()


def test_huge_batches_are_refused(node):
    error = get_error(node.post(("[" + ",".join([make_request("[]")] * 101) + "]").encode()))
    assert error["code"] == -32600 and "batch" in error["message"]
    started = time.monotonic()
    error = get_error(node.post(b"[" + b",".join([b"{}"] * 300_000) + b"]"))
    assert error["code"] == -32600 and time.monotonic() - started < 5
    node.get_height()


def test_a_full_batch_of_valid_requests_is_served(node):
    response = node.post(("[" + ",".join(make_request("[]", i) for i in range(100)) + "]").encode())
    assert len(response.json()) == 100 and all("result" in r for r in response.json())


def test_openai_endpoint_refuses_nested_json(node):
    for depth in (1_000, 100_000):
        response = node.post(make_nested_json(depth), path="/v1/chat/completions")
        assert response.status_code == 400, response.text[:300]
        error = response.json()["error"]
        assert "nested" in error["message"] and len(json.dumps(error)) <= MAX_ERROR_JSON
    node.get_height()


# --- malformed transactions ----------------------------------------------------------------------

def send_raw(node: HostileNode, raw_hex: str) -> dict:
    return get_error(node.post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                                           "params": [raw_hex]}).encode()))


GARBAGE_RAW = {
    "empty": b"",
    "type byte only": b"\x02",
    "random": b"\x02" + os.urandom(300),
    "legacy list": rlp.encode([b"\x01"] * 9),
    "access-list type": b"\x01" + rlp.encode([b"\x01"] * 11),
    "twelve lists": b"\x02" + rlp.encode([[b"\x01"]] * 12),
    "truncated": b"\x02\xf8\xff" + b"\x01" * 10,
    "nested 20": b"\x02" + make_nested_rlp(20),
    "nested 1000": b"\x02" + make_nested_rlp(1_000),
    "nested 20000": b"\x02" + make_nested_rlp(20_000),
    "nested 60000": b"\x02" + make_nested_rlp(60_000),  # 230 kB, under the 256 kB raw limit
    "wide": b"\x02" + length_prefix(200_000, 0xC0) + b"\x01" * 200_000,
}


@pytest.mark.parametrize("name", list(GARBAGE_RAW))
def test_garbage_raw_transactions_get_short_errors(node, name):
    started = time.monotonic()
    error = send_raw(node, "0x" + GARBAGE_RAW[name].hex())
    assert error["code"] in (-32000, -32602), error
    assert len(error["message"]) <= MAX_MESSAGE, error["message"]
    assert time.monotonic() - started < 2, "a malformed transaction must be refused in linear time"
    node.get_height()


@pytest.mark.parametrize("kind", WORK_KINDS)
@pytest.mark.parametrize("payload", ["random", "nested", "wide", "list for int"])
def test_malformed_payloads_of_every_work_kind_get_short_errors(node, kind, payload):
    data = {"random": os.urandom(200), "nested": make_nested_rlp(3_000), "wide": rlp.encode([b"\x01"] * 8_000),
            "list for int": rlp.encode([[b"\x01"]] * 8)}[payload]
    raw = sign_work_transaction(ATTACKER_KEY, chain_id=CHAIN_ID, nonce=0, kind=kind, data=data)
    error = send_raw(node, "0x" + raw.hex())
    assert error["code"] == -32000, error
    assert len(error["message"]) <= MAX_MESSAGE, error["message"]
    node.get_height()


def test_an_oversized_raw_transaction_names_the_size_limit(node):
    error = send_raw(node, "0x" + "ab" * 400_000)
    assert error["code"] == -32602
    assert "too large" in error["message"], error
    assert error["data"]["got"] == "400000 bytes" and "262144 bytes" in error["data"]["expected"], error
    node.get_height()


def test_bad_hex_is_named_as_such(node):
    assert "hex" in send_raw(node, "0xzz")["message"]
    assert "hex" in send_raw(node, "0x123")["message"]
    assert send_raw(node, "12")["code"] == -32602
    long_bad = send_raw(node, "0x" + "zz" * 100_000)
    assert long_bad["data"]["got"].endswith("(200002 chars)"), long_bad


def test_a_long_unknown_path_is_not_echoed(node):
    response = node.client.get("/" + "x" * 10_000)
    assert response.status_code == 404 and len(response.text) < 300
    node.get_height()


# --- in this process: the limit reset at start, and the bounds without it ----------------------------

@pytest.fixture
def restore_recursion_limit():
    found = sys.getrecursionlimit()
    yield
    sys.setrecursionlimit(found)


async def test_serving_resets_the_recursion_limit_and_the_bounds_hold_when_it_is_raised_again(
        tmp_path, nursery, restore_recursion_limit):
    from node.http import serve_http
    from primitives.limits import SAFE_RECURSION_LIMIT
    from tests.node.conftest_rpc import RPCTestNode

    sys.setrecursionlimit(RAISED_RECURSION_LIMIT)  # as importing py_ecc does
    url = await nursery.start(serve_http, RPCTestNode(tmp_path / "db"), "127.0.0.1", 0)
    assert sys.getrecursionlimit() == SAFE_RECURSION_LIMIT
    sys.setrecursionlimit(RAISED_RECURSION_LIMIT)  # a dependency imported later raises it again
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for body in (make_nested_json(100_000), b"[" * 1_000_000, make_nested_json(100_000, '{"a":', "}", "1")):
            response = await client.post("/", content=body, headers={"content-type": "application/json"})
            assert response.json()["error"]["code"] == -32700
        assert (await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})).json()["result"]
    nursery.cancel_scope.cancel()


async def test_the_light_clients_server_bounds_its_bodies_too(restore_recursion_limit):
    from node.light.server import LightDispatcher

    sys.setrecursionlimit(RAISED_RECURSION_LIMIT)
    dispatcher = LightDispatcher(client=None)  # every body below is refused before any method runs
    for body, code in ((make_nested_json(100_000), -32700), (b"[" * 1_000_000, -32700), (b"\xff", -32700),
                       (b"[" + b",".join([b"{}"] * 101) + b"]", -32600), (b"[1]" * 400_000, -32600)):
        error = json.loads(await dispatcher.handle(body))["error"]
        assert error["code"] == code and len(json.dumps(error)) <= MAX_ERROR_JSON, error


def test_fuzzed_nested_bodies_get_json_rpc_answers(tmp_path, restore_recursion_limit):
    """Bracket-heavy bodies, shallow and deep, straight into the dispatcher with the recursion guard off."""
    from node.rpc import RPCDispatcher
    from tests.node.conftest_rpc import RPCTestNode

    node = RPCTestNode(tmp_path / "db")
    dispatcher = RPCDispatcher(node)
    sys.setrecursionlimit(RAISED_RECURSION_LIMIT)
    request = st.just(make_request("[]")) | st.just('{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}')
    pieces = st.lists(st.sampled_from(["[", "]", "{", "}", '"', "\\", ",", ":", "1", '"a"']) | request.map(
        lambda r: [r]) | st.integers(0, 200_000).map(lambda n: ["[" * n]), max_size=20)

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(pieces)
    def check(parts):
        body = "".join(p if isinstance(p, str) else p[0] for p in parts).encode()
        answer = dispatcher.handle(body)
        if answer is None:
            return  # notifications only
        decoded = json.loads(answer)
        for response in decoded if isinstance(decoded, list) else [decoded]:
            assert response["jsonrpc"] == "2.0" and ("result" in response) != ("error" in response)
            if "error" in response:
                assert response["error"]["code"] in (-32700, -32600, -32601, -32602), response
                assert len(json.dumps(response["error"])) <= MAX_ERROR_JSON

    check()
    node.close()


# --- afterwards ------------------------------------------------------------------------------------

def test_the_chain_keeps_finalising_after_the_attacks(node):
    node.wait_for_blocks(3)
    assert node.process.poll() is None
    if sys.platform.startswith("linux"):
        assert "Fatal Python error" not in node.log_path.read_text(errors="replace")
