"""Shared pieces for the p2p tests: configs, running services, a raw peer, a chain of blobs."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Sequence

import rlp
import trio
from eth_keys import keys
from eth_utils import keccak

from p2p import (
    DisconnectReason,
    InvalidBatch,
    PeerDisconnected,
    P2PConfig,
    P2PService,
    SyncProviderAPI,
)
from p2p.hello import PROTOCOL_VERSION, Hello, decode_hello, sign_hello
from p2p.messages import MsgType, decode_message, encode_message
from p2p.secure import SecureChannel, perform_noise_handshake

CHAIN_ID = 7771
GENESIS_HASH = keccak(b"p2p test genesis")


def make_key() -> keys.PrivateKey:
    return keys.PrivateKey(os.urandom(32))


def make_config(key: keys.PrivateKey | None = None, **overrides: Any) -> P2PConfig:
    settings: dict[str, Any] = dict(
        private_key=key or make_key(),
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS_HASH,
        handshake_timeout=3.0,
        request_timeout=5.0,
        reconnect_base=0.05,
        reconnect_max=0.5,
    )
    settings.update(overrides)
    return P2PConfig(**settings)


async def start_service(nursery: trio.Nursery, config: P2PConfig) -> P2PService:
    service = P2PService(config)
    await nursery.start(service.run)
    return service


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, poll: float = 0.01
) -> None:
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(poll)


class RawPeer:
    """A hand-driven peer: a real Noise session and hello, then whatever bytes a test wants."""

    def __init__(
        self, channel: SecureChannel, key: keys.PrivateKey, remote_hello: Hello | None
    ) -> None:
        self.channel = channel
        self.key = key
        self.remote_hello = remote_hello
        self.node_id = key.public_key.to_bytes()
        self.refusal: DisconnectReason | None = (
            None  # set when the node answered our hello with DISCONNECT
        )

    async def send(self, msg_type: MsgType, *fields: Any) -> None:
        await self.channel.send_frames([encode_message(msg_type, *fields)])

    async def receive(self) -> tuple[MsgType, list[Any]]:
        return decode_message(await self.channel.receive_frame(64 * 1024 * 1024))

    async def receive_until_closed(self, timeout: float = 5.0) -> list[tuple[MsgType, list[Any]]]:
        """Read until the remote closes; returns what arrived (the last is usually DISCONNECT)."""
        received = []
        with trio.fail_after(timeout):
            try:
                while True:
                    received.append(await self.receive())
            except (PeerDisconnected, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # end of stream
        return received

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.channel.stream)


@asynccontextmanager
async def raw_session(
    port: int,
    *,
    key: keys.PrivateKey | None = None,
    chain_id: int = CHAIN_ID,
    genesis_hash: bytes = GENESIS_HASH,
    version: int = PROTOCOL_VERSION,
    claimed_node_id: bytes | None = None,
    signature_override: bytes | None = None,
    read_hello: bool = True,
) -> AsyncIterator[RawPeer]:
    key = key or make_key()
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    channel = await perform_noise_handshake(stream, initiator=True)
    hello = Hello(
        version, chain_id, genesis_hash, claimed_node_id or key.public_key.to_bytes(), 0, b"raw"
    )
    signature = signature_override or sign_hello(key, hello, channel.handshake_hash)
    await channel.send_frames([encode_message(MsgType.HELLO, rlp.encode(hello), signature)])
    peer = RawPeer(channel, key, None)
    if read_hello:
        msg_type, fields = decode_message(await channel.receive_frame(1 << 20))
        if msg_type is MsgType.DISCONNECT:
            peer.refusal = DisconnectReason(fields[0])
        else:
            assert msg_type is MsgType.HELLO, (msg_type, fields)
            peer.remote_hello = decode_hello(fields[0])
    try:
        yield peer
    finally:
        await peer.aclose()


# --- a chain of RLP blobs for sync ----------------------------------------


def make_chain(length: int, payload_size: int = 64) -> list[bytes]:
    """Blob h = rlp([h, keccak(blob h-1), filler]); blob 0 is the genesis."""
    blobs = [rlp.encode([0, b"\x00" * 32, b"genesis"])]
    for height in range(1, length + 1):
        blobs.append(rlp.encode([height, keccak(blobs[-1]), os.urandom(payload_size)]))
    return blobs


def make_header(blob: bytes) -> bytes:
    height, parent_hash, _ = rlp.decode(blob)
    return rlp.encode([height, parent_hash, keccak(blob)])


class ListProvider(SyncProviderAPI):
    """The test chain store: a list of blobs indexed by height."""

    def __init__(self, blobs: Sequence[bytes]) -> None:
        self.blobs = list(blobs)

    def get_headers(self, start: int, count: int) -> list[bytes]:
        return [make_header(blob) for blob in self.blobs[start : start + count]]

    def get_blocks(self, start: int, count: int) -> list[bytes]:
        return self.blobs[start : start + count]

    def status(self) -> tuple[int, bytes]:
        return len(self.blobs) - 1, keccak(self.blobs[-1])

    async def import_blocks(self, start: int, blobs: list[bytes]) -> None:
        """Append blobs that extend our head; anything else is the sender's fault."""
        if start != len(self.blobs):
            raise InvalidBatch(
                start, len(blobs), f"does not start at our next height {len(self.blobs)}"
            )
        for offset, blob in enumerate(blobs):
            validate_blob(blob, start + offset, keccak(self.blobs[-1]))
            self.blobs.append(blob)


def validate_blob(blob: bytes, height: int, parent_hash: bytes) -> None:
    try:
        got_height, got_parent, _ = rlp.decode(blob)
    except (rlp.DecodingError, ValueError):
        raise InvalidBatch(height, 1, "blob is not rlp([height, parent, payload])") from None
    if int.from_bytes(got_height, "big") != height or got_parent != parent_hash:
        raise InvalidBatch(height, 1, "blob does not extend the chain")
