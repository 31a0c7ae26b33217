"""chain.chain.Chain on LevelDB: genesis, import of real signed work blocks, indexes, proofs, bad blocks."""
from __future__ import annotations

import functools

import pytest
import rlp
from eth_utils import keccak

from chain.blocks import Block, decode_block
from chain.chain import Chain, GenesisMismatch, IncompatibleDatabase, InvalidParentCommit, KnownBlock, NoGenesis
from chain.db import LevelDB, MemoryDB
from chain.exceptions import HeaderMismatch, InvalidBlockTransaction, InvalidHeader
from chain.state import State
from chain.transactions import clear_sender_cache
from genesis import load_devnet_genesis
from genesis.keys import devnet_private_key
from node.devchain import sign_commit
from node.workload import build_workload_chain, make_workload_genesis

from tests.chain.test_proofs import verify_account_proof
from economy import make_work_rules

BLOCKS = 6
TXS = 40


@functools.lru_cache(maxsize=1)
def recorded_blocks() -> tuple[bytes, ...]:
    """A small chain of real signed work (every kind), built once per test session."""
    chain = build_workload_chain(MemoryDB(), blocks=BLOCKS, txs_per_block=TXS, accounts=1_000)
    return tuple(chain.store.get_encoded_block(chain.store.get_canonical_hash(n)) for n in range(1, BLOCKS + 1))


@pytest.fixture
def blocks() -> list[Block]:
    return [decode_block(encoded) for encoded in recorded_blocks()]


@pytest.fixture
def db(tmp_path):
    database = LevelDB(tmp_path / "chaindata")
    yield database
    database.close()


@pytest.fixture
def fresh_chain(db) -> Chain:
    genesis, _ = make_workload_genesis()
    clear_sender_cache()  # every import below recovers its senders itself
    return Chain.from_genesis(db, genesis, make_work_rules)


def count_keys(db: LevelDB) -> int:
    return sum(1 for _ in db.iterate_prefix(b""))


def test_genesis_is_written_once_and_checked(tmp_path):
    genesis, _ = make_workload_genesis()
    with LevelDB(tmp_path / "a") as db:
        chain = Chain.from_genesis(db, genesis, make_work_rules)
        assert chain.height == 0 and chain.head.extra_data == genesis.genesis_hash
        again = Chain.from_genesis(db, genesis, make_work_rules)
        assert again.head == chain.head
        assert Chain.open(db, make_work_rules).genesis == genesis
        with pytest.raises(GenesisMismatch) as excinfo:
            Chain.from_genesis(db, load_devnet_genesis(), make_work_rules)
        assert excinfo.value.got == genesis.genesis_hash
    with LevelDB(tmp_path / "empty") as empty, pytest.raises(NoGenesis):
        Chain.open(empty, make_work_rules)


def test_a_database_from_another_genesis_format_is_a_clear_error(tmp_path):
    """A datadir written when genesis params had fewer fields (13) is refused by name, not by an RLP traceback."""
    import rlp

    from chain.store import GENESIS_KEY

    genesis, _ = make_workload_genesis()
    fields = rlp.decode(rlp.encode(genesis))
    older = rlp.encode([fields[0], fields[1], fields[2][:13], *fields[3:]])
    with LevelDB(tmp_path / "old") as db:
        db[GENESIS_KEY] = older
        with pytest.raises(IncompatibleDatabase, match="remove the datadir"):
            Chain.open(db, make_work_rules)
        with pytest.raises(IncompatibleDatabase):
            Chain.from_genesis(db, genesis, make_work_rules)


def test_import_indexes_and_reopen(db, fresh_chain, blocks):
    chain = fresh_chain
    for block in blocks:
        commit = sign_commit(block.header, [devnet_private_key(i) for i in range(4)], chain.genesis.chain_id)
        imported = chain.import_block(block, commit)
        assert chain.head == block.header
        assert len(imported.outcome.receipts) == len(block.transactions)
    reopened = Chain.open(db, make_work_rules)
    assert reopened.head == blocks[-1].header
    for block in blocks:
        assert reopened.get_block_by_number(block.header.number) == block
        assert reopened.get_block_by_hash(block.hash) == block
        receipts = reopened.get_receipts(block.hash)
        assert len(receipts) == len(block.transactions)
        for index, raw in enumerate(block.transactions):
            found, found_index, found_raw = reopened.get_transaction(keccak(raw))
            assert (found.hash, found_index, found_raw) == (block.hash, index, raw)
            _, _, receipt, reason = reopened.get_receipt(keccak(raw))
            assert receipt == receipts[index]
            assert (reason != "") == (receipt.status == 0)
    # The commit for block n is block n+1's last_commit; the head's is the one stored with it.
    assert reopened.get_commit(blocks[0].hash) == blocks[1].last_commit
    head_commit = reopened.get_commit(blocks[-1].hash)
    assert head_commit.block_hash == blocks[-1].hash and len(head_commit.signatures) == 4
    statuses = [r.status for b in blocks for r in reopened.get_receipts(b.hash)]
    assert 1 in statuses


def test_proofs_at_every_height(fresh_chain, blocks):
    chain = fresh_chain
    for block in blocks:
        chain.import_block(block)
    senders = sorted({address for address, _ in chain.state.iter_accounts()})[:12]
    for number in range(0, chain.height + 1):
        root = chain.get_header(number).state_root
        for address in senders:
            proof = chain.get_proof(address, [(0).to_bytes(32, "big")], number=number)
            verify_account_proof(root, proof)
            view = State.at(chain.db, root)
            assert (proof.nonce, proof.balance) == (view.get_nonce(address), view.get_balance(address))


