"""Chain data commands: `magicoin export`, `magicoin import`, `magicoin replay`.

A node's chain lives in `DATADIR/chaindata` (LevelDB). Files are concatenated
RLP blocks, as geth's `export`/`import` use. The commands time the chain's
work themselves (`chain.replay` has no clock) and report blocks/s and tx/s.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TypeVar

import click

from chain.exceptions import ChainError
from economy import make_work_rules

CHAINDATA = "chaindata"

T = TypeVar("T")
OnProgress = Callable[[int, int], None]  # (blocks done, transactions done)


def get_chaindata_path(datadir: Path) -> Path:
    return Path(datadir) / CHAINDATA


def open_chain(datadir: Path, genesis_path: Path | None = None, *, create: bool = False):
    """The chain in datadir; with create=True an empty datadir is initialised from the genesis."""
    from chain.chain import Chain
    from chain.db import LevelDB
    from genesis import DEVNET_GENESIS_PATH, load_genesis

    path = get_chaindata_path(datadir)
    if not create and not path.exists():
        raise click.ClickException(f"no chain in {datadir} (expected {path})")
    try:
        db = LevelDB(path)
    except Exception as error:  # plyvel.IOError: another process (a running node) holds the lock
        raise click.ClickException(f"cannot open {path}: {error}") from None
    try:
        if genesis_path is not None or (create and db.get(b"genesis") is None):
            genesis = load_genesis(genesis_path or DEVNET_GENESIS_PATH)
            return Chain.from_genesis(db, genesis, make_work_rules)
        return Chain.open(db, make_work_rules)
    except ChainError as error:
        db.close()
        raise click.ClickException(str(error)) from None
    except BaseException:
        db.close()
        raise


def make_progress(console_file=None):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=console_file or sys.stderr),
        transient=False,
    )


def format_rate(blocks: int, txs: int, seconds: float, separator: str = "  ") -> str:
    """Blocks/s and tx/s over `seconds` of wall time ("" before any time has passed)."""
    if seconds <= 0:
        return ""
    return f"{blocks / seconds:,.1f} blocks/s{separator}{txs / seconds:,.0f} tx/s"


def run_timed(label: str, total: int | None, work: Callable[[OnProgress], T]) -> tuple[T, float]:
    """`work(on_progress)` under a progress bar showing blocks/s and tx/s; its result and its wall seconds."""
    with make_progress() as progress:
        task = progress.add_task(label, total=total, rate="")
        started = time.perf_counter()

        def on_progress(blocks: int, txs: int) -> None:
            progress.update(task, completed=blocks, rate=format_rate(blocks, txs, time.perf_counter() - started))

        result = work(on_progress)
        return result, time.perf_counter() - started


datadir_option = click.option(
    "--datadir", type=click.Path(file_okay=False, path_type=Path), required=True,
    help="Node data directory (the chain is in DATADIR/chaindata).")


@click.command("export")
@datadir_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--first", type=click.IntRange(1), default=1, show_default=True, help="First block to export.")
@click.option("--last", type=click.IntRange(1), default=None, help="Last block to export (default: head).")
def export_command(datadir: Path, file: Path, first: int, last: int | None) -> None:
    """Export blocks to FILE as concatenated RLP (genesis is not included)."""
    from chain.replay import export_blocks

    chain = open_chain(datadir)
    try:
        with open(file, "wb") as stream:
            count = export_blocks(chain, stream, first, last)
    finally:
        chain.db.close()
    click.echo(f"exported {count} blocks ({first}..{first + count - 1}) to {file}")


@click.command("import")
@datadir_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--genesis", "genesis_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Genesis for an empty datadir (default: the shipped devnet genesis).")
def import_command(datadir: Path, file: Path, genesis_path: Path | None) -> None:
    """Import concatenated RLP blocks from FILE with full validation (known blocks are skipped)."""
    from chain.replay import TransactionPrefetcher, import_blocks, iter_rlp_items

    chain = open_chain(datadir, genesis_path, create=True)
    try:
        with open(file, "rb") as stream:
            totals, seconds = run_timed("import", None, lambda on_progress: import_blocks(
                chain, iter_rlp_items(stream), progress=on_progress, prefetch=TransactionPrefetcher()))
    except ChainError as error:
        raise click.ClickException(f"import stopped: {error}") from None
    finally:
        chain.db.close()
    click.echo(f"imported {totals.blocks} blocks, {totals.transactions} transactions in {seconds:.2f}s "
               f"({format_rate(totals.blocks, totals.transactions, seconds)}); head {chain.height}")


@click.command("replay")
@datadir_option
@click.option("--into", "into", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the fresh database (default: a temporary one, removed afterwards).")
@click.option("--workers", type=click.IntRange(0), default=1, show_default=True,
              help="Processes decoding and signature-checking transactions ahead of execution (0: none).")
@click.option("--last", type=click.IntRange(1), default=None, help="Stop after this block (default: head).")
def replay_command(datadir: Path, into: Path | None, workers: int, last: int | None) -> None:
    """Re-execute every block from genesis in a fresh database, checking every root and signature."""
    from chain.chain import Chain
    from chain.db import LevelDB
    from chain.replay import ReplayMismatch, TransactionPrefetcher, replay

    source = open_chain(datadir)
    target_dir = Path(into) if into is not None else Path(tempfile.mkdtemp(prefix="magicoin-replay-"))
    if into is not None and get_chaindata_path(target_dir).exists():
        source.db.close()
        raise click.ClickException(f"{get_chaindata_path(target_dir)} exists; replay needs a fresh database")
    target_db = LevelDB(get_chaindata_path(target_dir))
    try:
        target = Chain.from_genesis(target_db, source.genesis, make_work_rules)
        total = source.height if last is None else min(last, source.height)
        prefetch = TransactionPrefetcher(workers=workers) if workers else None
        totals, seconds = run_timed("replay", total, lambda on_progress: replay(
            source, target, progress=on_progress, prefetch=prefetch, stop=total))
    except ReplayMismatch as error:
        click.echo(f"replay MISMATCH at block {error.number}: field {error.field}: {error}", err=True)
        raise SystemExit(1) from None
    finally:
        target_db.close()
        source.db.close()
        if into is None:
            shutil.rmtree(target_dir, ignore_errors=True)
    click.echo(f"replayed {totals.blocks} blocks, {totals.transactions} transactions in {seconds:.2f}s: "
               f"{format_rate(totals.blocks, totals.transactions, seconds, ', ')}; "
               f"every root and signature matched")


@click.command("prune")
@datadir_option
@click.option("--keep", type=click.IntRange(1), default=128, show_default=True,
              help="Keep the state of this many most recent blocks (proofs work only for those).")
def prune_command(datadir: Path, keep: int) -> None:
    """Delete old state tries, keeping the last KEEP blocks' state (blocks and receipts stay)."""
    chain = open_chain(datadir)
    try:
        kept, deleted = chain.prune(keep)
    finally:
        chain.db.close()
    click.echo(f"pruned {deleted} trie nodes; kept {kept} (state of blocks {max(0, chain.height - keep + 1)}.."
               f"{chain.height})")


COMMANDS: list = [export_command, import_command, replay_command, prune_command]
