"""Light client command: `magicoin light --rpc URL [--rpc URL2 ...] --genesis FILE [--http.port P] [--checkpoint HASH]`.

Starts from the genesis file alone (or a trusted checkpoint block hash), follows
the server's headers verifying every commit and validator-set change, and serves
a verified JSON-RPC on 127.0.0.1 (default port 8555) until SIGINT/SIGTERM.
"""
from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import NamedTuple

import click
import trio

from chain.exceptions import ChainError
from genesis.exceptions import GenesisError
from genesis import load_genesis
from node.logs import configure_logging, enable_crash_traces

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
@click.option("--rpc", "rpc_urls", required=True, multiple=True,
              help="URL of an (untrusted) magicoin JSON-RPC server; repeat it or separate URLs by commas to "
                   "follow several, cross-checked.")
@click.option("--genesis", "genesis_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="Genesis file: the only thing trusted (with --checkpoint, if given).")
@click.option("--checkpoint", default=None, help="Trusted block hash to start from instead of block 0.")
@click.option("--http.addr", "http_addr", default="127.0.0.1", show_default=True, help="Listen address.")
@click.option("--http.port", "http_port", type=int, default=8555, show_default=True, help="Listen port.")
@click.option("--sequential/--skipping", "sequential", default=False, show_default=True,
              help="Verify every header, or skip CometBFT-style (bisecting when the set changed too much).")
@click.option("--poll", "poll_interval", type=float, default=1.0, show_default=True, help="Seconds between syncs.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Deadline in seconds for each whole request to a server.")
@click.option("--max-response", "max_response", type=int, default=32 * 1024 * 1024, show_default=True,
              help="Largest answer in bytes read from a server.")
@click.option("--stall-window", "stall_window", type=float, default=30.0, show_default=True,
              help="Seconds without a new verified head (while a server claims more) before \"latest\" is refused.")
@click.option("--log.level", "log_level", default="info", show_default=True)
@click.option("--log.format", "log_format", default="text", show_default=True, help="json or text.")
def light_command(rpc_urls: tuple[str, ...], genesis_path: Path, checkpoint: str | None, http_addr: str,
                  http_port: int, sequential: bool, poll_interval: float, timeout: float, max_response: int,
                  stall_window: float, log_level: str, log_format: str) -> None:
    """Run a light client that verifies everything it serves."""
    from node.light.exceptions import LightClientError

    enable_crash_traces()  # no datadir: a segfault's stacks go to stderr, the light client's log stream
    configure_logging(log_level, json_lines=log_format == "json")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request drowns the log
    try:
        genesis = load_genesis(genesis_path)
        options = LightOptions(parse_rpc_urls(rpc_urls), timeout, max_response, stall_window)
        trio.run(run_light, genesis, options, parse_checkpoint(checkpoint), http_addr, http_port,
                 not sequential, poll_interval)
    except (LightClientError, ChainError, GenesisError) as error:
        raise click.ClickException(f"{type(error).__name__}: {error}") from None


class LightOptions(NamedTuple):
    rpc_urls: list[str]
    timeout: float
    max_response: int
    stall_window: float


def parse_rpc_urls(values: tuple[str, ...]) -> list[str]:
    """--rpc given several times, or with comma-separated URLs; each URL once, in order."""
    urls = [url.strip() for value in values for url in value.split(",") if url.strip()]
    if not urls:
        raise click.BadParameter("at least one URL", param_hint="--rpc")
    return list(dict.fromkeys(urls))


async def make_pool(genesis, options: LightOptions, transports: list, checkpoint: bytes | None):
    from node.light.client import LightClient
    from node.light.exceptions import LightClientError
    from node.light.upstreams import LightPool

    if checkpoint is None:
        return LightPool.from_genesis(genesis, transports, stall_window=options.stall_window)
    # A checkpoint's header and sets must come from some upstream: those that cannot give them are left out.
    clients, errors = [], []
    for transport in transports:
        try:
            clients.append(await LightClient.from_checkpoint(genesis, transport, checkpoint))
        except LightClientError as error:
            logger.error("upstream %s left out: %s: %s", transport.url, type(error).__name__, error)
            errors.append(error)
    if not clients:
        raise errors[0]
    return LightPool.from_clients(clients, stall_window=options.stall_window)


async def run_light(genesis, options: LightOptions, checkpoint: bytes | None, host: str, port: int,
                    skipping: bool, poll_interval: float) -> None:
    from node.light.server import LightService
    from node.light.transport import HTTPTransport

    transports = [HTTPTransport(url, timeout=options.timeout, max_response_bytes=options.max_response)
                  for url in options.rpc_urls]
    try:
        client = await make_pool(genesis, options, transports, checkpoint)
        service = LightService(client, host, port, poll_interval=poll_interval, skipping=skipping)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                url = await nursery.start(service.run)
                logger.info("verified JSON-RPC on %s (head %d, from %s)", url, client.head.number,
                            ", ".join(options.rpc_urls))
                async for signum in signals:
                    logger.info("shutting down on %s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        for transport in transports:
            await transport.aclose()


COMMANDS: list = [light_command]
