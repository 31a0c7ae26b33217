"""The consensus service: a validator's (or follower's) part in Tendermint, assembled from its pieces.

Owns the wiring and nothing else: one `TendermintMachine`, the candidate blocks
of the current height, the persisted machine state, and the three pieces that
share them, namely the round driver (`node.consensus_driver`: gossip in,
timers, proposing, judging, deciding), the request server
(`node.consensus_serving.ConsensusServer`) and the fetcher that asks peers for
what is missing (`node.consensus_serving.ConsensusFetcher`). The wire format is
`node.consensus_wire`; what is written to disk is `node.consensus_persistence`.

Liveness: a validator that waits past a timeout pulls the current height's
messages from its peers, and a peer that reports a higher height makes the
node run block sync (`on_behind`). With adaptive timeouts (`timeouts.adaptive`,
the default) the driver paces its timers with a `consensus.pacing.Pacer`, so a
validator that is down costs its proposer turns a fraction of a second.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import trio

from chain.chain import Chain
from consensus.bft import TendermintMachine, TimeoutConfig
from consensus.pacing import Pacer, PacingConfig
from consensus.votes import Vote
from node.chain_importer import ChainImporter
from node.consensus_blocks import CandidateBlocks
from node.consensus_driver import RoundDriver
from node.consensus_persistence import PersistedStateFile
from node.consensus_serving import ConsensusFetcher, ConsensusServer

DEFAULT_PACING = PacingConfig()


class ConsensusService:
    def __init__(
        self,
        chain: Chain,
        importer: ChainImporter,
        mempool,
        p2p,
        private_key: bytes,
        datadir: Path,
        *,
        timeouts: TimeoutConfig = TimeoutConfig(),
        block_interval: float = 0.5,
        on_behind: Callable[[], None] = lambda: None,
        on_evidence: Callable[[Vote, Vote], None] = lambda a, b: None,
        pacing: PacingConfig = DEFAULT_PACING,
    ) -> None:
        self.chain = chain
        self.p2p = p2p
        self.machine = TendermintMachine(private_key, chain.genesis.chain_id, timeouts)
        self.pacer = Pacer(timeouts, pacing) if timeouts.adaptive else None
        candidates = CandidateBlocks()
        self.server = ConsensusServer(chain, self.machine, candidates)
        self.fetcher = ConsensusFetcher(chain, self.machine, p2p, on_behind)
        self.driver = RoundDriver(chain, importer, mempool, p2p, self.machine, candidates,
                                  PersistedStateFile(datadir), self.fetcher, block_interval=block_interval,
                                  on_behind=on_behind, on_evidence=on_evidence, pacer=self.pacer)
        importer.add_listener(self.driver.on_block_imported)

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        self.server.register(self.p2p)
        await self.driver.run(task_status=task_status)

    # --- what the node, block sync and tests use ----------------------------------------------

    @property
    def address(self) -> bytes:
        return self.machine.address

    @property
    def is_validator(self) -> bool:
        return self.driver.is_validator()

    @property
    def decisions(self) -> list[tuple[int, int, float]]:
        return self.driver.decisions

    def on_proposal_payload(self, payload: bytes, sender: bytes | None) -> None:
        self.driver.on_proposal_payload(payload, sender)

    def on_vote_payload(self, payload: bytes, sender: bytes | None) -> None:
        self.driver.on_vote_payload(payload, sender)

    async def fetch_head_commit(self) -> bool:
        return await self.fetcher.fetch_head_commit()

    def is_proposer(self) -> bool:
        return self.driver.is_proposer()

    def get_status(self) -> dict:
        return self.driver.get_status()
