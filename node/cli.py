"""The `magicoin` command line: one click group, subcommands registered from their modules."""
from __future__ import annotations

import importlib

import click

# Each module defines click commands named in its `COMMANDS` list; keeping the
# registry here lets packages add commands without editing one shared file.
COMMAND_MODULES = (
    "node.cli_genesis",
    "node.cli_chain",
    "node.cli_inference",
    "node.cli_model",
    "node.cli_node",
    "node.cli_light",
    "node.cli_account",
    "node.cli_send",
    "node.cli_work",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="magicoin")
def cli() -> None:
    """magicoin: a chain whose proof of work is useful work that peers recognise."""


def register_commands(group: click.Group) -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in module.COMMANDS:
            group.add_command(command)


register_commands(cli)


def main() -> None:
    cli()
