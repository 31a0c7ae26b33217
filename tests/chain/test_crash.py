"""Crash safety, for real: a child process imports blocks into LevelDB and is killed with SIGKILL.

After every kill the database must reopen to a fully committed block (the last
one the child reported, or the one it was committing when it died), with that
block's state, body and indexes all readable. Finally the import is finished
and a replay from genesis must reproduce the same head.
"""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from eth_utils import keccak

from chain.chain import Chain
from chain.db import LevelDB
from chain.replay import iter_rlp_items, replay
from chain.state import State
from node.workload import write_workload_file

from tests.chain.test_proofs import verify_account_proof
from economy import make_work_rules

BLOCKS = 30
TXS = 100  # enough work per import that the kills land mid-import on a fast replay path
KILLS = 6
ROOT = Path(__file__).resolve().parents[2]


def child_main(db_path: str, blocks_path: str) -> None:
    """Import every block of the file not yet in the database, reporting each commit on stdout."""
    from chain.blocks import decode_block

    db = LevelDB(db_path)
    chain = Chain.open(db, make_work_rules)
    print(f"ready {chain.height}", flush=True)
    with open(blocks_path, "rb") as stream:
        for encoded in iter_rlp_items(stream):
            block = decode_block(encoded)
            if block.header.number <= chain.height:
                continue
            chain.import_block(block)
            print(f"committed {block.header.number}", flush=True)
    print("done", flush=True)


def start_child(db_path: Path, blocks_path: Path) -> subprocess.Popen:
    code = "import sys; from tests.chain.test_crash import child_main; child_main(sys.argv[1], sys.argv[2])"
    return subprocess.Popen([sys.executable, "-c", code, str(db_path), str(blocks_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)


def read_until(child: subprocess.Popen, prefix: str) -> list[str]:
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.startswith(prefix):
            break
    return lines


def check_consistent(db_path: Path) -> int:
    """Reopen the killed database and check that the head block is complete; returns its number."""
    with LevelDB(db_path) as db:
        chain = Chain.open(db, make_work_rules)
        head = chain.head
        for number in range(head.number + 1):
            block = chain.get_block_by_number(number)
            for index, raw in enumerate(block.transactions[:3]):
                assert chain.get_transaction(keccak(raw))[1:] == (index, raw)
            assert len(chain.get_receipts(block.hash)) == len(block.transactions)
        state = State.at(db, head.state_root)
        accounts = list(state.iter_accounts())
        assert accounts, "the head's state must be fully readable"
        for address, balance in accounts[:20]:
            proof = chain.get_proof(address, [(0).to_bytes(32, "big")])
            verify_account_proof(head.state_root, proof)
            assert proof.balance == balance
        return head.number


@pytest.mark.slow
def test_sigkill_during_import_reopens_to_last_committed_block(tmp_path):
    blocks_path = tmp_path / "chain.rlp"
    genesis, count = write_workload_file(blocks_path, blocks=BLOCKS, txs_per_block=TXS, accounts=1_000, seed=3)
    db_path = tmp_path / "chaindata"
    with LevelDB(db_path) as db:
        Chain.from_genesis(db, genesis, make_work_rules)

    rng = random.Random(2024)
    kills_mid_import = 0
    for _ in range(KILLS):
        child = start_child(db_path, blocks_path)
        started = read_until(child, "ready")
        assert started and started[-1].startswith("ready"), started
        time.sleep(rng.uniform(0.05, 0.3))
        child.send_signal(signal.SIGKILL)
        remaining = child.stdout.read().splitlines()
        child.wait()
        if remaining and remaining[-1] == "done":
            break  # it finished before the signal (a slow test machine would not get here)
        assert child.returncode == -signal.SIGKILL
        reported = [int(line.split()[1]) for line in remaining if line.startswith("committed ")]
        last_reported = max(reported, default=int(started[-1].split()[1]))
        head = check_consistent(db_path)
        # The head is the last block reported, or the next one if the kill landed between
        # its commit and the print; never a half-written block.
        assert last_reported <= head <= last_reported + 1, (last_reported, head)
        kills_mid_import += head < count
        print(f"killed after block {last_reported}; reopened at {head}")
    assert kills_mid_import >= KILLS // 2, "the kills should land while blocks are being imported"

    child = start_child(db_path, blocks_path)
    lines = read_until(child, "done")
    child.wait(timeout=60)
    assert lines[-1] == "done" and check_consistent(db_path) == count

    with LevelDB(db_path) as db, LevelDB(tmp_path / "replayed") as fresh_db:
        source = Chain.open(db, make_work_rules)
        target = Chain.from_genesis(fresh_db, genesis, make_work_rules)
        replay(source, target)
        assert target.head == source.head and target.head.number == count
