"""Connection setup: Noise XX, signed hellos and admission turn a TCP stream into a `Peer`.

Shared by the listener and the dialer. A connection that fails any step is
closed, with a DISCONNECT saying why when we have a channel to say it on.
"""

from __future__ import annotations

import logging

import rlp
import trio

from .abc import PeerHostAPI
from .config import LocalNode, P2PConfig
from .exceptions import HelloMismatch, InvalidMessage, P2PError, PeerDisconnected
from .hello import (
    Hello,
    decode_hello,
    sign_hello,
    validate_expected_identity,
    validate_hello_signature,
    validate_network,
)
from .messages import MsgType, decode_message, encode_message
from .peer import Peer, compute_remote_reason
from .peer_table import PeerTable
from .secure import SecureChannel, perform_noise_handshake

logger = logging.getLogger("p2p.handshake")

MAX_HELLO_FRAME = (
    2048  # a hello (or a refusal) is a few hundred bytes; nobody gets 4 MiB before we know them
)


class Handshaker:
    def __init__(
        self, config: P2PConfig, local: LocalNode, peers: PeerTable, host: PeerHostAPI
    ) -> None:
        self.config = config
        self.failures = 0  # connections that did not get through the handshake
        self._local = local
        self._peers = peers
        self._host = host

    async def establish(
        self,
        stream: trio.SocketStream,
        *,
        inbound: bool,
        remote_host: str,
        expected_node_id: bytes | None = None,
    ) -> Peer:
        """Noise XX, then signed hellos, then admission; closes the stream on any failure."""
        channel: SecureChannel | None = None
        try:
            with trio.fail_after(self.config.handshake_timeout):
                channel = await perform_noise_handshake(stream, initiator=not inbound)
                if inbound:
                    hello = await self._receive_hello(channel, expected_node_id)
                    await self._send_hello(channel)
                else:
                    await self._send_hello(channel)
                    hello = await self._receive_hello(channel, expected_node_id)
            return Peer(self._host, channel, hello, inbound=inbound, remote_host=remote_host)
        except (
            P2PError,
            trio.TooSlowError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            OSError,
        ) as exc:
            self.failures += 1
            logger.warning(
                "handshake failed remote=%s inbound=%s error=%s: %s",
                remote_host,
                inbound,
                type(exc).__name__,
                exc,
            )
            await self._refuse(stream, channel, exc)
            raise

    async def _send_hello(self, channel: SecureChannel) -> None:
        ours = Hello(
            self.config.protocol_version,
            self.config.chain_id,
            self.config.genesis_hash,
            self._local.node_id,
            self._local.listen_port or 0,
            self.config.client,
        )
        signature = sign_hello(self.config.private_key, ours, channel.handshake_hash)
        await channel.send_frames([encode_message(MsgType.HELLO, rlp.encode(ours), signature)])

    async def _receive_hello(self, channel: SecureChannel, expected_node_id: bytes | None) -> Hello:
        """The remote's hello, checked for network, identity and admission.

        The dialler speaks first, so a responder that refuses never reveals its
        own hello and the dialler learns the typed reason from the DISCONNECT.
        """
        msg_type, fields = decode_message(await channel.receive_frame(MAX_HELLO_FRAME))
        if msg_type is MsgType.DISCONNECT:
            raise PeerDisconnected(
                compute_remote_reason(fields[0]), f"refused by remote: {fields[1][:200]}"
            )
        if msg_type is not MsgType.HELLO:
            raise InvalidMessage("first message is not HELLO", got=msg_type.name, expected="HELLO")
        theirs = decode_hello(fields[0])
        # The signature first: every later refusal is then pinned on a proven identity.
        validate_hello_signature(theirs, fields[1], channel.handshake_hash)
        self._peers.validate_not_banned(theirs.node_id)
        try:
            validate_network(theirs, self._local.network)
        except HelloMismatch as exc:
            # A node of another network would redial us forever: keep it away for a while.
            self._peers.ban(theirs.node_id, str(exc))
            raise
        validate_expected_identity(theirs, expected_node_id)
        self._peers.validate_admission(theirs.node_id)
        return theirs

    async def _refuse(
        self, stream: trio.SocketStream, channel: SecureChannel | None, exc: BaseException
    ) -> None:
        """Tell the remote why (if we have a channel and it was our decision), then close."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1.0):
                if (
                    channel is not None
                    and isinstance(exc, P2PError)
                    and not isinstance(exc, PeerDisconnected)
                ):
                    try:
                        await channel.send_frames(
                            [encode_message(MsgType.DISCONNECT, int(exc.reason), str(exc)[:200])]
                        )
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
            await trio.aclose_forcefully(stream)
