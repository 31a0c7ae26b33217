"""The encrypted, framed byte channel under every peer connection.

Layers, bottom up:
- records: `u16 length || bytes` on TCP. The three Noise XX handshake messages
  are records; after the handshake every record is one ChaCha20-Poly1305
  ciphertext (at most 65535 bytes, the Noise message limit).
- frames: `u32 length || body` carried inside the decrypted record stream, so a
  frame may span records. The length is checked against the maximum frame size
  before the body is read, so a huge length prefix costs us nothing.
"""

from __future__ import annotations

import os
import struct

import trio
from noise.connection import Keypair, NoiseConnection

from .exceptions import (
    MalformedFrame,
    NoiseHandshakeFailed,
    OversizedFrame,
    PeerDisconnected,
    DisconnectReason,
)

NOISE_PROTOCOL_NAME = b"Noise_XX_25519_ChaChaPoly_SHA256"
NOISE_PROLOGUE = b"magicoin-p2p"
MAX_RECORD_SIZE = 65535
AEAD_TAG_SIZE = 16
MAX_RECORD_PLAINTEXT = MAX_RECORD_SIZE - AEAD_TAG_SIZE
RECORD_HEADER = struct.Struct(">H")
FRAME_HEADER = struct.Struct(">I")
RECEIVE_CHUNK = 256 * 1024
# XX with empty payloads: -> e (32); <- e, ee, s, es (32 + 32+16 + 16); -> s, se (32+16 + 16).
HANDSHAKE_MESSAGE_SIZES = (32, 96, 64)


class RecordReader:
    """Splits the TCP byte stream into records without trusting their content."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.buffer = bytearray()
        self.bytes_in = 0

    async def receive_record(self, expected_size: int | None = None) -> bytes:
        while True:
            record = self.pop_record(expected_size)
            if record is not None:
                return record
            await self.fill()

    def pop_record(self, expected_size: int | None = None) -> bytes | None:
        if len(self.buffer) < RECORD_HEADER.size:
            return None
        (length,) = RECORD_HEADER.unpack_from(self.buffer)
        if expected_size is not None and length != expected_size:
            # Handshake messages have fixed sizes: refuse junk without waiting for it.
            raise NoiseHandshakeFailed(
                f"handshake message of {length} bytes, expected {expected_size}"
            )
        end = RECORD_HEADER.size + length
        if len(self.buffer) < end:
            return None
        record = bytes(self.buffer[RECORD_HEADER.size : end])
        del self.buffer[:end]
        return record

    async def fill(self) -> None:
        data = await self.stream.receive_some(RECEIVE_CHUNK)
        if not data:
            raise PeerDisconnected(DisconnectReason.CONNECTION_LOST, "end of stream")
        self.bytes_in += len(data)
        self.buffer += data


def encode_record(payload: bytes) -> bytes:
    return RECORD_HEADER.pack(len(payload)) + payload


async def perform_noise_handshake(
    stream: trio.abc.Stream, *, initiator: bool, static_private_key: bytes | None = None
) -> "SecureChannel":
    """Run Noise XX as initiator (-> e, <- e ee s es, -> s se) or responder."""
    noise = NoiseConnection.from_name(NOISE_PROTOCOL_NAME)
    if initiator:
        noise.set_as_initiator()
    else:
        noise.set_as_responder()
    noise.set_prologue(NOISE_PROLOGUE)
    noise.set_keypair_from_private_bytes(Keypair.STATIC, static_private_key or os.urandom(32))
    noise.start_handshake()
    reader = RecordReader(stream)
    bytes_out = 0
    for index, size in enumerate(HANDSHAKE_MESSAGE_SIZES):
        if (index % 2 == 0) == initiator:
            record = encode_record(bytes(noise.write_message()))
            await stream.send_all(record)
            bytes_out += len(record)
        else:
            message = await reader.receive_record(expected_size=size)
            process_handshake_message(noise, message)
    if not noise.handshake_finished:
        raise NoiseHandshakeFailed("handshake did not finish after three messages")
    channel = SecureChannel(stream, noise, reader)
    channel.bytes_out = bytes_out
    return channel


def process_handshake_message(noise: NoiseConnection, message: bytes) -> None:
    # The noise library raises assorted types (ValueError, InvalidTag, its own)
    # for garbage; all of them mean the same thing to us.
    try:
        noise.read_message(message)
    except Exception as exc:
        raise NoiseHandshakeFailed(f"{type(exc).__name__}: {exc}") from None


class SecureChannel:
    """Frames over the encrypted record stream of one finished Noise session."""

    def __init__(
        self, stream: trio.abc.Stream, noise: NoiseConnection, reader: RecordReader
    ) -> None:
        self.stream = stream
        self.noise = noise
        self.reader = reader
        self.handshake_hash = bytes(noise.get_handshake_hash())
        self.plaintext = bytearray()
        self.bytes_out = 0
        self.is_broken = False

    @property
    def bytes_in(self) -> int:
        return self.reader.bytes_in

    # --- sending ---

    async def send_frames(self, bodies: list[bytes]) -> None:
        """Send several frames in one write; the caller serialises senders."""
        plaintext = b"".join(FRAME_HEADER.pack(len(body)) + body for body in bodies)
        await self.send_plaintext(plaintext)

    async def send_plaintext(self, plaintext: bytes) -> None:
        """Encrypt raw stream bytes. Frames are built on top; tests use it to inject junk."""
        records = []
        for offset in range(0, len(plaintext), MAX_RECORD_PLAINTEXT):
            chunk = plaintext[offset : offset + MAX_RECORD_PLAINTEXT]
            records.append(encode_record(self.noise.encrypt(bytes(chunk))))
        data = b"".join(records)
        self.is_broken = True  # until the write completes; a cancelled write leaves half a record
        await self.stream.send_all(data)
        self.is_broken = False
        self.bytes_out += len(data)

    # --- receiving ---

    async def receive_frame(self, max_frame_size: int) -> bytes:
        await self.receive_plaintext(FRAME_HEADER.size)
        (length,) = FRAME_HEADER.unpack_from(self.plaintext)
        if length > max_frame_size:
            raise OversizedFrame(length, max_frame_size)
        end = FRAME_HEADER.size + length
        await self.receive_plaintext(end)
        body = bytes(self.plaintext[FRAME_HEADER.size : end])
        del self.plaintext[:end]
        return body

    async def receive_plaintext(self, size: int) -> None:
        while len(self.plaintext) < size:
            record = await self.reader.receive_record()
            self.plaintext += self.decrypt_record(record)

    def decrypt_record(self, record: bytes) -> bytes:
        if len(record) < AEAD_TAG_SIZE:
            raise MalformedFrame(f"record of {len(record)} bytes is shorter than the AEAD tag")
        try:
            return self.noise.decrypt(record)
        except Exception as exc:  # InvalidTag and friends from the noise library
            raise MalformedFrame(f"record failed authentication ({type(exc).__name__})") from None

    async def aclose(self) -> None:
        await self.stream.aclose()
