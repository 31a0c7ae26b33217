"""magicoin p2p: our own encrypted protocol over TCP, on trio.

Owns transport, handshake, gossip, range sync, peer scoring and bans. Knows
nothing about blocks or transactions: payloads are opaque bytes (RLP) that the
node validates through callbacks.

Structure
---------
Imports only point down this list; nothing in the package imports in a cycle.

- `service.P2PService`: the facade the node uses. It composes the components
  below, delegates every call to one of them, and is each peer's host.
- `listener.Listener` and `dialer.Dialer`: trio services (`run`) that accept
  and dial connections (bootnodes redialled with back-off) and run the peers.
- `handshake.Handshaker`: Noise XX, signed hellos and admission, both ways.
- `gossip_router.GossipRouter`: subscriptions, validators, seen-cache, forwarding.
- `request_router.RequestRouter`: request and stream handlers; our requests.
- `peer_table.PeerTable`: connected peers, scores and bans (`scoring`),
  admission limits, peer events. `statistics` sums the components' counters.
- `peer.Peer`: one connection (reader, writer, keepalive, served streams);
  `pending` keeps its requests in flight and the `ResponseStream`s.
- `abc`: the interfaces. A `Peer` knows its host only as a `PeerHostAPI`
  (gossip, requests, faults, slowness, the config), and the host's callbacks
  see a peer only as a `PeerAPI`; `SyncProviderAPI` is what the node lends sync.
- Below them: `config`, `secure`, `hello`, `messages`, `gossip`, `identity`,
  `exceptions`; `sync` sits on top of the service.

Wire protocol
-------------
1. Noise XX (`Noise_XX_25519_ChaChaPoly_SHA256`, prologue `magicoin-p2p`) over
   TCP; every later byte is encrypted in records of at most 64 KiB (`secure`).
2. Both sides send a signed `Hello` (RLP: protocol version, chain id, genesis
   hash, secp256k1 node id, listen port, client) signed over the Noise handshake
   hash, so the session is bound to the node key. The dialler speaks first;
   the responder answers with its own hello or a DISCONNECT. A bad signature,
   (when dialling an enode) a different node id, or a different version, chain
   id or genesis closes the connection with a typed, logged `DisconnectReason`
   (`hello`); a proven identity on another network is also banned for a while.
3. Frames are `u32 length || msgpack [type, *fields]`, at most
   `P2PConfig.max_frame_size`, schema-checked before use (`messages`).

Using it from the node
----------------------
    config = P2PConfig(private_key=key, chain_id=..., genesis_hash=...,
                       listen_port=30303, bootnodes=("<pubkey-hex>@127.0.0.1:30304",))
    p2p = P2PService(config)
    register_sync_handlers(p2p, provider)            # provider: SyncProviderAPI
    votes = p2p.subscribe(Topic.VOTES, validate_vote)  # validate(msg) -> ValidationResult
    await nursery.start(p2p.run)                      # listening once this returns
    p2p.publish(Topic.VOTES, rlp_vote)                # sync; never blocks
    async for message in votes: ...                   # GossipMessage(topic, payload, id, sender)
    result = await sync_to_peer_head(p2p, provider, import_batch)

Gossip (`Topic`: TRANSACTIONS, PROPOSALS, VOTES, EVIDENCE, JOB_RESULTS,
ATTESTATIONS): one subscriber per topic. A message id is keccak(payload) (so a
raw transaction's id is its tx hash). A bounded seen-cache keyed by a blake2b
of (topic, payload) drops duplicates before validation. ACCEPT delivers to the
subscriber's channel and forwards to every peer except the sender; IGNORE
drops; REJECT drops and scores the sender down.
REJECT only what is invalid whatever our local state (bad signature, malformed
payload): an honest relay forwards what its own validator accepted, and must not
be punished because we are behind; IGNORE what we cannot judge yet.
Topics nobody subscribed to are neither delivered nor forwarded (subscribe
before `run` to miss nothing). `publish` does not deliver to our own subscriber.
A subscriber whose channel is full loses the message (`deliveries_dropped`).

Requests: `register_handler(method, async handler(node_id, params) -> result)`;
`await request(node_id, method, params)` returns the result or raises
`RemoteRequestError`, `RequestTimeout`, `PeerDisconnected`. Handlers raise
`BadRequest` for bad params (the caller is scored down). Built in, once
`register_sync_handlers` is called: `status`, `get_headers`, `get_blocks`.

Streamed responses: `register_stream_handler(method, handler)` where
`handler(node_id, params)` is an async iterator; `stream = await
open_stream(node_id, method, params, max_items=N)` returns a `ResponseStream`
to iterate and then `aclose()` (which sends CANCEL, so the server stops).
Items travel as STREAM frames under the request id and the stream ends with
RESPONSE or ERROR. Bounded both ways: at most `max_items` unread items on the
requester (more is a fault), at most `max_concurrent_streams` served per peer
(more are refused, never queued). A disconnect ends a stream with
`PeerDisconnected`; an item for an unknown or finished id is an
`InvalidMessage` fault.

Sync: `sync_to_peer_head(p2p, provider, import_batch, kind=SyncKind.BLOCKS,
batch_size=64, max_in_flight=4)` asks every peer's `status`, fetches the
missing heights in batches and awaits `import_batch(start, blobs)` in height
order. `import_batch` raises `InvalidBatch` for data that fails its checks:
the sender is banned and the range refetched from another peer. It returns a
`SyncResult`, or raises `SyncFailed` when no peer can serve what was claimed.
`request_status` / `request_range` are the single-request building blocks.

Peers: `get_peers()` -> [PeerInfo], `is_connected`, `subscribe_peer_events()`
(PeerEvent CONNECTED / DISCONNECTED with reason), `connect(enode)`,
`disconnect`, `apply_penalty(node_id, points, reason)`, `ban`, `is_banned`,
`statistics()` -> P2PStatistics. Bootnodes are redialled forever with
exponential back-off (`reconnect_base` .. `reconnect_max`). Each peer has a
bounded outbox; a peer whose outbox is full is dropped (reason SLOW), never
waited on. Idle connections are pinged; one silent for `idle_timeout` is
dropped. Invalid input lowers the peer's score; at `ban_threshold` (or at once
for severe faults: bad frames, undecryptable records, invalid sync batches) it
is banned for `ban_duration`. Pre-handshake junk cannot be pinned on an
identity: it only closes the connection (and counts `handshake_failures`).
"""

