"""A person's accounts: `magicoin account new|list`, and the keystore look-ups the send commands share.

Accounts are Web3 Secret Storage v3 files (genesis.keys writes them), one per
file, in `~/.magicoin/keystore` unless MAGICOIN_KEYSTORE or --keystore-dir
says otherwise. Any v3 keystore works, so a `genesis init` keystore directory
can be used as it is. An account is named by its address or by its index in
`account list` (files in name order, so geth-style names list oldest first).
"""
from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import click

from genesis.keys import (
    MAX_KEYSTORE_SIZE,
    decode_keystore,
    get_address,
    new_private_key,
    read_keystore,
    write_keystore,
)
from node.cli_rpc import run_reporting_errors
from node.exceptions import NodeError
from primitives.limits import read_bounded_file

KEYSTORE_ENV = "MAGICOIN_KEYSTORE"
DEFAULT_KEYSTORE_DIR = Path("~/.magicoin/keystore")


class AccountError(NodeError):
    """A keystore account cannot be found or unlocked."""


class UnknownAccount(AccountError):
    pass


class WrongPassphrase(AccountError):
    pass


class KeystoreAccount(NamedTuple):
    address: bytes
    path: Path

    @property
    def hex(self) -> str:
        return "0x" + self.address.hex()


def get_keystore_dir(flag: Path | None) -> Path:
    if flag is not None:
        return flag.expanduser()
    return Path(os.environ.get(KEYSTORE_ENV) or DEFAULT_KEYSTORE_DIR).expanduser()


