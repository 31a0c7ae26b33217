"""An account's own work, found by scanning a bounded range of blocks for the transactions it sent.

The chain keeps no index by sender (records are keyed by job and task id), so
`muagic_getAccountWork` walks the canonical blocks of a range of at most
`MAX_SCAN_BLOCKS`, newest first. Two things keep it cheap enough to answer on
the node's event loop: an empty block costs one slice of its stored RLP (no
decode), and the account's nonce before and after the range says how many
transactions it sent in it, so the walk stops once they are all found.
"""
from __future__ import annotations

from typing import Iterator, NamedTuple

import rlp

from chain.blocks import split_encoded_block
from chain.payloads import compute_work_id
from chain.transactions import Transaction, decode_transaction
import economy
from node.abc import NodeAPI

MAX_SCAN_BLOCKS = 10_000
EMPTY_RLP_LIST = b"\xc0"
CREATING_KINDS = ("inference_request", "annotation_task")  # their work id is (sender, nonce)
JOB_KINDS = ("inference_request", "inference_result", "attestation", "offering")
TASK_KINDS = ("annotation_task", "annotation")


class AccountWork(NamedTuple):
    tx_hash: bytes
    block_number: int
    nonce: int
    kind: str
    work_id: bytes | None  # the job or task the transaction created or answered
    receipt_status: int
    failure_reason: str


def get_work_id(tx: Transaction) -> bytes | None:
    if tx.kind in CREATING_KINDS:
        return compute_work_id(tx.sender, tx.nonce)
    payload = tx.payload
    for field in ("job_id", "task_id"):
        value = getattr(payload, field, b"") if payload is not None else b""
        if len(value) == 32:
            return value
    return None


def count_sent(node: NodeAPI, address: bytes, first: int, last: int) -> int | None:
    """How many transactions `address` sent in blocks first..last: the nonce difference (None if unreadable)."""
    chain = node.chain
    try:
        after = chain.state_at(chain.get_header(last).state_root).get_nonce(address)
        before = chain.state_at(chain.get_header(first - 1).state_root).get_nonce(address) if first > 0 else 0
    except Exception:  # noqa: BLE001 - a pruned state root only costs the early stop
        return None
    return after - before


def iter_sent(node: NodeAPI, address: bytes, first: int, last: int) -> Iterator[AccountWork]:
    """The account's transactions in blocks last..first, newest first."""
    chain, genesis = node.chain, node.genesis
    for number in range(last, first - 1, -1):
        block_hash = chain.store.get_canonical_hash(number)
        _, encoded_txs, _ = split_encoded_block(chain.store.get_encoded_block(block_hash))
        if encoded_txs == EMPTY_RLP_LIST:
            continue
        raw_txs = rlp.decode(encoded_txs)
        matches = [(index, tx) for index, tx in enumerate(
            decode_transaction(raw, genesis.chain_id, genesis.params.max_payload_size) for raw in raw_txs)
            if tx.sender == address]
        if not matches:
            continue
        receipts = chain.get_receipts(block_hash)
        reasons = chain.store.get_failure_reasons(block_hash)
        for index, tx in reversed(matches):
            yield AccountWork(tx.hash, number, tx.nonce, tx.kind, get_work_id(tx), receipts[index].status,
                              reasons[index].decode(errors="replace"))


def find_account_work(node: NodeAPI, address: bytes, first: int, last: int) -> list[AccountWork]:
    """The account's transactions in blocks first..last, oldest first."""
    expected = count_sent(node, address, first, last)
    found: list[AccountWork] = []
    if expected == 0:
        return found
    for item in iter_sent(node, address, first, last):
        found.append(item)
        if expected is not None and len(found) >= expected:
            break
    found.reverse()
    return found


def get_work_status(state, item: AccountWork) -> str | None:
    """The status of the job or task the transaction names ("accepted", "open", ...), None if it has none."""
    if item.work_id is None:
        return None
    if item.kind in JOB_KINDS:
        record, statuses = economy.get_job(state, item.work_id), economy.JobStatus
    elif item.kind in TASK_KINDS:
        record, statuses = economy.get_task(state, item.work_id), economy.TaskStatus
    else:
        return None
    if record is None:
        return None
    names = {value: name.lower() for name, value in vars(statuses).items()
             if name.isupper() and isinstance(value, int)}
    return names.get(record.status, f"unknown_{record.status}")