from .abc import PeerAPI, PeerHostAPI, SyncProviderAPI
from .config import P2PConfig
from .exceptions import (
    BadRequest,
    DisconnectReason,
    HandshakeError,
    InvalidBatch,
    P2PError,
    PeerDisconnected,
    PeerNotConnected,
    RemoteRequestError,
    RequestTimeout,
    SyncFailed,
)
from .gossip import GossipMessage, Topic, ValidationResult
from .hello import PROTOCOL_VERSION
from .identity import Enode, get_node_id, parse_enode
from .peer_table import PeerEvent, PeerEventKind, PeerInfo
from .pending import ResponseStream
from .service import P2PService
from .statistics import P2PStatistics
from .sync import (
    PeerStatus,
    SyncKind,
    SyncResult,
    register_sync_handlers,
    request_range,
    request_status,
    sync_to_peer_head,
)

__all__ = [
    "BadRequest",
    "DisconnectReason",
    "Enode",
    "GossipMessage",
    "HandshakeError",
    "InvalidBatch",
    "P2PConfig",
    "P2PError",
    "P2PService",
    "P2PStatistics",
    "PROTOCOL_VERSION",
    "PeerAPI",
    "PeerDisconnected",
    "PeerEvent",
    "PeerEventKind",
    "PeerHostAPI",
    "PeerInfo",
    "PeerNotConnected",
    "PeerStatus",
    "RemoteRequestError",
    "RequestTimeout",
    "ResponseStream",
    "SyncFailed",
    "SyncKind",
    "SyncProviderAPI",
    "SyncResult",
    "Topic",
    "ValidationResult",
    "get_node_id",
    "parse_enode",
    "register_sync_handlers",
    "request_range",
    "request_status",
    "sync_to_peer_head",
]
