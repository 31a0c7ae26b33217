"""The light client's own JSON-RPC: a small set of eth_ methods answered only from verified data.

Served as an ASGI app on hypercorn's trio worker, like the node's server
(`node.http`), reusing its body limits (`node.asgi`) and the protocol pieces of
`node.rpc_core` (parameter parsing, block tags, error objects). So web3.py can point at
`http://127.0.0.1:8555` instead of a full node, as users do with Helios.

Methods: web3_clientVersion, net_version, eth_chainId, eth_syncing,
eth_blockNumber (the verified head), eth_getBalance and eth_getTransactionCount
(proven with eth_getProof against the verified state root),
eth_getBlockByNumber / eth_getBlockByHash (verified header, transactions and
receipts checked against its roots), muagic_getRecognition (proven slot 0),
muagic_getAccount, muagic_lightStatus.

A lie from the upstream server becomes error -32010 whose message is the typed
error's text and whose data names its type, got and expected; nothing
unverified is ever returned. An upstream that does not answer is -32011.
`LightService.run` syncs headers in the background every `poll_interval`.
"""
from __future__ import annotations

import json
import logging
import platform
from functools import partial
from typing import Any

import trio
from hypercorn.trio import serve

from chain.blocks import Header
from chain.transactions import WAIVED_BASE_FEE_PER_GAS
from node.asgi import (
    BodyTooLarge,
    ClientGone,
    HTTPLimits,
    make_config,
    on_lifespan,
    read_body,
    send_body_timeout,
    send_json,
    send_no_content,
)
from node.light.client import LightClient, VerifiedBlock
from node.light.exceptions import LightClientError, NotVerified, RPCFailure, StaleHead
from node.light.upstreams import DEFAULT_STALL_WINDOW, UPSTREAM_ERRORS, LightPool
from node.rpc_core import (
    JSONRPC_VERSION,
    MAX_BATCH_SIZE,
    BlockTag,
    InternalError,
    InvalidRequest,
    Method,
    MethodNotFound,
    MethodTable,
    NotFound,
    Param,
    RPCError,
    decode_request_body,
    encode_data,
    encode_jsonable,
    encode_quantity,
    is_valid_id,
    make_error_response,
    parse_address,
    parse_block_tag,
    parse_bool,
    parse_hash,
    parse_params,
    validate_request,
)
from primitives.limits import set_safe_recursion_limit

log = logging.getLogger("magicoin.light.server")

DEFAULT_LIGHT_PORT = 8555  # the devnet's full nodes use 8545-8548
CLIENT_VERSION = f"magicoin-light/v0.1.0/python{platform.python_version()}"
ZERO_HASH = b"\x00" * 32


class VerificationError(RPCError):
    """The upstream server lied; the message says how."""

    code = -32010


class UpstreamUnavailable(RPCError):
    code = -32011


class HeadStale(RPCError):
    """The verified head is behind the upstreams and not advancing: "latest" would be a stale answer."""

    code = -32012


def compute_rpc_error(error: LightClientError) -> RPCError:
    data = {"type": type(error).__name__}
    for name in ("got", "expected"):
        if getattr(error, name, None) is not None:
            data[name] = encode_jsonable(getattr(error, name))
    if isinstance(error, NotVerified):
        return NotFound(str(error), data)
    if isinstance(error, StaleHead):
        return HeadStale(str(error), data)
    if isinstance(error, RPCFailure):
        return UpstreamUnavailable(str(error), data)
    return VerificationError(str(error), data)


# --- methods -----------------------------------------------------------------------------------

LIGHT_METHODS = MethodTable()
light_method = LIGHT_METHODS.method  # handlers are coroutines `(client, *parsed)`


async def get_tagged_header(client: LightClient, tag: BlockTag) -> Header:
    if tag.hash is not None:
        for header in reversed(client.headers.values()):
            if header.hash == tag.hash:
                return header
        raise NotVerified("no verified block with this hash", got=tag.hash, expected="a verified block's hash")
    if tag.number is not None:
        return await client.get_header(tag.number)
    if tag.name == "earliest":
        return await client.get_header(0)
    validate_fresh_head(client)
    return client.head  # latest, safe, finalized, pending: finality is immediate, the verified head


