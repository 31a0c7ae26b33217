"""Work events read by an unmodified web3.py from a real node: receipts' logs, eth_getLogs, filters, eth_subscribe.

One `node.service.Node` (a single validator finalising with consensus) serves
HTTP and WebSocket on one port. web3.py signs and sends an offering and a
worker registration with its default send, decodes their receipts' logs with
the published ABI (docs/abi/magicoin.json), queries them with `get_logs`
(address and topic filters, a block hash, a contract event's argument
filter), polls a block filter and a log filter, and sees refused work log
nothing. A websocket client (the `websockets` package) subscribes to newHeads
and to the offering's logs and receives both as the blocks are imported; so
does web3.py's own `WebSocketProvider` (`AsyncWeb3`, `eth.subscribe`).
"""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import rlp
import trio
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import AsyncWeb3, Web3, WebSocketProvider
from web3.exceptions import Web3RPCError
from web3.middleware import SignAndSendRawMiddlewareBuilder
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from chain.payloads import Annotation, Offering, RegisterWorker
from chain.transactions import ADDRESS_BY_KIND
from genesis import DEFAULT_MODEL_CARD, MUAGIC
from node.ws import Connection
from tests.node.nodekit import VALIDATOR_KEYS, make_node, make_test_genesis, start_node

ABI = json.loads((Path(__file__).parents[2] / "docs" / "abi" / "magicoin.json").read_text())
OFFERING_TOPIC = "0x" + keccak(b"Offering(address,bytes32,uint256)").hex()


def contract(w3: Web3, name: str):
    return w3.eth.contract(address=to_checksum_address(ABI[name]["address"]), abi=ABI[name]["abi"])


def pad(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


class Subscriber:
    """A websocket client in its own thread: subscribes, then collects notifications until told what to wait for."""

    def __init__(self, url: str) -> None:
        self.socket = connect(url, open_timeout=10, legacy=True)  # used across threads, closed by the test
        self.ids: dict[str, str] = {}
        self.notifications: list[dict] = []

    def call(self, method: str, params: list, request_id: int) -> dict:
        self.socket.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=10))
            if message.get("id") == request_id:
                return message
            self.notifications.append(message)  # a notification that arrived before the answer

    def wait_for(self, predicate, timeout: float = 30.0) -> dict:
        for message in self.notifications:
            if predicate(message):
                return message
        while True:
            message = json.loads(self.socket.recv(timeout=timeout))
            self.notifications.append(message)
            if predicate(message):
                return message


