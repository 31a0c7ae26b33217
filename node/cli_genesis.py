"""Genesis commands: `magicoin genesis init` (genesis file + validator keystores) and `genesis hash`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from chain.exceptions import ChainError
from genesis.exceptions import GenesisError
from genesis import DEVNET_CHAIN_ID, Genesis, load_genesis, make_genesis, save_genesis
from genesis.keys import (
    devnet_private_key,
    get_address,
    keystore_filename,
    new_private_key,
    write_keystore,
)

GENESIS_FILENAME = "genesis.json"
KEYSTORE_DIRNAME = "keystore"


def read_password(password: str | None, password_file: Path | None) -> str:
    if password is not None and password_file is not None:
        raise click.UsageError("give --password or --password-file, not both")
    if password_file is not None:
        # The first line, as geth reads --password files; the newline is not part of it.
        lines = password_file.read_text().splitlines()
        return lines[0] if lines else ""
    if password is not None:
        return password
    return click.prompt("Keystore password", hide_input=True, confirmation_prompt=True)


def compute_genesis_block_hash(genesis: Genesis) -> bytes:
    """The hash of block 0, computed on a throwaway in-memory state."""
    from eth.db.atomic import AtomicDB

    from chain.state import State
    from chain.transition import apply_genesis

    return apply_genesis(State(AtomicDB()), genesis).hash


@click.group("genesis")
def genesis_group() -> None:
    """Create and inspect genesis files."""


@genesis_group.command("init")
@click.option(
    "--validators",
    "-n",
    "count",
    type=click.IntRange(1, 100),
    default=4,
    show_default=True,
    help="Number of initial validators (one keystore each).",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory for genesis.json and keystore/.",
)
@click.option("--chain-id", type=click.IntRange(1), default=DEVNET_CHAIN_ID, show_default=True)
@click.option(
    "--timestamp-ms",
    type=click.IntRange(0),
    default=None,
    help="Genesis time in ms since the epoch (default: now).",
)
@click.option(
    "--password",
    default=None,
    help="Keystore password (visible in your shell history; "
    "prefer --password-file or the prompt).",
)
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="File whose first line is the keystore password.",
)
@click.option(
    "--devnet-keys",
    is_flag=True,
    help="Use the deterministic, PUBLIC devnet keys instead of fresh random ones (INSECURE).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing genesis.json.")
def init_command(
    count: int,
    out_dir: Path,
    chain_id: int,
    timestamp_ms: int | None,
    password: str | None,
    password_file: Path | None,
    devnet_keys: bool,
    force: bool,
) -> None:
    """Write a genesis file and N encrypted validator keystores (Web3 Secret Storage v3)."""
    genesis_path = out_dir / GENESIS_FILENAME
    if genesis_path.exists() and not force:
        raise click.ClickException(f"{genesis_path} exists; use --force to overwrite it")
    secret = read_password(password, password_file)
    keys = [devnet_private_key(i) if devnet_keys else new_private_key() for i in range(count)]
    addresses = [get_address(key) for key in keys]
    genesis = make_genesis(
        chain_id,
        addresses,
        timestamp_ms=timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
    )

    keystore_dir = out_dir / KEYSTORE_DIRNAME
    keystore_dir.mkdir(parents=True, exist_ok=True)
    for key, address in zip(keys, addresses):
        write_keystore(keystore_dir / keystore_filename(address), key, secret)
    save_genesis(genesis, genesis_path)

    click.echo(f"genesis file   {genesis_path}")
    click.echo(f"keystores      {keystore_dir} ({count})")
    for address in addresses:
        click.echo(f"  validator    0x{address.hex()}")
    click.echo(f"chain id       {genesis.chain_id}")
    click.echo(f"genesis hash   0x{genesis.genesis_hash.hex()}")
    click.echo(f"block 0 hash   0x{compute_genesis_block_hash(genesis).hex()}")


@genesis_group.command("hash")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def hash_command(path: Path) -> None:
    """Validate a genesis file and print its genesis hash and block 0 hash."""
    try:
        genesis = load_genesis(path)
    except (ChainError, GenesisError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"genesis hash   0x{genesis.genesis_hash.hex()}")
    click.echo(f"block 0 hash   0x{compute_genesis_block_hash(genesis).hex()}")


COMMANDS: list = [genesis_group]
