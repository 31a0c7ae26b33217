"""Typed errors of the p2p package and the disconnect reasons sent on the wire.

Every error that a remote peer can cause carries what was got and what was
expected, the `DisconnectReason` we send when it ends a connection, and the
`penalty` it costs the peer's score (`PENALTY_SEVERE` bans at once).
"""

from __future__ import annotations

from enum import IntEnum

from primitives.errors import EXPECTED_LIMIT, compute_excerpt

# A peer is banned when its score falls to -PENALTY_SEVERE or below.
PENALTY_SEVERE = 100
PENALTY_INVALID_MESSAGE = 25
PENALTY_REJECTED_GOSSIP = 10
PENALTY_BAD_REQUEST = 25


class DisconnectReason(IntEnum):
    # Beware: REQUESTED is 0, so test `reason is None`, never `not reason`.
    REQUESTED = 0
    PROTOCOL_VERSION = 1
    CHAIN_ID = 2
    GENESIS = 3
    BAD_HELLO = 4
    IDENTITY = 5
    BANNED = 6
    TOO_MANY_PEERS = 7
    SELF_CONNECTION = 8
    DUPLICATE = 9
    MALFORMED = 10
    OVERSIZED = 11
    SLOW = 12
    SHUTDOWN = 13
    TIMEOUT = 14
    BAD_DATA = 15
    CONNECTION_LOST = 16
    REMOTE = 17  # the remote closed with a reason we do not know


class P2PError(Exception):
    """Base of every error raised by the p2p package."""

    reason: DisconnectReason = DisconnectReason.BAD_DATA
    penalty: int = 0


class InvalidEnode(P2PError):
    def __init__(self, text: str, detail: str) -> None:
        super().__init__(f"invalid enode {text!r}: {detail} (expected '<pubkey-hex>@host:port')")
        self.text = text
        self.detail = detail


class AlreadySubscribed(P2PError):
    def __init__(self, topic: int) -> None:
        super().__init__(f"topic {topic} already has a subscriber")
        self.topic = topic


# --- handshake ---------------------------------------------------------------


class HandshakeError(P2PError):
    """The connection could not be established; it is closed."""

    reason = DisconnectReason.BAD_HELLO


class NoiseHandshakeFailed(HandshakeError):
    def __init__(self, detail: str) -> None:
        super().__init__(f"noise handshake failed: {detail}")
        self.detail = detail


class HelloMismatch(HandshakeError):
    """The peer is on another network (version, chain id or genesis differ)."""

    def __init__(self, field: str, got: object, expected: object, reason: DisconnectReason) -> None:
        super().__init__(f"hello {field} mismatch: got {got!r}, expected {expected!r}")
        self.field = field
        self.got = got
        self.expected = expected
        self.reason = reason


class BadHelloSignature(HandshakeError):
    penalty = PENALTY_SEVERE

    def __init__(self, claimed: bytes, recovered: bytes | None) -> None:
        shown = recovered.hex()[:16] if recovered else None
        super().__init__(
            f"hello signature does not bind claimed node {claimed.hex()[:16]} to this session "
            f"(recovered {shown})"
        )
        self.claimed = claimed
        self.recovered = recovered


class IdentityMismatch(HandshakeError):
    reason = DisconnectReason.IDENTITY

    def __init__(self, got: bytes, expected: bytes) -> None:
        super().__init__(f"dialled node {expected.hex()[:16]} but reached {got.hex()[:16]}")
        self.got = got
        self.expected = expected


class PeerRefused(HandshakeError):
    """We (or the remote) refuse a well-formed connection: banned, full, self, duplicate."""

    def __init__(self, reason: DisconnectReason, detail: str = "") -> None:
        super().__init__(f"connection refused: {reason.name} {detail}".rstrip())
        self.reason = reason
        self.detail = detail


# --- framing and messages ----------------------------------------------------


class FramingError(P2PError):
    """The byte stream cannot be trusted any more; the connection must close."""

    penalty = PENALTY_SEVERE


class OversizedFrame(FramingError):
    reason = DisconnectReason.OVERSIZED

    def __init__(self, got: int, limit: int) -> None:
        super().__init__(f"frame of {got} bytes exceeds the limit of {limit}")
        self.got = got
        self.limit = limit


class MalformedFrame(FramingError):
    reason = DisconnectReason.MALFORMED

    def __init__(self, detail: str) -> None:
        super().__init__(f"malformed frame: {detail}")
        self.detail = detail


class InvalidMessage(P2PError):
    """A well-framed message whose type or fields do not match the schema."""

    reason = DisconnectReason.BAD_DATA
    penalty = PENALTY_INVALID_MESSAGE

    def __init__(self, detail: str, got: object = None, expected: object = None) -> None:
        # `got` is the peer's: an excerpt, never the whole value (it may be a 4 MB string).
        super().__init__(f"invalid message: {detail} (got {compute_excerpt(got)}, "
                         f"expected {compute_excerpt(expected, EXPECTED_LIMIT)})")
        self.detail = detail
        self.got = got
        self.expected = expected


class BadRequest(P2PError):
    """Raised by a request handler when the params are invalid; scores the caller down."""

    penalty = PENALTY_BAD_REQUEST

    def __init__(self, detail: str, got: object = None, expected: object = None) -> None:
        super().__init__(f"bad request: {detail} (got {compute_excerpt(got)}, "
                         f"expected {compute_excerpt(expected, EXPECTED_LIMIT)})")
        self.detail = detail
        self.got = got
        self.expected = expected


# --- connections and requests ------------------------------------------------


class PeerDisconnected(P2PError):
    reason = DisconnectReason.CONNECTION_LOST

    def __init__(self, reason: DisconnectReason, detail: str = "") -> None:
        super().__init__(f"peer disconnected: {reason.name} {detail}".rstrip())
        self.reason = reason
        self.detail = detail


class PeerNotConnected(P2PError):
    def __init__(self, node_id: bytes) -> None:
        super().__init__(f"not connected to {node_id.hex()[:16]}")
        self.node_id = node_id


class RequestTimeout(P2PError):
    def __init__(self, method: str, timeout: float) -> None:
        super().__init__(f"request {method!r} got no response within {timeout} s")
        self.method = method
        self.timeout = timeout


class RemoteRequestError(P2PError):
    """The remote answered a request with an error response."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"request {method!r} failed remotely: code {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


# --- sync --------------------------------------------------------------------


class InvalidBatch(P2PError):
    """A synced batch is wrong. Import callbacks raise it to ban the peer that sent it."""

    reason = DisconnectReason.BAD_DATA
    penalty = PENALTY_SEVERE

    def __init__(self, start: int, count: int, detail: str) -> None:
        super().__init__(f"invalid batch [{start}, {start + count}): {detail}")
        self.start = start
        self.count = count
        self.detail = detail


class SyncFailed(P2PError):
    def __init__(self, height: int, target: int, detail: str) -> None:
        super().__init__(f"sync stopped at {height} of {target}: {detail}")
        self.height = height
        self.target = target
        self.detail = detail
