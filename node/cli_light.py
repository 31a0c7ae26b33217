"""Light client command: `magicoin light --rpc URL --genesis FILE [--http.port P] [--checkpoint HASH]`.

Starts from the genesis file alone (or a trusted checkpoint block hash), follows
the server's headers verifying every commit and validator-set change, and serves
a verified JSON-RPC on 127.0.0.1 (default port 8555) until SIGINT/SIGTERM.
"""
from __future__ import annotations

import logging
import signal
from pathlib import Path

import click
import trio

from chain.exceptions import ChainError
from genesis.exceptions import GenesisError
from genesis import load_genesis
from node.logs import configure_logging

logger = logging.getLogger("magicoin.light")


def parse_checkpoint(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        checkpoint = bytes.fromhex(text)
    except ValueError:
        checkpoint = b""
    if len(checkpoint) != 32:
        raise click.BadParameter("a block hash is 32 bytes of hex", param_hint="--checkpoint")
    return checkpoint


@click.command("light")
@click.option("--rpc", "rpc_url", required=True, help="URL of an (untrusted) magicoin JSON-RPC server.")
@click.option("--genesis", "genesis_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="Genesis file: the only thing trusted (with --checkpoint, if given).")
@click.option("--checkpoint", default=None, help="Trusted block hash to start from instead of block 0.")
@click.option("--http.addr", "http_addr", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--http.port", "http_port", type=int, default=8555, show_default=True, help="Listen port.")
@click.option("--sequential/--skipping", "sequential", default=False, show_default=True,
              help="Verify every header, or skip CometBFT-style (bisecting when the set changed too much).")
@click.option("--poll", "poll_interval", type=float, default=1.0, show_default=True, help="Seconds between syncs.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the server.")
@click.option("--log.level", "log_level", default="info", show_default=True)
@click.option("--log.format", "log_format", default="text", show_default=True, help="json or text.")
def light_command(rpc_url: str, genesis_path: Path, checkpoint: str | None, http_addr: str, http_port: int,
                  sequential: bool, poll_interval: float, timeout: float, log_level: str, log_format: str) -> None:
    """Run a light client that verifies everything it serves."""
    from node.light.exceptions import LightClientError

    configure_logging(log_level, json_lines=log_format == "json")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request drowns the log
    try:
        genesis = load_genesis(genesis_path)
        trio.run(run_light, genesis, rpc_url, parse_checkpoint(checkpoint), http_addr, http_port,
                 not sequential, poll_interval, timeout)
    except (LightClientError, ChainError, GenesisError) as error:
        raise click.ClickException(f"{type(error).__name__}: {error}") from None


async def run_light(genesis, rpc_url: str, checkpoint: bytes | None, host: str, port: int, skipping: bool,
                    poll_interval: float, timeout: float) -> None:
    from node.light.client import LightClient
    from node.light.server import LightService
    from node.light.transport import HTTPTransport

    transport = HTTPTransport(rpc_url, timeout=timeout)
    try:
        if checkpoint is None:
            client = await LightClient.from_genesis(genesis, transport)
        else:
            client = await LightClient.from_checkpoint(genesis, transport, checkpoint)
        service = LightService(client, host, port, poll_interval=poll_interval, skipping=skipping)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(service.run)
                logger.info("verified JSON-RPC on %s (head %d, from %s)", url, client.head.number, rpc_url)
                async for signum in signals:
                    logger.info("shutting down on %s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        await transport.aclose()


COMMANDS: list = [light_command]
