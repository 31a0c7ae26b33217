"""chain.state.State against a reference: a dict, and roots recomputed from scratch by py-trie.

The reference shares no code with chain.state: accounts are encoded with py-evm's
`Account` sedes and every root is rebuilt by a fresh `trie.HexaryTrie`.
"""
from __future__ import annotations

import copy
import os
import random
import shutil
import tempfile

import pytest
import rlp
from eth.rlp.accounts import Account
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle, RuleBasedStateMachine, consumes, invariant, precondition, rule,
)
from trie import HexaryTrie

from chain.abc import StateAPI
from chain.db import LevelDB, MemoryDB
from primitives.trie import compute_list_trie_root
from chain.state import (
    BLANK_ROOT, EMPTY_CODE_HASH, MerkleTrie, ReadOnlyState, StaleSnapshot, State, UnknownStateRoot,
    compute_trie_root,
)

ADDRESSES = [bytes([i]) * 20 for i in range(1, 7)]
SLOTS = [i.to_bytes(32, "big") for i in range(4)] + [keccak(b"job")]
# Short values give embedded (< 32 byte) nodes, long ones hashed nodes: both paths matter.
VALUES = st.one_of(st.just(b""), st.binary(min_size=1, max_size=3), st.binary(min_size=30, max_size=70))


def reference_root(accounts: dict) -> bytes:
    world = HexaryTrie({})
    for address, (nonce, balance, storage) in accounts.items():
        storage_trie = HexaryTrie({})
        for slot, value in storage.items():
            if value:
                storage_trie[keccak(slot)] = rlp.encode(value)
        world[keccak(address)] = rlp.encode(Account(nonce, balance, storage_trie.root_hash, EMPTY_CODE_HASH))
    return world.root_hash


class StateMachine(RuleBasedStateMachine):
    """Random writes, snapshots, reverts, commits and reopenings, checked after every step."""

    tokens = Bundle("tokens")

    def __init__(self) -> None:
        super().__init__()
        self.path = tempfile.mkdtemp(prefix="state-sm-")
        self.db = LevelDB(self.path)
        self.state = State(self.db)
        self.model: dict[bytes, tuple[int, int, dict[bytes, bytes]]] = {}
        self.snapshots: dict[int, dict] = {}
        self.stale: list[int] = []
        self.kept_roots: list[tuple[bytes, dict]] = [(BLANK_ROOT, {})]

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def _touch(self, address: bytes) -> tuple[int, int, dict]:
        return self.model.setdefault(address, (0, 0, {}))

    @rule(address=st.sampled_from(ADDRESSES), nonce=st.integers(0, 2**64 - 1))
    def set_nonce(self, address, nonce):
        self.state.set_nonce(address, nonce)
        _, balance, storage = self._touch(address)
        self.model[address] = (nonce, balance, storage)

    @rule(address=st.sampled_from(ADDRESSES), balance=st.one_of(st.integers(0, 10), st.integers(0, 2**200)))
    def set_balance(self, address, balance):
        self.state.set_balance(address, balance)
        nonce, _, storage = self._touch(address)
        self.model[address] = (nonce, balance, storage)

    @rule(address=st.sampled_from(ADDRESSES), slot=st.sampled_from(SLOTS), value=VALUES)
    def set_storage(self, address, slot, value):
        self.state.set_storage(address, slot, value)
        nonce, balance, storage = self._touch(address)
        storage = dict(storage)
        if value:
            storage[slot] = value
        else:
            storage.pop(slot, None)
        self.model[address] = (nonce, balance, storage)

    @rule(target=tokens)
    def snapshot(self):
        token = self.state.snapshot()
        self.snapshots[token] = copy.deepcopy(self.model)
        return token

    @rule(token=consumes(tokens))
    def revert(self, token):
        if token in self.stale:
            with pytest.raises(StaleSnapshot):
                self.state.revert(token)
            return
        self.state.revert(token)
        self.model = copy.deepcopy(self.snapshots[token])
        # Reverting past a later snapshot invalidates it, as in any journal.
        for later in [t for t in self.snapshots if t >= token]:
            self.stale.append(later)
            del self.snapshots[later]

    @rule()
    def make_state_root(self):
        root = self.state.make_state_root()
        assert root == reference_root(self.model)
        assert self.state.root == root
        self.kept_roots.append((root, copy.deepcopy(self.model)))
        self.stale.extend(self.snapshots)
        self.snapshots.clear()

    @precondition(lambda self: len(self.kept_roots) > 1)
    @rule(data=st.data())
    def reopen_old_root(self, data):
        root, model = data.draw(st.sampled_from(self.kept_roots))
        view = State.at(self.db, root)
        assert dict(view.iter_accounts()) == {a: b for a, (_, b, _) in model.items()}
        for address in ADDRESSES:
            nonce, balance, storage = model.get(address, (0, 0, {}))
            assert view.account_exists(address) == (address in model)
            assert (view.get_nonce(address), view.get_balance(address)) == (nonce, balance)
            for slot in SLOTS:
                assert view.get_storage(address, slot) == storage.get(slot, b"")
        with pytest.raises(ReadOnlyState):
            view.set_nonce(ADDRESSES[0], 1)

    @rule()
    def reopen_current(self):
        """Drop every cache: a new State on the same db must see the committed state plus nothing."""
        self.state.make_state_root()
        self.stale.extend(self.snapshots)
        self.snapshots.clear()
        self.kept_roots.append((self.state.root, copy.deepcopy(self.model)))
        self.state = State(self.db, self.state.root)

    @invariant()
    def reads_match_model(self):
        for address in ADDRESSES:
            nonce, balance, storage = self.model.get(address, (0, 0, {}))
            assert self.state.account_exists(address) == (address in self.model)
            assert self.state.get_nonce(address) == nonce
            assert self.state.get_balance(address) == balance
            for slot in SLOTS:
                assert self.state.get_storage(address, slot) == storage.get(slot, b"")


StateMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestState = StateMachine.TestCase


def test_state_is_a_state_api():
    assert isinstance(State(MemoryDB()), StateAPI)


def test_unknown_root_is_a_typed_error():
    with pytest.raises(UnknownStateRoot):
        State.at(MemoryDB(), keccak(b"nothing"))


def test_many_accounts_and_slots_match_py_trie(tmp_path):
    """Bigger tries than the state machine reaches: several levels of branches and extensions."""
    rng = random.Random(7)
    db = LevelDB(tmp_path / "db")
    state = State(db)
    model: dict = {}
    for block in range(6):
        for _ in range(300):
            address = rng.randbytes(20) if rng.random() < 0.5 or not model else rng.choice(list(model))
            nonce, balance, storage = model.get(address, (0, 0, {}))
            nonce, balance = nonce + 1, rng.randrange(10**20)
            state.set_nonce(address, nonce)
            state.set_balance(address, balance)
            storage = dict(storage)
            for _ in range(rng.randrange(4)):
                slot = rng.randrange(40).to_bytes(32, "big")
                value = rng.choice([b"", rng.randbytes(1), rng.randbytes(40)])
                state.set_storage(address, slot, value)
                if value:
                    storage[slot] = value
                else:
                    storage.pop(slot, None)
            model[address] = (nonce, balance, storage)
        assert state.make_state_root() == reference_root(model)
    reopened = State(db, state.root)
    assert dict(reopened.iter_accounts()) == {a: b for a, (_, b, _) in model.items()}
    db.close()


def test_trie_helpers_match_py_trie():
    rng = random.Random(3)
    for _ in range(50):
        items = {rng.randbytes(rng.randrange(1, 5)): rng.randbytes(rng.randrange(1, 50)) for _ in range(rng.randrange(30))}
        reference = HexaryTrie({})
        for key, value in items.items():
            reference[key] = value
        assert compute_trie_root(items.items()) == reference.root_hash
    values = [os.urandom(n) for n in range(0, 300, 3)][1:]
    ordered = HexaryTrie({})
    for index, value in enumerate(values):
        ordered[rlp.encode(index)] = value
    assert compute_list_trie_root(values) == ordered.root_hash
    assert compute_list_trie_root([]) == BLANK_ROOT


def test_batch_update_matches_incremental_updates():
    """MerkleTrie.update with deletes and overwrites, block after block, against HexaryTrie."""
    rng = random.Random(11)
    nodes: dict = {}
    trie = MerkleTrie(nodes.__getitem__, nodes)
    reference = HexaryTrie({})
    root = BLANK_ROOT
    keys = [keccak(bytes([i])) for i in range(200)] + [bytes([i]) for i in range(40)]
    for _ in range(30):
        changes = {}
        for key in rng.sample(keys, rng.randrange(1, 60)):
            changes[key] = None if rng.random() < 0.4 else rng.randbytes(rng.randrange(1, 40))
        root = trie.update(root, changes)
        for key, value in changes.items():
            if value is None:
                reference.delete(key)
            else:
                reference[key] = value
        assert root == reference.root_hash
        assert dict(trie.iterate(root)) == {k: reference[k] for k in keys if reference.exists(k)}


node_items = st.recursive(
    st.one_of(st.just(b""), st.binary(min_size=32, max_size=32), st.binary(max_size=80)),
    lambda children: st.lists(children, max_size=17), max_leaves=60)


@settings(max_examples=300, deadline=None)
@given(node_items)
def test_encode_node_is_rlp(item):
    """The trie's node encoder (blank and 32-byte children inlined) gives rlp's bytes for any nested list."""
    from primitives.encoding import encode_node

    assert encode_node(item) == rlp.encode(item)
