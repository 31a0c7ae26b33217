"""The `eth_`, `net_` and `web3_` JSON-RPC methods, in the shapes Ethereum clients expect.

magicoin blocks and transactions are Ethereum-shaped (type-2 transactions,
typed receipts, an EIP-1186 state trie), so web3.py, ethers and eth-account work
unmodified against these methods. What has no meaning here has a fixed,
documented answer: the base fee is the waived 1 wei per gas
(`chain.transactions.WAIVED_BASE_FEE_PER_GAS`, reported so 1559 clients build type-2
transactions), the suggested priority fee is 0, there is no
code ("0x"), no uncles, difficulty 0. Blocks carry magicoin's header
fields as extra keys (`recognition`, `validatorsHash`, `nextValidatorsHash`,
`lastCommitHash`, `timestampMs`).

Receipts carry their work events as logs (`chain.events`, shaped by
`node.rpc_logs`). A block's end-of-block events are in its block receipt,
which `eth_getBlockReceipts` lists last (transactionIndex = the number of
transactions, the synthetic hash `chain.events.compute_block_events_hash`,
`from` the zero address, `to` null, gas 0), so a light client can rebuild the
receipts trie. A block's `logsBloom` is the OR of its receipts' blooms (the
header itself holds no bloom).
"""
from __future__ import annotations

import platform

import rlp
from eth.constants import GAS_TX, GAS_TXDATAZERO
from eth.vm.forks.istanbul.constants import GAS_TXDATANONZERO_EIP2028
from eth.vm.forks.london.transactions import LondonTransactionBuilder
from eth_utils import keccak

from chain.blocks import EMPTY_BLOOM, ZERO_ADDRESS, Block, Receipt
from chain.events import compute_block_events_hash
from chain.exceptions import TransactionError
from chain.store import UnknownTransaction
from chain.transactions import WAIVED_BASE_FEE_PER_GAS, decode_transaction, get_kind
from node.abc import NodeAPI
from node.rpc_core import (
    BlockTag,
    ExecutionReverted,
    InvalidParams,
    MethodTable,
    NotFound,
    Param,
    encode_data,
    encode_quantity,
    get_state,
    get_tagged_block,
    get_tagged_header,
    parse_address,
    parse_block_tag,
    parse_bool,
    parse_data,
    parse_hash,
    parse_object,
    parse_quantity,
    parse_slot,
)
from node.rpc_logs import BlockLog, encode_log

CLIENT_VERSION = f"magicoin/v0.1.0/python{platform.python_version()}"
EMPTY_UNCLES_HASH = keccak(rlp.encode([]))
ZERO_NONCE = b"\x00" * 8
ZERO_HASH = b"\x00" * 32
# There is no gas market; blocks are bounded by a transaction count. A block's
# nominal gas limit is that count times the largest gas a work tx may declare,
# so wallets never see a gas limit they would refuse.
NOMINAL_TX_GAS = 10_000_000
MAX_FEE_HISTORY_BLOCKS = 1024

ETH_METHODS = MethodTable()
method = ETH_METHODS.method


# --- shapes ---------------------------------------------------------------------------------------

def get_block_gas_used(node: NodeAPI, block: Block) -> int:
    if not block.transactions:
        return 0
    return node.chain.get_receipts(block.hash)[-1].cumulative_gas_used


