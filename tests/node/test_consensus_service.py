"""The consensus service alone, against a recording p2p double and a real chain, on trio's MockClock.

The other three validators are played by the test, which signs their votes with
their keys, so every timer and every output of the driver can be checked.
"""
from __future__ import annotations

import dataclasses

import pytest
import rlp
import trio
import trio.testing

from chain.chain import Chain
from chain.db import LevelDB
from consensus.bft import Step
from consensus.proposer import ProposerSchedule
from consensus.validators import ValidatorSet
from consensus.votes import NIL, PRECOMMIT, PREVOTE, Vote, make_vote, sign_vote
from genesis.keys import get_address
from node.chain_importer import ChainImporter
from node.consensus_persistence import PersistedStateFile, decode_persisted_state, encode_persisted_state
from node.consensus_service import ConsensusService
from node.consensus_wire import decode_proposal_message
from node.mempool import Mempool
from p2p import Topic
from tests.node.nodekit import CHAIN_ID, FAST_TIMEOUTS, VALIDATOR_KEYS, make_test_genesis
from economy import make_work_rules

GENESIS = make_test_genesis()


class RecordingP2P:
    """TEST DOUBLE for P2PService: records what the service publishes (with the virtual time) and has no peers."""

    def __init__(self) -> None:
        self.published: list[tuple[float, Topic, bytes]] = []
        self.handlers: dict = {}
        self.penalties: list = []
        self._channels = []

    def subscribe(self, topic, validate):
        send, receive = trio.open_memory_channel(100)
        self._channels.append(send)
        return receive

    def publish(self, topic, payload: bytes) -> bytes:
        self.published.append((trio.current_time(), topic, payload))
        return b""

    def register_handler(self, method, handler) -> None:
        self.handlers[method] = handler

    def apply_penalty(self, node_id, penalty, reason) -> None:
        self.penalties.append((node_id, reason))

    def get_peers(self):
        return []

    def votes(self) -> list[tuple[float, Vote]]:
        return [(t, rlp.decode(p, sedes=Vote)) for t, topic, p in self.published if topic == Topic.VOTES]

    def proposals(self):
        return [(t, *decode_proposal_message(p)) for t, topic, p in self.published if topic == Topic.PROPOSALS]


def get_proposer(height: int, round_: int) -> bytes:
    validator_set = ValidatorSet((v.address, v.recognition) for v in GENESIS.validators)
    return ProposerSchedule(validator_set, 1).get_proposer(height, round_)


def key_of(address: bytes) -> bytes:
    return next(k for k in VALIDATOR_KEYS if get_address(k) == address)


def make_service(datadir, key: bytes, timeouts=FAST_TIMEOUTS):
    db = LevelDB(datadir / "chaindata")
    chain = Chain.from_genesis(db, GENESIS, make_work_rules)
    p2p = RecordingP2P()
    service = ConsensusService(chain, ChainImporter(chain), Mempool(GENESIS, lambda: chain.state), p2p, key, datadir,
                               timeouts=timeouts, block_interval=0.25)
    return service, p2p, db


def others_vote(service, vote_type: int, round_: int, block_hash: bytes, height: int = 1, count: int = 2) -> None:
    others = [k for k in VALIDATOR_KEYS if k != service.machine.private_key][:count]
    for key in others:
        vote = sign_vote(make_vote(vote_type, height, round_, block_hash, get_address(key)), key, CHAIN_ID)
        service.on_vote_payload(rlp.encode(vote), None)


@pytest.fixture
def mock_clock():
    return trio.testing.MockClock(autojump_threshold=0)


