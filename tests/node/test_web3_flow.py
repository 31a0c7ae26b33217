"""Unmodified web3.py's default send against a real node on loopback, from fresh zero-balance accounts.

The flow a Python user writes: `SignAndSendRawMiddlewareBuilder` with a local
account, then `w3.eth.send_transaction({"from", "to", "data"})`, leaving web3
to fill the chain id, the pending nonce, gas (eth_estimateGas) and the fees
(its default dynamic-fee strategy: eth_maxPriorityFeePerGas and the latest
block's baseFeePerGas), then `wait_for_transaction_receipt`. Every work kind a
zero-balance account may submit must complete with status 1 and cost nothing;
a value transfer must be refused with words a user can read.
"""
from __future__ import annotations

import rlp
import trio
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError
from web3.middleware import SignAndSendRawMiddlewareBuilder

from chain.payloads import AnnotationTask, RegisterAnnotator, RegisterWorker
from chain.transactions import ADDRESS_BY_KIND
from genesis import DEFAULT_MODEL_CARD
from tests.node.nodekit import (
    PARAMS,
    VALIDATOR_KEYS,
    make_node,
    make_test_genesis,
    start_node,
)

FRESH_KEY = keccak(b"web3-test-fresh-account")
ANNOTATOR_KEY = keccak(b"web3-test-fresh-annotator")
# No gold set: registered annotators have weight at once, so the fresh account's annotation task finds one.
GENESIS = make_test_genesis(1, PARAMS.copy(annotator_min_gold=0, annotator_prior_correct=2))


def make_sends() -> list[tuple[str, bytes, bytes]]:
    """(kind, signing key, payload) for each zero-balance work kind; the annotator registers before the task."""
    model = DEFAULT_MODEL_CARD.sha256
    return [
        ("register_annotator", ANNOTATOR_KEY, rlp.encode(RegisterAnnotator(b"person"))),
        ("register_annotator", FRESH_KEY, rlp.encode(RegisterAnnotator(b"model:" + model.hex().encode()))),
        ("annotation_task", FRESH_KEY, rlp.encode(AnnotationTask(b"is the sky blue?", [b"yes", b"no"], 1))),
        ("register_worker", FRESH_KEY, rlp.encode(RegisterWorker(model, 10, b"backend=web3-test"))),
    ]


def run_default_sends(url: str) -> tuple[list[dict], str]:
    """Each send through web3's default path; then a value transfer, whose refusal message is returned."""
    w3 = Web3(Web3.HTTPProvider(url))
    accounts = {key: Account.from_key(key) for key in (FRESH_KEY, ANNOTATOR_KEY)}
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(list(accounts.values())), layer=0)
    receipts = []
    for kind, key, data in make_sends():
        tx_hash = w3.eth.send_transaction({"from": accounts[key].address,
                                           "to": to_checksum_address(ADDRESS_BY_KIND[kind]), "data": data})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
        receipts.append({"kind": kind, "receipt": receipt, "tx": w3.eth.get_transaction(tx_hash)})
    try:
        w3.eth.send_transaction({"from": accounts[FRESH_KEY].address, "value": 1,
                                 "to": to_checksum_address(keccak(b"someone")[:20])})
    except (ContractLogicError, Web3RPCError) as error:  # the node refuses web3's gas estimate, as geth a revert
        return receipts, str(error)
    raise AssertionError("a value transfer was accepted")


async def test_web3_default_send_completes_for_zero_balance_work(tmp_path, nursery):
    node = make_node(GENESIS, tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0), block_interval=0.2)
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < 1:
            await trio.sleep(0.05)

    with trio.fail_after(90):
        receipts, refusal = await trio.to_thread.run_sync(run_default_sends, node.http_url)
    assert [sent["kind"] for sent in receipts] == [kind for kind, _, _ in make_sends()]
    for sent in receipts:
        assert sent["receipt"]["status"] == 1, sent
        assert sent["tx"]["type"] == 2, sent  # web3 chose a dynamic-fee (EIP-1559) transaction by itself
        assert sent["receipt"].get("failureReason") in (None, ""), sent
    for key in (FRESH_KEY, ANNOTATOR_KEY):  # nothing was charged: the accounts still hold nothing
        assert node.chain.state.get_balance(bytes.fromhex(Account.from_key(key).address[2:])) == 0
    assert "MUAGIC never moves between accounts" in refusal, refusal
    nursery.cancel_scope.cancel()