def encode_block(node: NodeAPI, block: Block, full_transactions: bool) -> dict:
    header = block.header
    if full_transactions:
        transactions = [encode_transaction(node, raw, block, index) for index, raw in enumerate(block.transactions)]
    else:
        transactions = [encode_data(keccak(raw)) for raw in block.transactions]
    return {
        "number": encode_quantity(header.number),
        "hash": encode_data(block.hash),
        "parentHash": encode_data(header.parent_hash),
        "nonce": encode_data(ZERO_NONCE),
        "sha3Uncles": encode_data(EMPTY_UNCLES_HASH),
        "logsBloom": encode_data(node.chain.store.get_logs_bloom(block.hash) or EMPTY_BLOOM),
        "transactionsRoot": encode_data(header.transactions_root),
        "stateRoot": encode_data(header.state_root),
        "receiptsRoot": encode_data(header.receipts_root),
        "miner": encode_data(header.proposer),
        "difficulty": "0x0",
        "totalDifficulty": "0x0",
        "extraData": encode_data(header.extra_data),
        "size": encode_quantity(len(rlp.encode(block))),
        "gasLimit": encode_quantity(node.genesis.params.max_block_txs * NOMINAL_TX_GAS),
        "gasUsed": encode_quantity(get_block_gas_used(node, block)),
        "timestamp": encode_quantity(header.timestamp_ms // 1000),
        "transactions": transactions,
        "uncles": [],
        "baseFeePerGas": encode_quantity(WAIVED_BASE_FEE_PER_GAS),
        "mixHash": encode_data(ZERO_HASH),
        "recognition": encode_quantity(header.recognition),
        "validatorsHash": encode_data(header.validators_hash),
        "nextValidatorsHash": encode_data(header.next_validators_hash),
        "lastCommitHash": encode_data(header.last_commit_hash),
        "timestampMs": encode_quantity(header.timestamp_ms),
    }


def encode_transaction(node: NodeAPI, raw: bytes, block: Block | None, index: int | None) -> dict:
    """A transaction object; block fields are null for a pending transaction."""
    signed = LondonTransactionBuilder.decode(raw)
    params = node.genesis.params
    tx = decode_transaction(raw, node.genesis.chain_id, params.max_payload_size)
    return {
        "hash": encode_data(tx.hash),
        "type": "0x2",
        "chainId": encode_quantity(tx.chain_id),
        "nonce": encode_quantity(tx.nonce),
        "blockHash": encode_data(block.hash) if block is not None else None,
        "blockNumber": encode_quantity(block.number) if block is not None else None,
        "transactionIndex": encode_quantity(index) if index is not None else None,
        "from": encode_data(tx.sender),
        "to": encode_data(tx.to),
        "value": encode_quantity(tx.value),
        "gas": encode_quantity(tx.gas),
        "gasPrice": encode_quantity(tx.effective_tip),
        "maxFeePerGas": encode_quantity(tx.max_fee_per_gas),
        "maxPriorityFeePerGas": encode_quantity(tx.max_priority_fee_per_gas),
        "input": encode_data(tx.data),
        "accessList": [],
        "v": encode_quantity(signed.y_parity),
        "yParity": encode_quantity(signed.y_parity),
        "r": encode_quantity(signed.r),
        "s": encode_quantity(signed.s),
        "kind": tx.kind,
    }


def encode_receipt(node: NodeAPI, block: Block, index: int, receipt: Receipt, reason: str) -> dict:
    raw = block.transactions[index]
    tx = decode_transaction(raw, node.genesis.chain_id, node.genesis.params.max_payload_size)
    receipts = node.chain.get_receipts(block.hash)
    previous = receipts[index - 1].cumulative_gas_used if index else 0
    first_log = sum(len(r.logs) for r in receipts[:index])  # logIndex counts across the block
    return {
        "transactionHash": encode_data(tx.hash),
        "transactionIndex": encode_quantity(index),
        "blockHash": encode_data(block.hash),
        "blockNumber": encode_quantity(block.number),
        "from": encode_data(tx.sender),
        "to": encode_data(tx.to),
        "cumulativeGasUsed": encode_quantity(receipt.cumulative_gas_used),
        "gasUsed": encode_quantity(receipt.cumulative_gas_used - previous),
        "effectiveGasPrice": encode_quantity(tx.effective_tip),
        "contractAddress": None,
        "logs": [encode_log(BlockLog(log, block, tx.hash, index, first_log + i)) for i, log in enumerate(receipt.logs)],
        "logsBloom": encode_data(receipt.logs_bloom),
        "status": encode_quantity(receipt.status),
        "type": "0x2",
        # Why the economy refused the work (the tx is included, its nonce and tip consumed).
        "failureReason": reason or None,
    }


def encode_block_receipt(block: Block, receipts: list[Receipt], block_receipt: Receipt) -> dict:
    """The receipt of the block's end-of-block events (`chain.events`): no transaction, no gas."""
    index = len(block.transactions)
    tx_hash = compute_block_events_hash(block.number, block.hash)
    first_log = sum(len(r.logs) for r in receipts)
    return {
        "transactionHash": encode_data(tx_hash),
        "transactionIndex": encode_quantity(index),
        "blockHash": encode_data(block.hash),
        "blockNumber": encode_quantity(block.number),
        "from": encode_data(ZERO_ADDRESS),
        "to": None,
        "cumulativeGasUsed": encode_quantity(block_receipt.cumulative_gas_used),
        "gasUsed": "0x0",
        "effectiveGasPrice": "0x0",
        "contractAddress": None,
        "logs": [encode_log(BlockLog(log, block, tx_hash, index, first_log + i))
                 for i, log in enumerate(block_receipt.logs)],
        "logsBloom": encode_data(block_receipt.logs_bloom),
        "status": encode_quantity(block_receipt.status),
        "type": "0x2",
        "failureReason": None,
        "blockEvents": True,  # not a transaction's: the block's end-of-block events
    }


# --- chain ----------------------------------------------------------------------------------------

@method("web3_clientVersion")
def web3_client_version(node: NodeAPI) -> str:
    return CLIENT_VERSION


@method("web3_sha3", Param("data", parse_data))
def web3_sha3(node: NodeAPI, data: bytes) -> str:
    return encode_data(keccak(data))


@method("net_version")
def net_version(node: NodeAPI) -> str:
    return str(node.genesis.chain_id)


@method("net_listening")
def net_listening(node: NodeAPI) -> bool:
    return True


@method("net_peerCount")
def net_peer_count(node: NodeAPI) -> str:
    return encode_quantity(int(node.get_status().get("peers", 0)))


@method("eth_chainId")
def eth_chain_id(node: NodeAPI) -> str:
    return encode_quantity(node.genesis.chain_id)


@method("eth_blockNumber")
def eth_block_number(node: NodeAPI) -> str:
    return encode_quantity(node.chain.height)


@method("eth_syncing")
def eth_syncing(node: NodeAPI) -> bool | dict:
    status = node.get_sync_status()
    if status is None:
        return False
    return {
        "startingBlock": encode_quantity(status.starting_block),
        "currentBlock": encode_quantity(status.current_block),
        "highestBlock": encode_quantity(status.highest_block),
    }


@method("eth_accounts")
def eth_accounts(node: NodeAPI) -> list:
    return []  # the node holds no user keys: wallets sign and send raw transactions


@method("eth_getBlockByNumber", Param("block", parse_block_tag), Param("full", parse_bool, False))
def eth_get_block_by_number(node: NodeAPI, tag: BlockTag, full: bool) -> dict | None:
    try:
        block = get_tagged_block(node, tag)
    except NotFound:
        return None
    return encode_block(node, block, full)


@method("eth_getBlockByHash", Param("hash", parse_hash), Param("full", parse_bool, False))
def eth_get_block_by_hash(node: NodeAPI, block_hash: bytes, full: bool) -> dict | None:
    return eth_get_block_by_number(node, BlockTag(hash=block_hash), full)


@method("eth_getBlockTransactionCountByNumber", Param("block", parse_block_tag))
def eth_get_block_transaction_count_by_number(node: NodeAPI, tag: BlockTag) -> str | None:
    try:
        return encode_quantity(len(get_tagged_block(node, tag).transactions))
    except NotFound:
        return None


@method("eth_getBlockTransactionCountByHash", Param("hash", parse_hash))
def eth_get_block_transaction_count_by_hash(node: NodeAPI, block_hash: bytes) -> str | None:
    return eth_get_block_transaction_count_by_number(node, BlockTag(hash=block_hash))


@method("eth_getUncleCountByBlockNumber", Param("block", parse_block_tag))
def eth_get_uncle_count(node: NodeAPI, tag: BlockTag) -> str:
    get_tagged_block(node, tag)
    return "0x0"


# --- state ----------------------------------------------------------------------------------------

@method("eth_getBalance", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
def eth_get_balance(node: NodeAPI, address: bytes, tag: BlockTag) -> str:
    return encode_quantity(get_state(node, tag).get_balance(address))


@method("eth_getTransactionCount", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
def eth_get_transaction_count(node: NodeAPI, address: bytes, tag: BlockTag) -> str:
    if tag.name == "pending":
        return encode_quantity(node.mempool.get_pending_nonce(address))
    return encode_quantity(get_state(node, tag).get_nonce(address))


@method("eth_getCode", Param("address", parse_address), Param("block", parse_block_tag, "latest"))
def eth_get_code(node: NodeAPI, address: bytes, tag: BlockTag) -> str:
    get_tagged_header(node, tag)
    return "0x"


@method("eth_getStorageAt", Param("address", parse_address), Param("slot", parse_slot),
        Param("block", parse_block_tag, "latest"))
def eth_get_storage_at(node: NodeAPI, address: bytes, slot: bytes, tag: BlockTag) -> str:
    value = get_state(node, tag).get_storage(address, slot)
    # Record slots may hold more than 32 bytes of RLP; those are returned whole, not truncated.
    return encode_data(value.rjust(32, b"\x00"))


def parse_slots(value) -> list[bytes]:
    if not isinstance(value, list) or len(value) > 256:
        raise InvalidParams("storage keys must be an array of at most 256 slots", got=value, expected="array")
    return [parse_slot(slot) for slot in value]


@method("eth_getProof", Param("address", parse_address), Param("storageKeys", parse_slots),
        Param("block", parse_block_tag, "latest"))
def eth_get_proof(node: NodeAPI, address: bytes, slots: list[bytes], tag: BlockTag) -> dict:
    header = get_tagged_header(node, tag)
    proof = node.chain.state_at(header.state_root).get_proof(address, slots)
    return {
        "address": encode_data(proof.address),
        "accountProof": [encode_data(p) for p in proof.account_proof],
        "balance": encode_quantity(proof.balance),
        "codeHash": encode_data(proof.code_hash),
        "nonce": encode_quantity(proof.nonce),
        "storageHash": encode_data(proof.storage_hash),
        "storageProof": [
            {"key": encode_data(s.key), "value": encode_quantity(s.value), "proof": [encode_data(p) for p in s.proof]}
            for s in proof.storage_proof
        ],
    }


# --- transactions ---------------------------------------------------------------------------------

@method("eth_sendRawTransaction", Param("data", lambda value: parse_data(value, max_length=256 * 1024)))
def eth_send_raw_transaction(node: NodeAPI, raw: bytes) -> str:
    return encode_data(node.submit_transaction(raw))


@method("eth_getTransactionByHash", Param("hash", parse_hash))
def eth_get_transaction_by_hash(node: NodeAPI, tx_hash: bytes) -> dict | None:
    try:
        block, index, raw = node.chain.get_transaction(tx_hash)
    except UnknownTransaction:
        pending = node.mempool.get(tx_hash)
        return None if pending is None else encode_transaction(node, pending.raw, None, None)
    return encode_transaction(node, raw, block, index)


@method("eth_getTransactionByBlockNumberAndIndex", Param("block", parse_block_tag), Param("index", parse_quantity))
def eth_get_transaction_by_block_number_and_index(node: NodeAPI, tag: BlockTag, index: int) -> dict | None:
    try:
        block = get_tagged_block(node, tag)
    except NotFound:
        return None
    if index >= len(block.transactions):
        return None
    return encode_transaction(node, block.transactions[index], block, index)


@method("eth_getTransactionByBlockHashAndIndex", Param("hash", parse_hash), Param("index", parse_quantity))
def eth_get_transaction_by_block_hash_and_index(node: NodeAPI, block_hash: bytes, index: int) -> dict | None:
    return eth_get_transaction_by_block_number_and_index(node, BlockTag(hash=block_hash), index)


@method("eth_getTransactionReceipt", Param("hash", parse_hash))
def eth_get_transaction_receipt(node: NodeAPI, tx_hash: bytes) -> dict | None:
    try:
        block, index, receipt, reason = node.chain.get_receipt(tx_hash)
    except UnknownTransaction:
        return get_block_events_receipt(node, tx_hash)
    return encode_receipt(node, block, index, receipt, reason)


def get_block_events_receipt(node: NodeAPI, events_hash: bytes) -> dict | None:
    """The receipt `eth_getBlockReceipts` lists last for a block's end-of-block events, found by its hash."""
    try:
        block, block_receipt = node.chain.get_block_events_receipt(events_hash)
    except UnknownTransaction:
        return None
    return encode_block_receipt(block, node.chain.get_receipts(block.hash), block_receipt)


@method("eth_getBlockReceipts", Param("block", parse_block_tag))
def eth_get_block_receipts(node: NodeAPI, tag: BlockTag) -> list | None:
    try:
        block = get_tagged_block(node, tag)
    except NotFound:
        return None
    receipts = node.chain.get_receipts(block.hash)
    reasons = node.chain.store.get_failure_reasons(block.hash)
    encoded = [encode_receipt(node, block, i, r, reasons[i].decode()) for i, r in enumerate(receipts)]
    block_receipt = node.chain.store.get_block_receipt(block.hash)
    if block_receipt is not None:
        encoded.append(encode_block_receipt(block, receipts, block_receipt))
    return encoded


# --- fees (no fee market: the base fee is reported but waived, tips go to the pool) ------------------

@method("eth_gasPrice")
def eth_gas_price(node: NodeAPI) -> str:
    # As a 1559 chain answers: base fee plus the suggested tip (0). Only legacy senders read it.
    return encode_quantity(WAIVED_BASE_FEE_PER_GAS)


@method("eth_maxPriorityFeePerGas")
def eth_max_priority_fee_per_gas(node: NodeAPI) -> str:
    return "0x0"


def parse_percentiles(value) -> list[float]:
    if value is None:
        return []
    if (not isinstance(value, list) or len(value) > 100
            or not all(isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 100 for p in value)):
        raise InvalidParams("reward percentiles must be numbers in 0..100", got=value, expected="[0..100, ...]")
    return value


@method("eth_feeHistory", Param("blockCount", parse_quantity), Param("newestBlock", parse_block_tag),
        Param("rewardPercentiles", parse_percentiles, None))
def eth_fee_history(node: NodeAPI, count: int, tag: BlockTag, percentiles: list[float] | None) -> dict:
    newest = get_tagged_header(node, tag).number
    count = min(count, MAX_FEE_HISTORY_BLOCKS, newest + 1)
    oldest = newest - count + 1
    history = {
        "oldestBlock": encode_quantity(oldest),
        "baseFeePerGas": [encode_quantity(WAIVED_BASE_FEE_PER_GAS)] * (count + 1),
        "gasUsedRatio": [0.0] * count,
    }
    if percentiles is not None:
        history["reward"] = [["0x0"] * len(percentiles) for _ in range(count)]
    return history


def parse_call(value) -> dict:
    call = parse_object(value)
    parsed = {"to": parse_address(call["to"]) if call.get("to") else b"",
              "data": parse_data(call.get("data", call.get("input", "0x")), max_length=256 * 1024),
              "value": parse_quantity(call.get("value", "0x0"))}
    return parsed


def compute_intrinsic_gas(data: bytes) -> int:
    """What a work transaction costs: Ethereum's intrinsic gas (no execution happens beyond it)."""
    zeros = data.count(0)
    return GAS_TX + zeros * GAS_TXDATAZERO + (len(data) - zeros) * GAS_TXDATANONZERO_EIP2028


@method("eth_estimateGas", Param("call", parse_call), Param("block", parse_block_tag, "latest"))
def eth_estimate_gas(node: NodeAPI, call: dict, tag: BlockTag) -> str:
    # Refuse what the chain would refuse (a transfer to an account, value on a non-offering),
    # so a wallet hears about it before signing rather than after. As geth reports a call
    # that cannot run (code 3, "execution reverted: ..."), which ethers and viem surface
    # as the error's reason instead of a generic failure.
    try:
        kind = get_kind(call["to"])
    except TransactionError as error:
        raise ExecutionReverted(str(error)) from None
    if call["value"] and kind != "offering":
        raise ExecutionReverted(f"only an offering may carry value: a {kind} transaction carries {call['value']} wei")
    return encode_quantity(compute_intrinsic_gas(call["data"]))