async def test_web3_reads_work_logs_filters_and_websocket_subscriptions(tmp_path, nursery):
    node = make_node(make_test_genesis(1), tmp_path / "node", VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    await start_node(nursery, node)
    with trio.fail_after(30):
        while node.http_url is None or node.chain.height < 1:
            await trio.sleep(0.05)
    account = Account.from_key(VALIDATOR_KEYS[0])
    w3 = Web3(Web3.HTTPProvider(node.http_url))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    pool, workers = contract(w3, "MagicoinPool"), contract(w3, "MagicoinWorkers")
    ws_url = node.http_url.replace("http://", "ws://")

    def subscribe() -> Subscriber:
        subscriber = Subscriber(ws_url)
        heads = subscriber.call("eth_subscribe", ["newHeads"], 1)
        logs = subscriber.call("eth_subscribe", ["logs", {"address": pool.address, "topics": [OFFERING_TOPIC]}], 2)
        subscriber.ids = {"heads": heads["result"], "logs": logs["result"]}
        assert subscriber.call("eth_blockNumber", [], 3)["result"].startswith("0x")  # any method, over the socket
        return subscriber

    subscriber = await trio.to_thread.run_sync(subscribe)

    def send(kind: str, payload, value: int = 0):
        tx_hash = w3.eth.send_transaction({"from": account.address, "value": value,
                                           "to": to_checksum_address(ADDRESS_BY_KIND[kind]),
                                           "data": rlp.encode(payload)})
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.1)

    def use_web3():
        block_filter = w3.eth.filter("latest")
        # fromBlock 0: eth_getFilterLogs reads the whole range; eth_getFilterChanges only what came since.
        log_filter = w3.eth.filter({"fromBlock": 0, "address": pool.address, "topics": [OFFERING_TOPIC]})
        offered = send("offering", Offering(b"logs", b""), 3 * MUAGIC)
        registered = send("register_worker", RegisterWorker(DEFAULT_MODEL_CARD.sha256, 50, b"test"))
        # An answer to a task nobody posted: included, refused by the economy (status 0), and it logs nothing.
        refused = send("annotation", Annotation(b"\x42" * 32, 0))
        return block_filter, log_filter, offered, registered, refused

    block_filter, log_filter, offered, registered, refused = await trio.to_thread.run_sync(use_web3)

    def check_receipts():
        [event] = pool.events.Offering().process_receipt(offered)
        assert event["args"]["account"] == account.address and event["args"]["amount"] == 3 * MUAGIC
        assert event["args"]["jobId"] == b"\x00" * 32
        assert event["transactionHash"] == offered["transactionHash"] and event["logIndex"] == 0
        assert event["address"] == pool.address and event["blockHash"] == offered["blockHash"]
        [event] = workers.events.WorkerRegistered().process_receipt(registered)
        assert event["args"]["worker"] == account.address and event["args"]["capacity"] == 50
        assert event["args"]["model"] == DEFAULT_MODEL_CARD.sha256
        assert refused["status"] == 0 and refused["logs"] == [] and refused["logsBloom"] == b"\x00" * 256
        assert offered["logsBloom"] != b"\x00" * 256
        block = w3.eth.get_block(offered["blockNumber"])
        assert block["logsBloom"] != b"\x00" * 256

    def check_get_logs():
        found = w3.eth.get_logs({"fromBlock": 0, "toBlock": "latest", "address": pool.address,
                                 "topics": [OFFERING_TOPIC]})
        assert [log["transactionHash"] for log in found] == [offered["transactionHash"]]
        assert w3.eth.get_logs({"fromBlock": 0, "address": pool.address,
                                "topics": [OFFERING_TOPIC, pad(account.address)]}) == found
        assert w3.eth.get_logs({"fromBlock": 0, "topics": [OFFERING_TOPIC, pad("0x" + "42" * 20)]}) == []
        assert w3.eth.get_logs({"fromBlock": 0, "topics": [None, pad(account.address)]})  # wildcard position
        by_block = w3.eth.get_logs({"blockHash": offered["blockHash"]})
        assert offered["transactionHash"] in [log["transactionHash"] for log in by_block]
        events = pool.events.Offering().get_logs(from_block=0, argument_filters={"account": account.address})
        assert [e["args"]["amount"] for e in events] == [3 * MUAGIC]
        kinds = {contract(w3, "MagicoinWorkers").address}
        assert {log["address"] for log in w3.eth.get_logs({"fromBlock": 0, "address": list(kinds)})} == kinds
        with pytest.raises(Web3RPCError, match="block range too large"):
            w3.eth.get_logs({"fromBlock": 0, "toBlock": 20_000})

    def check_filters():
        hashes = block_filter.get_new_entries()
        assert offered["blockHash"] in hashes and registered["blockHash"] in hashes
        assert [log["transactionHash"] for log in log_filter.get_new_entries()] == [offered["transactionHash"]]
        assert log_filter.get_new_entries() == []  # reported once
        assert [log["transactionHash"] for log in w3.eth.get_filter_logs(log_filter.filter_id)] == [
            offered["transactionHash"]]
        assert w3.eth.uninstall_filter(log_filter.filter_id) is True
        assert w3.eth.uninstall_filter(log_filter.filter_id) is False
        with pytest.raises(Web3RPCError, match="filter not found"):
            w3.eth.get_filter_changes(log_filter.filter_id)
        with pytest.raises(Web3RPCError, match="not supported"):
            w3.eth.filter("pending")

    await trio.to_thread.run_sync(check_receipts)
    await trio.to_thread.run_sync(check_get_logs)
    await trio.to_thread.run_sync(check_filters)

    def check_subscriptions():
        heads_id, logs_id = subscriber.ids["heads"], subscriber.ids["logs"]
        head = subscriber.wait_for(lambda m: m.get("params", {}).get("subscription") == heads_id)
        assert int(head["params"]["result"]["number"], 16) >= 1 and "transactions" not in head["params"]["result"]
        log = subscriber.wait_for(lambda m: m.get("params", {}).get("subscription") == logs_id)["params"]["result"]
        assert log["transactionHash"] == "0x" + bytes(offered["transactionHash"]).hex()
        assert log["topics"][0] == OFFERING_TOPIC and log["address"].lower() == pool.address.lower()
        assert all(m["params"]["result"]["topics"][0] == OFFERING_TOPIC for m in subscriber.notifications
                   if m.get("params", {}).get("subscription") == logs_id)  # only what the filter matches
        assert subscriber.call("eth_unsubscribe", [logs_id], 10)["result"] is True
        assert subscriber.call("eth_subscribe", ["newPendingTransactions"], 11)["error"]["code"] == -32602
        subscriber.socket.close()

    await trio.to_thread.run_sync(check_subscriptions)

    async def web3_subscriptions():
        # web3.py's own websocket provider (asyncio, in this worker thread) against the same port.
        async with AsyncWeb3(WebSocketProvider(ws_url)) as aw3:
            heads = await aw3.eth.subscribe("newHeads")
            logs = await aw3.eth.subscribe("logs", {"address": pool.address, "topics": [OFFERING_TOPIC]})
            sent = asyncio.create_task(asyncio.to_thread(send, "offering", Offering(b"again", b""), MUAGIC))
            seen: dict[str, dict] = {}
            async for payload in aw3.socket.process_subscriptions():
                seen.setdefault(payload["subscription"], payload["result"])
                if heads in seen and logs in seen:
                    break
            receipt = await sent
            assert bytes(seen[logs]["transactionHash"]) == bytes(receipt["transactionHash"])
            assert await aw3.eth.unsubscribe(logs) is True

    await trio.to_thread.run_sync(lambda: asyncio.run(asyncio.wait_for(web3_subscriptions(), 30)))
    nursery.cancel_scope.cancel()