async def test_timers_fire_at_the_configured_durations(tmp_path, mock_clock):
    proposer = get_proposer(1, 0)
    key = next(k for k in VALIDATOR_KEYS if get_address(k) != proposer)
    # Static timeouts: the adaptive ones (tests/node/test_validator_down.py) shorten what they observe.
    service, p2p, db = make_service(tmp_path, key, dataclasses.replace(FAST_TIMEOUTS, adaptive=False))
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        start = trio.current_time()
        await trio.sleep(1.499)
        assert p2p.votes() == []  # nobody proposed: we wait the whole propose timeout
        await trio.sleep(0.002)
        [(at, vote)] = p2p.votes()
        assert at - start == pytest.approx(FAST_TIMEOUTS.propose_ms / 1000)
        assert (vote.vote_type, vote.height, vote.round, vote.block_hash) == (PREVOTE, 1, 0, NIL)

        others_vote(service, PREVOTE, 0, NIL)  # a nil prevote quorum: precommit nil at once
        assert [v.vote_type for _, v in p2p.votes()] == [PREVOTE, PRECOMMIT]
        others_vote(service, PRECOMMIT, 0, NIL)  # a precommit quorum starts the precommit timeout
        quorum_at = trio.current_time()
        await trio.sleep(FAST_TIMEOUTS.precommit_ms / 1000 - 0.001)
        assert service.machine.round == 0
        await trio.sleep(0.002)
        assert service.machine.round == 1 and trio.current_time() - quorum_at >= FAST_TIMEOUTS.precommit_ms / 1000
        nursery.cancel_scope.cancel()
    db.close()


async def test_decides_imports_and_restarts_without_double_signing(tmp_path, mock_clock):
    key = key_of(get_proposer(1, 0))
    service, p2p, db = make_service(tmp_path, key)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        start = trio.current_time()
        await trio.sleep(0.3)
        [(at, proposal, block)] = p2p.proposals()
        assert at - start == pytest.approx(0.25)  # the block interval, then the proposal with its block
        assert block.header.number == 1 and block.header.proposer == service.address
        [(_, own_prevote)] = p2p.votes()
        assert own_prevote.block_hash == block.hash
        others_vote(service, PREVOTE, 0, block.hash)
        others_vote(service, PRECOMMIT, 0, block.hash)
        assert service.chain.height == 1 and service.chain.head.hash == block.hash
        commit = service.chain.get_commit(block.hash)
        assert len(commit.signatures) == 3 and service.address in {s.validator for s in commit.signatures}
        assert service.machine.height == 2
        # Height 2: wait out the propose timeout if another validator proposes, so we sign a nil prevote.
        await trio.sleep(2)
        signed_before = [v for _, v in p2p.votes() if v.height == 2]
        assert signed_before  # a prevote at least (nil, or for its own block if it proposes height 2)
        nursery.cancel_scope.cancel()
    db.close()
    saved = PersistedStateFile(tmp_path).load()
    assert saved.height == 2 and decode_persisted_state(encode_persisted_state(saved)) == saved

    restarted, p2p_again, db = make_service(tmp_path, key)
    assert restarted.chain.height == 1
    async with trio.open_nursery() as nursery:
        await nursery.start(restarted.run)
        # It re-sends exactly what it signed before the restart, and nothing that contradicts it.
        resent = [v for _, v in p2p_again.votes() if v.height == 2]
        assert resent == signed_before
        await trio.sleep(0.5)
        for _, vote in p2p_again.votes():
            earlier = [v for v in signed_before if (v.round, v.vote_type) == (vote.round, vote.vote_type)]
            assert all(v == vote for v in earlier)
        assert restarted.machine.step in (Step.PROPOSE, Step.PREVOTE, Step.PRECOMMIT)
        nursery.cancel_scope.cancel()
    db.close()


async def test_bad_votes_are_refused_and_their_sender_penalised(tmp_path, mock_clock):
    service, p2p, db = make_service(tmp_path, VALIDATOR_KEYS[0])
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        outsider = b"\x07" * 32
        vote = sign_vote(make_vote(PREVOTE, 1, 0, NIL, get_address(outsider)), outsider, CHAIN_ID)
        service.on_vote_payload(rlp.encode(vote), b"peer")
        assert p2p.penalties and p2p.penalties[0][0] == b"peer"
        nursery.cancel_scope.cancel()
    db.close()


def test_a_corrupt_persisted_state_refuses_to_start(tmp_path):
    from node.exceptions import CorruptConsensusState

    (tmp_path / "consensus_state.rlp").write_bytes(b"\xf8\x00garbage")
    with pytest.raises(CorruptConsensusState):
        PersistedStateFile(tmp_path).load()