def tampered(block: Block, **fields) -> Block:
    return Block(block.header.copy(**fields), block.transactions, block.last_commit)


def assert_nothing_written(chain: Chain, db: LevelDB, action, error_type):
    head, keys = chain.head, count_keys(db)
    with pytest.raises(error_type) as excinfo:
        action()
    assert chain.head == head and Chain.open(db, make_work_rules).head == head
    assert count_keys(db) == keys
    return excinfo.value


def test_bad_blocks_are_rejected_with_typed_errors_and_write_nothing(db, fresh_chain, blocks):
    chain = fresh_chain
    chain.import_block(blocks[0])
    chain.import_block(blocks[1])
    good = blocks[2]

    error = assert_nothing_written(chain, db, lambda: chain.import_block(tampered(good, state_root=b"\x01" * 32)),
                                   HeaderMismatch)
    assert error.field == "state_root" and error.got == b"\x01" * 32 and error.expected == good.header.state_root
    error = assert_nothing_written(chain, db, lambda: chain.import_block(tampered(good, receipts_root=b"\x02" * 32)),
                                   HeaderMismatch)
    assert error.field == "receipts_root"
    error = assert_nothing_written(chain, db, lambda: chain.import_block(tampered(good, parent_hash=b"\x03" * 32)),
                                   InvalidHeader)
    assert error.field == "parent_hash"
    assert_nothing_written(chain, db, lambda: chain.import_block(blocks[3]), InvalidHeader)

    # A transaction whose signature was altered (and roots recomputed so only the signature is wrong): s above
    # the curve order, so no key signs it (flipping a byte of s may give another sender's valid signature).
    fields = rlp.decode(good.transactions[0][1:])
    raw = good.transactions[0][:1] + rlp.encode(fields[:-1] + [b"\xff" * 32])
    from chain.blocks import compute_transactions_root
    txs = [raw] + list(good.transactions[1:])
    bad_tx_block = Block(good.header.copy(transactions_root=compute_transactions_root(txs)), txs, good.last_commit)
    error = assert_nothing_written(chain, db, lambda: chain.import_block(bad_tx_block), InvalidBlockTransaction)
    assert error.index == 0

    # A commit for the parent signed by keys outside the validator set.
    outsiders = [keccak(b"outsider %d" % i) for i in range(4)]
    forged = sign_commit(chain.head, outsiders, chain.genesis.chain_id)
    assert_nothing_written(chain, db, lambda: chain.import_block(Block(good.header, good.transactions, forged)),
                           InvalidParentCommit)

    # After all that, the real block still imports: no bad writes survived in memory either.
    chain.import_block(good)
    assert chain.head == good.header
    with pytest.raises(KnownBlock):
        chain.import_block(good)


def test_state_mismatch_leaves_state_usable(fresh_chain, blocks):
    chain = fresh_chain
    chain.import_block(blocks[0])
    with pytest.raises(HeaderMismatch):
        chain.import_block(tampered(blocks[1], state_root=b"\x09" * 32))
    for block in blocks[1:]:
        chain.import_block(block)
    assert chain.head == blocks[-1].header
    assert chain.state.root == blocks[-1].header.state_root


def test_memory_and_leveldb_agree(blocks):
    genesis, _ = make_workload_genesis()
    memory = Chain.from_genesis(MemoryDB(), genesis, make_work_rules)
    for block in blocks:
        memory.import_block(block)
    assert memory.head == blocks[-1].header
    assert rlp.encode(memory.head_block) == recorded_blocks()[-1]


def test_pruning_keeps_recent_roots_only(db, fresh_chain, blocks):
    from chain.state import UnknownStateRoot

    chain = fresh_chain
    for block in blocks[:4]:
        chain.import_block(block)
    address = blocks[0].header.proposer
    old_proof = chain.get_proof(address, number=1)
    kept, deleted = chain.prune(keep_last=2)
    assert kept > 0 and deleted > 0
    for number in (3, 4):
        verify_account_proof(chain.get_header(number).state_root, chain.get_proof(address, number=number))
    for number in (0, 1, 2):
        with pytest.raises(UnknownStateRoot):
            chain.get_proof(address, number=number)
    assert old_proof.account_proof  # it was provable before pruning
    # Import goes on from the kept head; pruning again with nothing to drop deletes nothing.
    for block in blocks[4:]:
        chain.import_block(block)
    assert Chain.open(db, make_work_rules).head == blocks[-1].header
    assert chain.prune(keep_last=len(blocks) + 1)[1] == 0


def test_validator_set_changes_in_blocks_that_create_accounts(tmp_path):
    # An epoch boundary whose block also creates accounts: the announced set is read
    # from that block's post-state, so the new accounts' preimages must be visible
    # then, and the chain must replay from its own export.
    db = LevelDB(tmp_path / "chaindata")
    chain = build_workload_chain(db, blocks=9, txs_per_block=TXS, accounts=1_000, epoch_length=3)
    headers = [chain.get_header(n) for n in range(1, 10)]
    changes = [h.number for h in headers if h.next_validators_hash != h.validators_hash]
    assert changes, "the workload must change the validator set at an epoch boundary"
    for number in changes:
        assert chain.get_validator_set(chain.get_header(number).next_validators_hash).members
    db.close()
