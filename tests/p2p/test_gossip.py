"""Gossip over real sockets: every topic reaches every node once, through relays."""

from collections import Counter

import pytest
import trio
from eth_utils import keccak

from p2p import Topic, ValidationResult
from p2p.exceptions import AlreadySubscribed
from p2p.gossip import GossipMessage, SeenCache, compute_message_id, compute_seen_key
from p2p.messages import MsgType

from .helpers import make_config, raw_session, start_service, wait_until


async def start_network(nursery, count: int, links: list[tuple[int, int]]):
    """Start `count` nodes; node i dials node j for each (i, j) in links."""
    nodes = [await start_service(nursery, make_config()) for _ in range(count)]
    for i, j in links:
        await nodes[i].connect(nodes[j].enode)
    return nodes


def subscribe_all(node):
    """Accept everything on every topic."""
    return [node.subscribe(topic, lambda message: ValidationResult.ACCEPT) for topic in Topic]


async def collect(nursery, node_index, receivers, delivered: Counter):
    """Count deliveries per (node, message id) in the background."""

    async def drain(receiver):
        async for message in receiver:
            delivered[(node_index, message.message_id)] += 1

    for receiver in receivers:
        nursery.start_soon(drain, receiver)


@pytest.mark.parametrize(
    "links, name",
    [
        ([(1, 0), (2, 1), (3, 2)], "line"),
        ([(1, 0), (2, 1), (3, 2), (0, 3), (2, 0)], "ring with a chord"),
    ],
)
async def test_gossip_reaches_every_node_exactly_once(nursery, links, name):
    with trio.fail_after(20):
        nodes = await start_network(nursery, 4, links)
        delivered: Counter = Counter()
        for index, node in enumerate(nodes):
            await collect(nursery, index, subscribe_all(node), delivered)
        published: list[tuple[int, bytes]] = []
        for index, node in enumerate(nodes):
            for topic in Topic:
                for n in range(5):
                    payload = f"{topic.name} {n} from node {index}".encode()
                    published.append((index, node.publish(topic, payload)))
        # Republishing a seen message is a no-op.
        assert nodes[0].publish(Topic.VOTES, b"VOTES 0 from node 0") == published[10][1]
        expected = {(i, mid) for origin, mid in published for i in range(4) if i != origin}
        await wait_until(lambda: set(delivered) >= expected)
        await trio.sleep(0.2)  # time for any duplicate to show up
        assert set(delivered) == expected
        assert all(count == 1 for count in delivered.values())
        stats = [node.statistics() for node in nodes]
        assert sum(s.gossip_published for s in stats) == len(published)
        assert all(s.gossip_delivered == 3 * len(published) // 4 for s in stats)
        if name == "line":
            # Only relaying gets messages from one end of the line to the other.
            assert stats[1].gossip_forwarded > 0 and stats[2].gossip_forwarded > 0
        else:
            # With cycles, copies arrive twice and the seen-cache drops them.
            assert sum(s.gossip_duplicates for s in stats) > 0


async def test_ignored_gossip_is_not_forwarded(nursery):
    with trio.fail_after(10):
        nodes = await start_network(nursery, 3, [(1, 0), (2, 1)])
        nodes[0].subscribe(Topic.PROPOSALS, lambda m: ValidationResult.ACCEPT)
        nodes[1].subscribe(
            Topic.PROPOSALS,
            lambda m: ValidationResult.IGNORE if m.payload == b"stale" else ValidationResult.ACCEPT,
        )
        last = nodes[2].subscribe(Topic.PROPOSALS, lambda m: ValidationResult.ACCEPT)
        nodes[0].publish(Topic.PROPOSALS, b"stale")
        nodes[0].publish(Topic.PROPOSALS, b"fresh")
        message = await last.receive()
        assert message.payload == b"fresh" and message.sender == nodes[1].node_id
        assert nodes[1].statistics().gossip_ignored == 1
        assert nodes[1].scores.get_score(nodes[0].node_id) == 0  # ignoring is not a fault


async def test_unsubscribed_topic_is_neither_delivered_nor_forwarded(nursery):
    with trio.fail_after(10):
        nodes = await start_network(nursery, 3, [(1, 0), (2, 1)])
        last = nodes[2].subscribe(Topic.EVIDENCE, lambda m: ValidationResult.ACCEPT)
        nodes[0].publish(Topic.EVIDENCE, b"evidence")
        await wait_until(lambda: nodes[1].statistics().gossip_ignored == 1)
        await trio.sleep(0.1)
        assert last.statistics().current_buffer_used == 0
        # Once the relay subscribes, a later copy of the same message is handled, not a duplicate.
        nodes[1].subscribe(Topic.EVIDENCE, lambda m: ValidationResult.ACCEPT)
        async with raw_session(nodes[1].enode.port) as raw:
            await wait_until(lambda: nodes[1].is_connected(raw.node_id))
            await raw.send(MsgType.GOSSIP, int(Topic.EVIDENCE), b"evidence")
            assert (await last.receive()).payload == b"evidence"


async def test_one_subscriber_per_topic(nursery):
    with trio.fail_after(5):
        node = await start_service(nursery, make_config())
    node.subscribe(Topic.VOTES, lambda m: ValidationResult.ACCEPT)
    with pytest.raises(AlreadySubscribed):
        node.subscribe(Topic.VOTES, lambda m: ValidationResult.ACCEPT)


async def test_publish_refuses_oversized_payload(nursery):
    with trio.fail_after(5):
        node = await start_service(nursery, make_config(max_frame_size=1024))
    with pytest.raises(ValueError):
        node.publish(Topic.TRANSACTIONS, b"x" * 2000)


def test_seen_cache_is_bounded_and_evicts_oldest():
    cache = SeenCache(3)
    keys = [compute_seen_key(Topic.VOTES, bytes([n])) for n in range(4)]
    assert all(cache.add(key) for key in keys[:3])
    assert not cache.add(keys[0])
    assert cache.add(keys[3]) and len(cache) == 3
    assert keys[0] not in cache and keys[3] in cache


def test_message_id_is_the_payload_hash_and_dedup_is_per_topic():
    assert compute_message_id(b"raw tx") == keccak(b"raw tx")
    message = GossipMessage(Topic.TRANSACTIONS, b"raw tx", b"\x01" * 64)
    assert message.message_id == keccak(b"raw tx")
    assert compute_seen_key(Topic.VOTES, b"x") != compute_seen_key(Topic.PROPOSALS, b"x")
    assert compute_seen_key(Topic.VOTES, b"x") == compute_seen_key(Topic.VOTES, b"x")


async def test_same_payload_on_two_topics_is_two_messages(nursery):
    with trio.fail_after(10):
        a, b = await start_network(nursery, 2, [(1, 0)])
        votes = b.subscribe(Topic.VOTES, lambda m: ValidationResult.ACCEPT)
        proposals = b.subscribe(Topic.PROPOSALS, lambda m: ValidationResult.ACCEPT)
        assert (
            a.publish(Topic.VOTES, b"same")
            == a.publish(Topic.PROPOSALS, b"same")
            == keccak(b"same")
        )
        assert (await votes.receive()).payload == b"same"
        assert (await proposals.receive()).payload == b"same"
