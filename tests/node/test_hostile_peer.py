"""A handshaken peer that sends forged votes, forged proposals and invalid transactions to a validator of a
two-validator network on loopback (issue 14): it is scored down, then banned by key and by IP address; a
fresh key from the same address is refused before any handshake; a peer from another address still gets in;
and the two validators keep finalising throughout.

The attacker connects from its own loopback address (127.0.0.N): the nodes listen on 127.0.0.1, the address
they share with each other, which is never banned (`P2PConfig.ip_ban_exempt`, `PeerTable.ban`).
"""
from __future__ import annotations

import os

import pytest
import rlp
import trio
from eth_keys import keys

from chain.transactions import sign_work_transaction
from consensus.votes import make_proposal, make_vote, sign_proposal, sign_vote
from genesis.keys import get_address
from node.consensus_wire import encode_vote_message
from p2p import P2PError
from p2p.gossip import Topic
from p2p.hello import PROTOCOL_VERSION, Hello, sign_hello
from p2p.messages import MsgType, encode_message
from p2p.secure import perform_noise_handshake
from tests.node.nodekit import (
    VALIDATOR_KEYS,
    make_test_genesis,
    start_network,
    wait_for_height,
    wait_for_peers,
)
from tests.p2p.helpers import RawPeer

PRECOMMIT = 2  # consensus.votes vote types: 1 prevote, 2 precommit


async def open_session(port: int, source: str, genesis, key: keys.PrivateKey) -> RawPeer:
    """A real Noise session and a signed hello on the node's network, from `source`."""
    stream = await trio.open_tcp_stream("127.0.0.1", port, local_address=source)
    channel = await perform_noise_handshake(stream, initiator=True)
    hello = Hello(PROTOCOL_VERSION, genesis.chain_id, genesis.genesis_hash, key.public_key.to_bytes(), 0, b"rogue")
    await channel.send_frames([encode_message(MsgType.HELLO, rlp.encode(hello),
                                              sign_hello(key, hello, channel.handshake_hash))])
    return RawPeer(channel, key, None)


async def wait_until(predicate, timeout: float = 10.0) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(0.02)


def make_forgeries(genesis, height: int, rogue: bytes) -> list[tuple[Topic, bytes]]:
    """Gossip every honest node must REJECT: votes and proposals in a validator's name signed by another key,
    and transactions for another chain. Each differs (round, nonce), so the seen-cache passes them all."""
    victim = get_address(VALIDATOR_KEYS[0])
    forgeries = []
    for round_ in range(4):
        vote = sign_vote(make_vote(PRECOMMIT, height, round_, os.urandom(32), victim), rogue, genesis.chain_id)
        forgeries.append((Topic.VOTES, encode_vote_message(vote)))
    for round_ in range(4):
        block_hash = os.urandom(32)
        proposal = sign_proposal(make_proposal(height, round_, 0, block_hash, victim), rogue, genesis.chain_id)
        forgeries.append((Topic.PROPOSALS, rlp.encode([rlp.encode(proposal), os.urandom(200)])))
    for nonce in range(4):
        forgeries.append((Topic.TRANSACTIONS, sign_work_transaction(
            rogue, chain_id=genesis.chain_id + 1, nonce=nonce, kind="offering", data=rlp.encode([b"x", b""]))))
    return forgeries


async def test_a_handshaken_peer_sending_forgeries_is_banned_by_key_and_address(tmp_path):
    genesis = make_test_genesis(2)  # both validators are needed for a commit
    source = f"127.0.{os.getpid() % 200 + 20}.{os.urandom(1)[0] % 200 + 20}"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:2], http=("127.0.0.1", 0))
            await wait_for_peers(nodes, 1)
            await wait_for_height(nodes, 2)
            target, other = nodes
            key = keys.PrivateKey(os.urandom(32))
            rogue = await open_session(target.p2p.listen_port, source, genesis, key)
            await wait_until(lambda: target.p2p.is_connected(rogue.node_id))

            forgeries = make_forgeries(genesis, target.chain.height + 1, key.to_bytes())
            # One forgery costs score but not the connection: an honest relay's mistake is not fatal.
            topic, payload = forgeries[0]
            await rogue.send(MsgType.GOSSIP, int(topic), payload)
            await wait_until(lambda: target.p2p.scores.get_score(rogue.node_id) < 0)
            assert target.p2p.is_connected(rogue.node_id) and not target.p2p.is_banned(rogue.node_id)

            for topic, payload in forgeries[1:]:
                try:
                    await rogue.send(MsgType.GOSSIP, int(topic), payload)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break  # banned and dropped already
            await rogue.receive_until_closed(timeout=10)
            assert target.p2p.is_banned(rogue.node_id)
            assert target.p2p.is_address_banned(source)
            await wait_until(lambda: not target.p2p.is_connected(rogue.node_id))
            assert target.p2p.gossip_router.counters.rejected >= 10

            # A fresh key from the banned address: closed before the handshake, never a peer.
            refused_before = target.p2p.listener.refused_banned
            fresh = keys.PrivateKey(os.urandom(32))
            with pytest.raises((P2PError, trio.BrokenResourceError, trio.ClosedResourceError, OSError)):
                await open_session(target.p2p.listen_port, source, genesis, fresh)  # the Noise handshake fails
            assert target.p2p.listener.refused_banned == refused_before + 1
            assert not target.p2p.is_connected(fresh.public_key.to_bytes())

            # The ban is narrow: the honest validator stays connected, and another address gets in.
            assert target.p2p.is_connected(other.p2p.node_id)
            elsewhere = f"127.0.{os.getpid() % 200 + 20}.{(int(source.rsplit('.', 1)[1]) + 1) % 250 + 1}"
            newcomer = await open_session(target.p2p.listen_port, elsewhere, genesis, keys.PrivateKey(os.urandom(32)))
            await wait_until(lambda: target.p2p.is_connected(newcomer.node_id))
            await newcomer.aclose()

            # Both validators keep finalising.
            height = min(node.chain.height for node in nodes)
            await wait_for_height(nodes, height + 3)
            nursery.cancel_scope.cancel()


async def test_well_signed_votes_from_a_non_validator_are_rejected_and_not_relayed(tmp_path):
    """Signatures that check out are not enough: the signer must be in the height's validator set."""
    genesis = make_test_genesis(2)
    source = f"127.0.{os.getpid() % 200 + 20}.{os.urandom(1)[0] % 200 + 20}"
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            nodes = await start_network(nursery, genesis, tmp_path, VALIDATOR_KEYS[:2])
            await wait_for_peers(nodes, 1)
            await wait_for_height(nodes, 2)
            target = nodes[0]
            key = keys.PrivateKey(os.urandom(32))
            outsider = get_address(key.to_bytes())
            rogue = await open_session(target.p2p.listen_port, source, genesis, key)
            await wait_until(lambda: target.p2p.is_connected(rogue.node_id))
            rejected_before = target.p2p.gossip_router.counters.rejected
            height = target.chain.height + 1
            vote = sign_vote(make_vote(PRECOMMIT, height, 0, os.urandom(32), outsider), key.to_bytes(),
                             genesis.chain_id)
            await rogue.send(MsgType.GOSSIP, int(Topic.VOTES), encode_vote_message(vote))
            await wait_until(lambda: target.p2p.gossip_router.counters.rejected > rejected_before)
            assert target.p2p.scores.get_score(rogue.node_id) < 0
            await rogue.aclose()
            await wait_for_height(nodes, target.chain.height + 2)
            nursery.cancel_scope.cancel()
