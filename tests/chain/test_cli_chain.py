"""`magicoin export`, `import` and `replay` as a user runs them."""
from __future__ import annotations

from pathlib import Path

import rlp
from click.testing import CliRunner

from chain.blocks import Block
from chain.chain import Chain
from chain.db import LevelDB
from chain.replay import import_blocks
from chain.store import BLOCK_PREFIX
from genesis import save_genesis
from node.cli import cli
from node.cli_chain import get_chaindata_path
from node.workload import make_workload_genesis

from tests.chain.test_chain import recorded_blocks
from economy import make_work_rules

ROOT = Path(__file__).resolve().parents[2]


def make_datadir(path) -> Chain:
    genesis, _ = make_workload_genesis()
    db = LevelDB(get_chaindata_path(path))
    chain = Chain.from_genesis(db, genesis, make_work_rules)
    import_blocks(chain, recorded_blocks())
    return chain


def test_help_on_every_command():
    runner = CliRunner()
    for name in ("export", "import", "replay"):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0 and "--datadir" in result.output


def test_export_import_replay(tmp_path):
    source = make_datadir(tmp_path / "a")
    height, head = source.height, source.head
    source.db.close()
    genesis_file = tmp_path / "genesis.json"
    save_genesis(make_workload_genesis()[0], genesis_file)
    runner = CliRunner()

    result = runner.invoke(cli, ["export", "--datadir", str(tmp_path / "a"), str(tmp_path / "chain.rlp")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "chain.rlp").read_bytes() == b"".join(recorded_blocks())

    result = runner.invoke(cli, ["import", "--datadir", str(tmp_path / "b"), "--genesis", str(genesis_file),
                                 str(tmp_path / "chain.rlp")])
    assert result.exit_code == 0, result.output
    assert f"imported {height} blocks" in result.output
    with LevelDB(get_chaindata_path(tmp_path / "b")) as db:
        assert Chain.open(db, make_work_rules).head == head

    result = runner.invoke(cli, ["replay", "--datadir", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert f"replayed {height} blocks" in result.output and "blocks/s" in result.output and "tx/s" in result.output


def test_replay_reports_the_block_and_field(tmp_path):
    chain = make_datadir(tmp_path / "a")
    block = chain.get_block_by_number(2)
    chain.db[BLOCK_PREFIX + block.hash] = rlp.encode(
        Block(block.header.copy(recognition=block.header.recognition + 1), block.transactions, block.last_commit))
    chain.db.close()
    result = CliRunner().invoke(cli, ["replay", "--datadir", str(tmp_path / "a"), "--workers", "0"])
    assert result.exit_code == 1
    assert "MISMATCH at block 2: field recognition" in result.output


def test_missing_datadir_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(cli, ["replay", "--datadir", str(tmp_path / "nothing")])
    assert result.exit_code != 0 and "no chain in" in result.output and "Traceback" not in result.output


def test_import_with_another_genesis_is_refused(tmp_path):
    chain = make_datadir(tmp_path / "a")
    chain.db.close()
    (tmp_path / "empty.rlp").write_bytes(b"")
    result = CliRunner().invoke(cli, ["import", "--datadir", str(tmp_path / "a"), "--genesis",
                                      str(ROOT / "genesis" / "devnet.json"), str(tmp_path / "empty.rlp")])
    assert result.exit_code == 1 and "another genesis" in result.output


def test_prune_command(tmp_path):
    chain = make_datadir(tmp_path / "a")
    height = chain.height
    chain.db.close()
    result = CliRunner().invoke(cli, ["prune", "--datadir", str(tmp_path / "a"), "--keep", "2"])
    assert result.exit_code == 0, result.output
    assert f"state of blocks {height - 1}..{height}" in result.output
    result = CliRunner().invoke(cli, ["replay", "--datadir", str(tmp_path / "a"), "--workers", "0"])
    assert result.exit_code == 0, result.output  # replay needs blocks, not old state