def test_a_subscriber_that_stops_reading_is_dropped_not_buffered():
    connection = Connection()
    for index in range(connection.outbox.statistics().max_buffer_size):
        connection.push(f"message {index}")
    assert not connection.dropped
    connection.push("one too many")
    assert connection.dropped
    connection.push("after the drop")  # ignored, never raises


async def test_an_idle_websocket_without_subscriptions_is_closed_and_a_subscriber_is_kept(tmp_path, nursery,
                                                                                         monkeypatch):
    """Idle sockets cannot hold the connection slots; a quiet subscriber is listening and stays."""
    monkeypatch.setattr("node.ws.IDLE_SECONDS", 0.5)
    node = await start_node(nursery, make_node(make_test_genesis(1), tmp_path / "n0", VALIDATOR_KEYS[0], [],
                                               block_interval=0.2, http=("127.0.0.1", 0)))
    ws_url = node.http_url.replace("http://", "ws://")

    def run_clients() -> tuple[int | None, str | None]:
        idle = connect(ws_url, open_timeout=10, legacy=True)
        listener = Subscriber(ws_url)
        assert "result" in listener.call("eth_subscribe", ["newHeads"], 1)
        try:
            idle.recv(timeout=10)  # nothing is sent to it: the node closes it
        except ConnectionClosed:
            pass
        closed = (idle.close_code, idle.close_reason)
        # The subscriber, silent for several idle periods, still gets new heads.
        time.sleep(1.5)
        listener.notifications.clear()
        listener.wait_for(lambda message: message.get("method") == "eth_subscription", timeout=10)
        listener.socket.close()
        return closed

    code, reason = await trio.to_thread.run_sync(run_clients)
    assert code == 1000 and "idle" in reason, (code, reason)
