"""The p2p settings (`P2PConfig`) and who we are on the network (`LocalNode`)."""

from __future__ import annotations

from dataclasses import dataclass

from eth_keys import keys

from .exceptions import PENALTY_SEVERE
from .hello import PROTOCOL_VERSION, NetworkId
from .identity import Enode, compute_short_id, get_node_id


@dataclass(frozen=True)
class P2PConfig:
    private_key: keys.PrivateKey
    chain_id: int
    genesis_hash: bytes
    listen_host: str = "127.0.0.1"
    listen_port: int = 0  # 0: an ephemeral port, see P2PService.enode once started
    bootnodes: tuple[str, ...] = ()
    max_peers: int = 25
    max_pending_handshakes: int = 64  # inbound connections still in the handshake
    # Of those, from any one address (but our own listen_host and ip_ban_exempt, shared by co-located
    # nodes): one host holding idle connections cannot take every slot and lock other peers out.
    max_pending_handshakes_per_ip: int = 8
    protocol_version: int = PROTOCOL_VERSION
    client: bytes = b"magicoin/0.1.0"
    max_frame_size: int = 4 * 1024 * 1024
    send_queue_size: int = 1024
    max_concurrent_requests: int = 16
    # Streamed responses served to one peer at once; more are refused.
    max_concurrent_streams: int = 16
    handshake_timeout: float = 5.0
    request_timeout: float = 10.0
    write_timeout: float = 10.0
    ping_interval: float = 15.0  # ping a connection idle this long
    idle_timeout: float = 45.0  # drop a connection silent this long
    ban_duration: float = 600.0
    ban_threshold: int = PENALTY_SEVERE
    # A ban also bans the address the peer connected from, except these and our own listen_host:
    # nodes sharing one host (a devnet on one machine) would otherwise shut each other out.
    ip_ban_exempt: tuple[str, ...] = ()
    dial_timeout: float = 5.0
    reconnect_base: float = 0.5
    reconnect_max: float = 30.0
    seen_cache_size: int = 100_000
    subscription_buffer: int = 4096


class LocalNode:
    """Our identity and network, shared by the components that speak for us.

    `listen_port` is the one fact known only at run time: the listener sets it
    once bound, and the hellos we send and our enode carry it from then on.
    """

    def __init__(self, config: P2PConfig) -> None:
        self.config = config
        self.node_id = get_node_id(config.private_key)
        self.short_id = compute_short_id(self.node_id)
        self.network = NetworkId(config.protocol_version, config.chain_id, config.genesis_hash)
        self.listen_port: int | None = None

    @property
    def enode(self) -> Enode:
        assert self.listen_port is not None, "enode is known once run() has started"
        return Enode(self.node_id, self.config.listen_host, self.listen_port)