def read_keystore_address(path: Path) -> bytes | None:
    """The address a v3 keystore declares (None for a file that is not one: it is skipped, not fatal)."""
    try:
        # Bounded (size, then depth) before parsing: any file dropped in the directory is read here.
        address = decode_keystore(read_bounded_file(path, MAX_KEYSTORE_SIZE))["address"]
        return bytes.fromhex(address.removeprefix("0x"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # BoundedInputError is a ValueError
        return None


def list_accounts(keystore_dir: Path) -> list[KeystoreAccount]:
    if not keystore_dir.is_dir():
        return []
    accounts = []
    for path in sorted(keystore_dir.iterdir()):
        address = read_keystore_address(path) if path.is_file() else None
        if address is not None and len(address) == 20:
            accounts.append(KeystoreAccount(address, path))
    return accounts


def parse_address(text: str) -> bytes:
    """A 0x-prefixed 20-byte hex address; typed error otherwise."""
    try:
        if text[:2].lower() != "0x":
            raise ValueError
        address = bytes.fromhex(text[2:])
    except ValueError:
        raise AccountError("not a hex address", got=text, expected="0x followed by 40 hex digits") from None
    if len(address) != 20:
        raise AccountError("not a 20-byte address", got=text, expected="0x followed by 40 hex digits")
    return address


def find_account(keystore_dir: Path, selector: str | None) -> KeystoreAccount:
    """The account named by address or list index; the only account when none is named."""
    accounts = list_accounts(keystore_dir)
    if not accounts:
        raise UnknownAccount(f"no accounts in {keystore_dir}; create one with `magicoin account new`")
    if selector is None:
        if len(accounts) > 1:
            raise UnknownAccount(f"{len(accounts)} accounts in {keystore_dir}; choose one with --from",
                                 expected="an address or an index from `magicoin account list`")
        return accounts[0]
    if selector.isdigit():
        index = int(selector)
        if index >= len(accounts):
            raise UnknownAccount(f"no account #{index} in {keystore_dir}", got=index,
                                 expected=f"0..{len(accounts) - 1}")
        return accounts[index]
    address = parse_address(selector)
    for account in accounts:
        if account.address == address:
            return account
    raise UnknownAccount(f"no keystore for {selector} in {keystore_dir}")


def read_password_file(path: Path) -> str:
    """The file's first line, as geth reads --password files; the newline is not part of it."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise AccountError(f"cannot read the password file: {error.strerror}", got=str(path)) from None
    return lines[0] if lines else ""


def unlock(account: KeystoreAccount, password_file: Path | None) -> bytes:
    """The account's private key, decrypted with the file's passphrase or one typed at the prompt."""
    if password_file is not None:
        password = read_password_file(password_file)
    else:
        password = click.prompt(f"Passphrase for {account.hex}", hide_input=True, err=True)
    try:
        key = read_keystore(account.path, password)
    except ValueError:
        raise WrongPassphrase(f"wrong passphrase for {account.hex}") from None
    except (OSError, KeyError, TypeError) as error:
        raise AccountError(f"cannot read the keystore {account.path}: {error}") from None
    if get_address(key) != account.address:
        raise AccountError(f"the keystore {account.path} holds another key than the address it declares")
    return key


def make_keystore_filename(address: bytes) -> str:
    """geth's name, UTC--<time>--<address>, so that a directory lists oldest first and geth reads it."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    return f"UTC--{stamp}--{address.hex()}"


# --- commands ------------------------------------------------------------------------------------

keystore_dir_option = click.option(
    "--keystore-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help=f"Keystore directory. [${KEYSTORE_ENV} or {DEFAULT_KEYSTORE_DIR}]")
password_file_option = click.option(
    "--password-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="File whose first line is the passphrase (default: prompt).")


@click.group("account")
def account_group() -> None:
    """Create and list the keystore accounts that sign your work."""


@account_group.command("new")
@keystore_dir_option
@password_file_option
def new_command(keystore_dir: Path | None, password_file: Path | None) -> None:
    """Create an account: a fresh key in an encrypted keystore; prints its address."""
    run_reporting_errors(create_account, get_keystore_dir(keystore_dir), password_file)


def create_account(keystore_dir: Path, password_file: Path | None) -> None:
    save_account(new_private_key(), keystore_dir, password_file)


def save_account(key: bytes, keystore_dir: Path, password_file: Path | None) -> None:
    """Encrypt `key` into a new keystore file; prints the address and the file."""
    if password_file is not None:
        password = read_password_file(password_file)
    else:
        password = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True)
    address = get_address(key)
    try:
        keystore_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = write_keystore(keystore_dir / make_keystore_filename(address), key, password)
    except OSError as error:
        raise AccountError(f"cannot write the keystore: {error.strerror}", got=str(keystore_dir)) from None
    click.echo(f"address   0x{address.hex()}")
    click.echo(f"keystore  {path}")


@account_group.command("import")
@click.argument("key_file", type=click.Path(dir_okay=False, path_type=Path))
@keystore_dir_option
@password_file_option
def import_command(key_file: Path, keystore_dir: Path | None, password_file: Path | None) -> None:
    """Encrypt a raw hex private key (as geth's `account import`; e.g. a devnet node's validator.key)."""
    run_reporting_errors(import_account, key_file, get_keystore_dir(keystore_dir), password_file)


def read_raw_key(path: Path) -> bytes:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise AccountError(f"cannot read the key file: {error.strerror}", got=str(path)) from None
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        key = b""
    if len(key) != 32:
        raise AccountError("the key file does not hold a raw private key", got=str(path),
                           expected="64 hex digits (0x optional)")
    try:
        get_address(key)
    except ValueError:  # zero, or not below the curve order
        raise AccountError("the key file holds no valid secp256k1 private key", got=str(path)) from None
    return key


def import_account(key_file: Path, keystore_dir: Path, password_file: Path | None) -> None:
    key = read_raw_key(key_file)
    if any(account.address == get_address(key) for account in list_accounts(keystore_dir)):
        raise AccountError(f"0x{get_address(key).hex()} is already in {keystore_dir}")
    save_account(key, keystore_dir, password_file)


@account_group.command("list")
@keystore_dir_option
def list_command(keystore_dir: Path | None) -> None:
    """List the accounts in the keystore directory: index, address, file."""
    directory = get_keystore_dir(keystore_dir)
    accounts = list_accounts(directory)
    if not accounts:
        click.echo(f"no accounts in {directory}", err=True)
    for index, account in enumerate(accounts):
        click.echo(f"#{index}  {account.hex}  {account.path}")


COMMANDS: list = [account_group]
