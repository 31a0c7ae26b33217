"""`P2PStatistics`: one snapshot of the counters the p2p components keep."""

from __future__ import annotations

from dataclasses import dataclass

from .dialer import DialCounters
from .gossip_router import GossipCounters
from .peer_table import PeerTable
from .request_router import RequestCounters


@dataclass(frozen=True)
class P2PStatistics:
    peers: int
    inbound: int
    outbound: int
    bytes_in: int
    bytes_out: int
    messages_in: int
    messages_out: int
    gossip_published: int
    gossip_delivered: int
    gossip_forwarded: int
    gossip_duplicates: int
    gossip_rejected: int
    gossip_ignored: int
    deliveries_dropped: int  # accepted gossip lost because a subscriber's channel was full
    requests_in: int
    requests_out: int
    faults: int
    drops: int  # slow peers dropped
    bans: int  # bans imposed since start
    banned_now: int
    handshake_failures: int
    dials: int  # outbound connection attempts
    dial_failures: int  # attempts that did not end in a connected peer


def compute_statistics(
    *,
    peers: PeerTable,
    gossip: GossipCounters,
    requests: RequestCounters,
    dials: DialCounters,
    handshake_failures: int,
) -> P2PStatistics:
    live = peers.get_connected()
    table = peers.counters  # faults, drops, bans, and the traffic of departed peers
    return P2PStatistics(
        peers=len(live),
        inbound=sum(1 for peer in live if peer.inbound),
        outbound=sum(1 for peer in live if not peer.inbound),
        bytes_in=table.bytes_in + sum(peer.channel.bytes_in for peer in live),
        bytes_out=table.bytes_out + sum(peer.channel.bytes_out for peer in live),
        messages_in=table.messages_in + sum(peer.messages_in for peer in live),
        messages_out=table.messages_out + sum(peer.messages_out for peer in live),
        gossip_published=gossip.published,
        gossip_delivered=gossip.delivered,
        gossip_forwarded=gossip.forwarded,
        gossip_duplicates=gossip.duplicates,
        gossip_rejected=gossip.rejected,
        gossip_ignored=gossip.ignored,
        deliveries_dropped=gossip.deliveries_dropped,
        requests_in=requests.requests_in,
        requests_out=requests.requests_out,
        faults=table.faults,
        drops=table.drops,
        bans=table.bans,
        banned_now=len(peers.bans.get_active()),
        handshake_failures=handshake_failures,
        dials=dials.dials,
        dial_failures=dials.dial_failures,
    )