def validate_fresh_head(client) -> None:
    check = getattr(client, "validate_fresh_head", None)  # a bare LightClient knows no upstream claims
    if check is not None:
        check()


@light_method("web3_clientVersion")
async def web3_client_version(client: LightClient) -> str:
    return CLIENT_VERSION


@light_method("net_version")
async def net_version(client: LightClient) -> str:
    return str(client.chain_id)


@light_method("eth_chainId")
async def eth_chain_id(client: LightClient) -> str:
    return encode_quantity(client.chain_id)


@light_method("eth_syncing")
async def eth_syncing(client: LightClient) -> bool | dict:
    """False, or how far the verified head is behind the best head an upstream claims."""
    status = getattr(client, "compute_sync_status", None)
    if status is None:
        return False
    result = status()
    if result is False:
        return False
    return {name: encode_quantity(value) for name, value in result.items()}


@light_method("eth_blockNumber")
async def eth_block_number(client: LightClient) -> str:
    return encode_quantity(client.head.number)


@light_method("eth_getBalance", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
async def eth_get_balance(client: LightClient, address: bytes, tag: BlockTag) -> str:
    header = await get_tagged_header(client, tag)
    return encode_quantity((await client.get_account(address, header.number)).balance)


@light_method("eth_getTransactionCount", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
async def eth_get_transaction_count(client: LightClient, address: bytes, tag: BlockTag) -> str:
    header = await get_tagged_header(client, tag)
    return encode_quantity((await client.get_account(address, header.number)).nonce)


@light_method("muagic_getRecognition", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
async def muagic_get_recognition(client: LightClient, address: bytes, tag: BlockTag) -> str:
    header = await get_tagged_header(client, tag)
    return encode_quantity((await client.get_account(address, header.number)).recognition)


@light_method("muagic_getAccount", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
async def muagic_get_account(client: LightClient, address: bytes, tag: BlockTag) -> dict:
    header = await get_tagged_header(client, tag)
    account = await client.get_account(address, header.number)
    return {"address": encode_data(address), "nonce": encode_quantity(account.nonce),
            "balance": encode_quantity(account.balance), "recognition": encode_quantity(account.recognition),
            "blockNumber": encode_quantity(account.height), "stateRoot": encode_data(account.state_root)}


@light_method("eth_getBlockByNumber", Param("block", parse_block_tag), Param("full", parse_bool, False))
async def eth_get_block_by_number(client: LightClient, tag: BlockTag, full: bool) -> dict:
    header = await get_tagged_header(client, tag)
    return encode_block(await client.get_block(header.number), full, client.genesis.params.max_block_txs)


@light_method("eth_getBlockByHash", Param("hash", parse_hash), Param("full", parse_bool, False))
async def eth_get_block_by_hash(client: LightClient, block_hash: bytes, full: bool) -> dict:
    header = await get_tagged_header(client, BlockTag(hash=block_hash))
    return encode_block(await client.get_block(header.number), full, client.genesis.params.max_block_txs)


@light_method("muagic_lightStatus")
async def muagic_light_status(client: LightClient) -> dict:
    stats = client.stats._asdict()
    counts = {to_camel_case(name): value for name, value in stats.items() if name != "head"}
    return {"head": encode_quantity(client.head.number), "headHash": encode_data(client.head.hash),
            "trustedRoot": encode_data(client.root.hash), "trustedRootNumber": encode_quantity(client.root.number),
            **counts, "lastError": getattr(client, "last_error", None),
            "upstreams": client.compute_upstream_status() if hasattr(client, "compute_upstream_status") else []}


def to_camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def encode_block(block: VerifiedBlock, full: bool, max_block_txs: int) -> dict:
    """The standard block object, every field from the verified header and body."""
    header = block.header
    if full:
        transactions = [encode_transaction(block, index) for index in range(len(block.transactions))]
    else:
        transactions = [encode_data(tx.hash) for tx in block.transactions]
    return {
        "number": encode_quantity(header.number), "hash": encode_data(header.hash),
        "parentHash": encode_data(header.parent_hash), "nonce": encode_data(b"\x00" * 8),
        "sha3Uncles": encode_data(bytes.fromhex("1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347")),
        "logsBloom": encode_data(b"\x00" * 256), "transactionsRoot": encode_data(header.transactions_root),
        "stateRoot": encode_data(header.state_root), "receiptsRoot": encode_data(header.receipts_root),
        "miner": encode_data(header.proposer), "difficulty": "0x0", "totalDifficulty": "0x0",
        "extraData": encode_data(header.extra_data), "gasLimit": encode_quantity(max_block_txs * 10_000_000),
        "gasUsed": encode_quantity(block.gas_used), "timestamp": encode_quantity(header.timestamp_ms // 1000),
        "transactions": transactions, "uncles": [], "baseFeePerGas": encode_quantity(WAIVED_BASE_FEE_PER_GAS), "mixHash": encode_data(ZERO_HASH),
        "recognition": encode_quantity(header.recognition), "validatorsHash": encode_data(header.validators_hash),
        "nextValidatorsHash": encode_data(header.next_validators_hash),
        "lastCommitHash": encode_data(header.last_commit_hash), "timestampMs": encode_quantity(header.timestamp_ms),
    }


def encode_transaction(block: VerifiedBlock, index: int) -> dict:
    tx = block.transactions[index]
    return {
        "hash": encode_data(tx.hash), "type": "0x2", "chainId": encode_quantity(tx.chain_id),
        "nonce": encode_quantity(tx.nonce), "blockHash": encode_data(block.header.hash),
        "blockNumber": encode_quantity(block.header.number), "transactionIndex": encode_quantity(index),
        "from": encode_data(tx.sender), "to": encode_data(tx.to), "value": encode_quantity(tx.value),
        "gas": encode_quantity(tx.gas), "gasPrice": encode_quantity(tx.effective_tip),
        "maxFeePerGas": encode_quantity(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": encode_quantity(tx.max_priority_fee_per_gas), "input": encode_data(tx.data),
        "accessList": [], "kind": tx.kind,
    }


# --- dispatch -----------------------------------------------------------------------------------

class LightDispatcher:
    """JSON-RPC bodies in, bodies out, with the methods awaited (they fetch and verify upstream)."""

    def __init__(self, client: LightClient, methods: dict[str, Method] | None = None, *,
                 max_body: int = HTTPLimits().max_rpc_body) -> None:
        self.client = client
        self.methods = LIGHT_METHODS if methods is None else methods
        self.max_body = max_body

    async def handle(self, body: bytes) -> bytes | None:
        try:
            message = decode_request_body(body, self.max_body)  # size and depth bounded before parsing
        except RPCError as error:
            return encode(make_error_response(None, error))
        if isinstance(message, list):
            if not message:
                return encode(make_error_response(None, InvalidRequest("empty batch")))
            if len(message) > MAX_BATCH_SIZE:
                return encode(make_error_response(None, InvalidRequest(
                    "batch too large", {"got": len(message), "expected": f"at most {MAX_BATCH_SIZE}"})))
            responses = [r for r in [await self.handle_request(m) for m in message] if r is not None]
            return encode(responses) if responses else None
        response = await self.handle_request(message)
        return None if response is None else encode(response)

    async def handle_request(self, request: Any) -> dict | None:
        if not isinstance(request, dict):
            return make_error_response(None, InvalidRequest("request must be an object"))
        request_id = request.get("id")
        if not is_valid_id(request_id):
            return make_error_response(None, InvalidRequest("id must be a string, a number or null"))
        try:
            validate_request(request)
            result = await self.call(request["method"], request.get("params"))
        except RPCError as error:
            return None if "id" not in request else make_error_response(request_id, error)
        return None if "id" not in request else {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}

    async def call(self, name: str, raw_params: Any) -> Any:
        spec = self.methods.get(name)
        if spec is None:
            raise MethodNotFound(f"the method {name} does not exist/is not available on the light client")
        params = parse_params(spec, raw_params)
        try:
            return await spec.handler(self.client, *params)
        except LightClientError as error:
            log.warning("%s refused: %s", name, error)
            raise compute_rpc_error(error) from None
        except RPCError:
            raise
        except Exception as error:  # noqa: BLE001 - a bug of ours: logged with its traceback, answered in JSON-RPC
            log.exception("%s failed inside the light client", name)
            raise InternalError(f"internal error in {name}: {type(error).__name__}") from None


def encode(response: Any) -> bytes:
    return json.dumps(response, separators=(",", ":")).encode()


class LightApp:
    """ASGI app: POST / is the light JSON-RPC."""

    def __init__(self, client: LightClient, limits: HTTPLimits = HTTPLimits()) -> None:
        self.rpc = LightDispatcher(client, max_body=limits.max_rpc_body)
        self.limits = limits

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await on_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] != "POST" or (scope["path"].rstrip("/") or "/") != "/":
            await send_json(send, 405, {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "JSON-RPC is served with POST /"}})
            return
        try:
            body = await read_body(receive, scope, self.limits.max_rpc_body, self.limits.read_timeout)
        except BodyTooLarge as error:
            await send_json(send, 413, error.to_json_rpc())
            return
        except ClientGone:
            return
        except trio.TooSlowError:
            await send_body_timeout(send)
            return
        response = await self.rpc.handle(body)
        if response is None:
            await send_no_content(send)
            return
        await send_json(send, 200, response)


async def serve_light(client: LightClient, host: str = "127.0.0.1", port: int = DEFAULT_LIGHT_PORT, *,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the verified JSON-RPC until cancelled; `started` with the URL it listens on."""
    limits = HTTPLimits()
    config = make_config(host, port, limits)
    set_safe_recursion_limit()  # everything is imported by now; bodies are bounded before parsing regardless
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(partial(serve, LightApp(client, limits), config, mode="asgi"))
        log.info("light client serving verified JSON-RPC on %s", binds[0])
        task_status.started(binds[0])


class LightService:
    """The light client as a service: background header sync plus the verified JSON-RPC server."""

    def __init__(self, client: LightClient, host: str = "127.0.0.1", port: int = DEFAULT_LIGHT_PORT, *,
                 poll_interval: float = 1.0, skipping: bool = True,
                 stall_window: float = DEFAULT_STALL_WINDOW) -> None:
        # One upstream is a pool of one: the same stale-head checks and error bookkeeping apply.
        self.pool = client if isinstance(client, LightPool) else LightPool.from_clients(
            [client], stall_window=stall_window)
        self.client = client
        self.host = host
        self.port = port
        self.poll_interval = poll_interval
        self.skipping = skipping
        self.url: str | None = None
        self.pool.last_error = None

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await self.sync_once()
            self.url = await nursery.start(serve_light, self.pool, self.host, self.port)
            task_status.started(self.url)
            while True:
                await trio.sleep(self.poll_interval)
                await self.sync_once()

    async def sync_once(self) -> None:
        """One round of header sync; a lie or an outage is recorded and logged, the verified head stays.

        Only upstream trouble is caught (typed errors, and transport errors should any get past the
        transport): a bug of ours still stops the service loudly.
        """
        try:
            head = await self.pool.sync(skipping=self.skipping)
        except UPSTREAM_ERRORS as error:
            self.pool.last_error = f"{type(error).__name__}: {error}"
            log.error("header sync refused the upstream's answer: %s", self.pool.last_error)
            return
        if self.pool.last_error is not None:
            log.error("header sync refused the upstream's answer: %s", self.pool.last_error)
        log.debug("verified head %d", head.number)
