"""The node: the chain, the mempool and every service, started in one trio nursery.

`Node` implements `node.abc.NodeAPI` (what the RPC layer, the OpenAI API and
the devnet see). `Node.run` is a list of services started in order:
p2p (listening first), block sync, consensus, transaction gossip, the HTTP
server, the metrics exporter and the worker/validator duties. Cancelling it
(SIGINT/SIGTERM through `run_until_signalled`) stops them all; the database
is closed after the nursery has exited, so no service writes to a closed DB.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from functools import partial
from pathlib import Path

import rlp
import trio
from eth_keys import keys
from eth_utils import keccak

from chain.chain import Chain
from chain.db import LevelDB
from chain.exceptions import ChainError, TransactionError
from chain.payloads import Evidence
from chain.transactions import sign_work_transaction
from consensus.bft import TimeoutConfig
from economy import make_work_rules
from genesis import Genesis
from node.abc import InferenceGatewayAPI, NodeAPI, SyncStatus
from node.chain_importer import ChainImporter
from node.consensus_service import ConsensusService
from node.exceptions import AlreadyKnown, MempoolError, NonceTooLow
from node.gateway import InferenceGateway
from node.http import serve_http
from node.mempool import Mempool, MempoolConfig
from node.metrics import NodeMetrics, serve_metrics, watch_loop_lag
from node.rpc_admission import DEFAULT_RPC_LIMITS, RPCLimits
from node.sync_service import SyncService
from node.ws import publish_block
from p2p import GossipMessage, P2PConfig, P2PService, Topic, ValidationResult

logger = logging.getLogger("node")

NODEKEY_FILE = "nodekey"
CHAINDATA_DIR = "chaindata"


def load_or_create_nodekey(datadir: Path) -> bytes:
    """The p2p identity of a node that has no validator key, kept across restarts."""
    path = datadir / NODEKEY_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    key = os.urandom(32)
    path.write_text(key.hex())
    path.chmod(0o600)
    return key


class Node(NodeAPI):
    def __init__(
        self,
        genesis: Genesis,
        datadir: Path,
        *,
        validator_key: bytes | None = None,
        p2p_host: str = "127.0.0.1",
        p2p_port: int = 0,
        bootnodes: tuple[str, ...] = (),
        http: tuple[str, int] | None = None,
        metrics_address: tuple[str, int] | None = None,
        timeouts: TimeoutConfig = TimeoutConfig(),
        block_interval: float = 0.5,
        mempool_config: MempoolConfig = MempoolConfig(),
        duties=None,
        p2p_overrides: dict | None = None,
        rpc_limits: RPCLimits = DEFAULT_RPC_LIMITS,
    ) -> None:
        self.genesis = genesis
        self.datadir = Path(datadir)
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.db = LevelDB(self.datadir / CHAINDATA_DIR)
        try:
            self.assemble(genesis, validator_key, p2p_host, p2p_port, bootnodes, timeouts, block_interval,
                          mempool_config, p2p_overrides)
        except BaseException:
            self.db.close()  # e.g. another chain's datadir, or a corrupt consensus state: release the lock
            raise
        self.http_address = http
        self.rpc_limits = rpc_limits
        self.http_url: str | None = None
        self.metrics_address = metrics_address
        self.duties = duties
        if duties is not None:
            duties.attach(self)
        self.inference: InferenceGatewayAPI | None = InferenceGateway(self)
        self.started_at = time.time()
        self.last_block_at: float | None = None

    def assemble(self, genesis, validator_key, p2p_host, p2p_port, bootnodes, timeouts, block_interval,
                 mempool_config, p2p_overrides) -> None:
        """The chain and the services around it, wired to each other (nothing runs yet)."""
        self.chain = Chain.from_genesis(self.db, genesis, make_work_rules)
        self.key = validator_key if validator_key is not None else load_or_create_nodekey(self.datadir)
        self.address = keys.PrivateKey(self.key).public_key.to_canonical_address()
        self.metrics = NodeMetrics()
        self.mempool = Mempool(genesis, lambda: self.chain.state, mempool_config, rules=self.chain.rules)
        self.importer = ChainImporter(self.chain)
        self.p2p = P2PService(P2PConfig(
            private_key=keys.PrivateKey(self.key), chain_id=genesis.chain_id, genesis_hash=genesis.genesis_hash,
            listen_host=p2p_host, listen_port=p2p_port, bootnodes=tuple(bootnodes), **(p2p_overrides or {}),
        ))
        self.sync = SyncService(self.chain, self.importer, self.p2p)
        self.consensus = ConsensusService(
            self.chain, self.importer, self.mempool, self.p2p, self.key, self.datadir,
            timeouts=timeouts, block_interval=block_interval, on_behind=self.sync.request_sync,
            on_evidence=self.submit_evidence,
        )
        self.evidence_sent: set[tuple[bytes, int, int, int]] = set()
        self.sync.fetch_head_commit = self.consensus.fetch_head_commit
        self.importer.add_listener(self.on_block_imported)

    # --- NodeAPI ----------------------------------------------------------------------------

    def submit_transaction(self, raw_tx: bytes) -> bytes:
        tx_hash = self.mempool.add(raw_tx)
        self.p2p.publish(Topic.TRANSACTIONS, raw_tx)
        return tx_hash

    def get_sync_status(self) -> SyncStatus | None:
        return self.sync.get_status()

    def get_status(self) -> dict:
        finality = [seconds for _, _, seconds in self.consensus.decisions[-50:]]
        status = {
            "height": self.chain.height,
            "headHash": "0x" + self.chain.head.hash.hex(),
            "chainId": self.genesis.chain_id,
            "address": "0x" + self.address.hex(),
            "enode": str(self.p2p.enode) if self.p2p.listen_port is not None else None,
            "peers": len(self.p2p.get_peers()),
            "mempool": self.mempool.statistics()["size"],
            "lastFinalityMs": int(finality[-1] * 1000) if finality else None,
            "meanFinalityMs": int(sum(finality) / len(finality) * 1000) if finality else None,
            "syncing": self.sync.get_status() is not None,
            "role": "validator" if self.consensus.is_validator else "follower",
            "worker": self.duties is not None,
            "uptimeSeconds": int(time.time() - self.started_at),
            "loopLag": self.metrics.loop_lag_window.get_summary(),  # how late the loop runs ready tasks
            # [height, ms from the height's first proposal seen to its decision], the last 50 heights decided here
            "recentFinalityMs": [[height, int(seconds * 1000)] for height, _, seconds in self.consensus.decisions[-50:]],
        }
        status.update(self.consensus.get_status())
        if self.duties is not None:
            status.update(self.duties.get_status())
        return status

    # --- services ---------------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run every service until cancelled; the database is closed on the way out."""
        try:
            async with trio.open_nursery() as nursery:
                await self.start_services(nursery)
                logger.info("node started height=%d address=%s enode=%s", self.chain.height,
                            self.address.hex(), self.p2p.enode)
                task_status.started()
        finally:
            self.close()

    async def start_services(self, nursery: trio.Nursery) -> None:
        transactions = self.p2p.subscribe(Topic.TRANSACTIONS, self.on_transaction_gossip)
        await nursery.start(self.p2p.run)
        await nursery.start(self.sync.run)
        await nursery.start(self.consensus.run)
        nursery.start_soon(self.drain, transactions)
        nursery.start_soon(self.refresh_gauges)
        nursery.start_soon(watch_loop_lag, self.metrics)
        if self.http_address is not None:
            self.http_url = await nursery.start(partial(serve_http, self, *self.http_address,
                                                        rpc_limits=self.rpc_limits))
        if self.duties is not None:
            await nursery.start(self.duties.run)
        if self.metrics_address is not None:
            server = serve_metrics(self.metrics, *self.metrics_address)
            nursery.start_soon(self.stop_on_cancel, server)

    def close(self) -> None:
        if not self.db.closed:
            self.db.close()
            logger.info("node stopped height=%d", self.chain.height)

    async def stop_on_cancel(self, server) -> None:
        try:
            await trio.sleep_forever()
        finally:
            await trio.to_thread.run_sync(server.shutdown)
            server.server_close()

    # --- transactions from peers ------------------------------------------------------------

    def on_transaction_gossip(self, message: GossipMessage) -> ValidationResult:
        """Admission to our mempool is the validation: forward only what we would include."""
        try:
            self.mempool.add(message.payload)
        except (AlreadyKnown, NonceTooLow):
            return ValidationResult.IGNORE
        except MempoolError:
            return ValidationResult.IGNORE  # full or over a limit here; not the sender's fault
        except TransactionError:
            return ValidationResult.REJECT
        except ChainError:
            return ValidationResult.IGNORE
        return ValidationResult.ACCEPT

    async def drain(self, channel) -> None:
        # Accepted transactions are already in the mempool; the channel only has to be emptied.
        async for _message in channel:
            pass

    def submit_evidence(self, vote_a, vote_b) -> None:
        """Put a double sign on chain (it slashes the signer); once per offence, from this node's key."""
        offence = (vote_a.validator, vote_a.height, vote_a.round, vote_a.vote_type)
        if offence in self.evidence_sent:
            return
        self.evidence_sent.add(offence)
        raw = sign_work_transaction(self.key, chain_id=self.genesis.chain_id,
                                    nonce=self.mempool.get_pending_nonce(self.address), kind="evidence",
                                    data=rlp.encode(Evidence(rlp.encode(vote_a), rlp.encode(vote_b))), gas=1_000_000)
        try:
            self.submit_transaction(raw)
        except (ChainError, MempoolError) as error:
            logger.warning("evidence not submitted error=%s", error)

    # --- following the head -----------------------------------------------------------------

    def on_block_imported(self, block) -> None:
        self.mempool.on_block([compute_tx_hash(raw) for raw in block.transactions])
        publish_block(self, block)  # websocket subscribers (node.ws); never waits
        self.last_block_at = time.time()
        self.metrics.height.set(block.header.number)
        self.metrics.block_txs.inc(len(block.transactions))
        if self.consensus.decisions and self.consensus.decisions[-1][0] == block.header.number:
            _, round_, seconds = self.consensus.decisions[-1]
            self.metrics.finality.observe(seconds)
            self.metrics.rounds.inc(round_ + 1)

    async def refresh_gauges(self) -> None:
        while True:
            self.metrics.peers.set(len(self.p2p.get_peers()))
            self.metrics.mempool_size.set(len(self.mempool))
            self.metrics.height.set(self.chain.height)
            await trio.sleep(1)


def compute_tx_hash(raw: bytes) -> bytes:
    return keccak(raw)


async def run_until_signalled(node: Node, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Run the node until SIGINT or SIGTERM, then shut every service down in order."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            task_status.started()
            async for signum in signals:
                logger.info("shutting down on %s", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break
