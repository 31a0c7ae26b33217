"""EIP-1186 proofs from chain.state, checked by verifiers that share no code with it.

Two verifiers: py-trie's `HexaryTrie.get_from_proof`, and `walk_proof` below, a
direct reading of the Yellow Paper's MPT (hex-prefix paths, embedded nodes under
32 bytes, branch/extension/leaf), written from the spec for this test.
"""
from __future__ import annotations

import random

import pytest
import rlp
from eth.rlp.accounts import Account
from eth_utils import keccak, to_checksum_address
from trie import HexaryTrie
from trie.exceptions import BadTrieProof

from chain.db import LevelDB
from chain.state import BLANK_ROOT, EMPTY_CODE_HASH, MerkleTrie, State


class InvalidProof(Exception):
    pass


def walk_proof(root: bytes, key: bytes, proof: tuple[bytes, ...]) -> bytes | None:
    """The value proven at key (None if the proof shows absence); raises InvalidProof."""
    nodes = {keccak(encoded): encoded for encoded in proof}
    if root == keccak(rlp.encode(b"")):
        return None
    path = "".join(f"{byte:02x}" for byte in key)

    def load(ref):
        if isinstance(ref, list):  # embedded node
            return ref
        if ref == b"":
            return None
        if ref not in nodes:
            raise InvalidProof(f"node {ref.hex()} not in proof")
        return rlp.decode(nodes[ref])

    node = load(root)
    while node is not None:
        if len(node) == 17:
            if not path:
                return node[16] or None
            node, path = load(node[int(path[0], 16)]), path[1:]
        elif len(node) == 2:
            encoded_path = node[0].hex()
            flag = int(encoded_path[0], 16)
            node_path = encoded_path[1:] if flag & 1 else encoded_path[2:]
            if flag & 2:  # leaf
                return node[1] if node_path == path else None
            if not path.startswith(node_path):
                return None
            node, path = load(node[1]), path[len(node_path):]
        else:
            raise InvalidProof(f"malformed node with {len(node)} items")
    return None


def verify_account_proof(root: bytes, proof) -> None:
    """What a light client does with an eth_getProof answer."""
    key = keccak(proof.address)
    proven = walk_proof(root, key, proof.account_proof)
    via_py_trie = HexaryTrie.get_from_proof(root, key, [rlp.decode(n) for n in proof.account_proof])
    assert (proven or b"") == via_py_trie
    if proven is None:
        assert (proof.nonce, proof.balance) == (0, 0)
        assert proof.storage_hash == BLANK_ROOT and proof.code_hash == EMPTY_CODE_HASH
    else:
        account = rlp.decode(proven, sedes=Account)
        assert (account.nonce, account.balance) == (proof.nonce, proof.balance)
        assert account.storage_root == proof.storage_hash
        assert account.code_hash == proof.code_hash == EMPTY_CODE_HASH
    for storage in proof.storage_proof:
        assert len(storage.key) == 32
        slot_key = keccak(storage.key)
        value = walk_proof(proof.storage_hash, slot_key, storage.proof)
        via_py_trie = HexaryTrie.get_from_proof(proof.storage_hash, slot_key, [rlp.decode(n) for n in storage.proof])
        assert (value or b"") == via_py_trie
        assert storage.value == (int.from_bytes(rlp.decode(value), "big") if value else 0)


@pytest.fixture
def chain_state(tmp_path):
    """A state with 400 accounts and a few busy storage tries, committed over 3 'blocks'."""
    rng = random.Random(5)
    db = LevelDB(tmp_path / "db")
    state = State(db)
    addresses = [rng.randbytes(20) for _ in range(400)]
    history = []
    for block in range(3):
        for address in addresses[: 150 * (block + 1)]:
            state.set_nonce(address, state.get_nonce(address) + 1)
            state.set_balance(address, rng.randrange(10**21))
            state.set_storage(address, (0).to_bytes(32, "big"), (block + 1).to_bytes(1, "big"))
        for address in addresses[:3]:
            for slot in range(60):
                value = rng.choice([rng.randbytes(1), rng.randbytes(45)])
                state.set_storage(address, slot.to_bytes(32, "big"), value)
        root = state.make_state_root()
        history.append((root, {a: (state.get_nonce(a), state.get_balance(a)) for a in addresses}))
    yield db, state, addresses, history
    db.close()


def test_account_and_storage_proofs_verify(chain_state):
    db, state, addresses, history = chain_state
    root = state.root
    slots = [i.to_bytes(32, "big") for i in (0, 1, 7, 59, 60, 1000)]  # 60 and 1000 are absent
    for address in addresses[:5] + addresses[200:205]:
        proof = state.get_proof(address, slots)
        verify_account_proof(root, proof)
        assert proof.nonce == state.get_nonce(address)
        assert proof.storage_proof[0].value == int.from_bytes(state.get_storage(address, slots[0]), "big")
    busy = state.get_proof(addresses[0], slots)
    assert busy.storage_proof[4].value == 0 and busy.storage_proof[4].proof  # absence, proven by a path


def test_absent_account_proof(chain_state):
    db, state, addresses, history = chain_state
    missing = b"\xee" * 20
    proof = state.get_proof(missing, [(0).to_bytes(32, "big")])
    assert walk_proof(state.root, keccak(missing), proof.account_proof) is None
    verify_account_proof(state.root, proof)
    assert proof.storage_proof[0].value == 0 and proof.storage_proof[0].proof == ()


def test_proofs_against_old_roots(chain_state):
    db, state, addresses, history = chain_state
    for root, balances in history:
        old = State.at(db, root)
        for address in addresses[:2] + addresses[140:160] + addresses[390:]:
            proof = old.get_proof(address, [(0).to_bytes(32, "big")])
            verify_account_proof(root, proof)
            assert (proof.nonce, proof.balance) == balances[address]


def test_tampered_proof_is_rejected(chain_state):
    db, state, addresses, history = chain_state
    proof = state.get_proof(addresses[10])
    nodes = list(proof.account_proof)
    nodes[-1] = nodes[-1][:-1] + bytes([nodes[-1][-1] ^ 1])
    with pytest.raises(InvalidProof):
        walk_proof(state.root, keccak(addresses[10]), tuple(nodes))
    with pytest.raises(BadTrieProof):
        HexaryTrie.get_from_proof(state.root, keccak(addresses[10]), [rlp.decode(n) for n in nodes])
    # A proof for one root does not verify against another.
    old_root = history[0][0]
    with pytest.raises(InvalidProof):
        walk_proof(old_root, keccak(addresses[10]), proof.account_proof)


def test_proof_shape_is_eth_get_proof_shape(chain_state):
    """The fields map one to one onto the eth_getProof JSON object that web3.py returns."""
    db, state, addresses, history = chain_state
    proof = state.get_proof(addresses[1], [(0).to_bytes(32, "big")])
    as_json = {
        "address": to_checksum_address(proof.address),
        "accountProof": ["0x" + node.hex() for node in proof.account_proof],
        "balance": hex(proof.balance),
        "codeHash": "0x" + proof.code_hash.hex(),
        "nonce": hex(proof.nonce),
        "storageHash": "0x" + proof.storage_hash.hex(),
        "storageProof": [
            {"key": "0x" + s.key.hex(), "value": hex(s.value), "proof": ["0x" + n.hex() for n in s.proof]}
            for s in proof.storage_proof
        ],
    }
    assert as_json["codeHash"] == "0x" + keccak(b"").hex()
    assert bytes.fromhex(as_json["accountProof"][0][2:]) == proof.account_proof[0]
    assert keccak(proof.account_proof[0]) == state.root


def test_proofs_through_embedded_nodes():
    """Short keys and values make nodes under 32 bytes, which live inside their parent."""
    nodes: dict = {}
    trie = MerkleTrie(nodes.__getitem__, nodes)
    items = {bytes([i]): bytes([i + 1]) for i in range(0, 40, 3)} | {b"\x01\x02": b"x", b"\x01\x02\x03": b"y" * 40}
    root = trie.build(items.items())
    embedded = [n for n in map(rlp.decode, nodes.values()) if any(isinstance(c, list) for c in n)]
    assert embedded, "the fixture must exercise embedded nodes"
    for key in list(items) + [b"\x02", b"\x01\x02\x04", b"\xff"]:
        proof = trie.get_proof(root, key)
        assert walk_proof(root, key, proof) == items.get(key)
        assert HexaryTrie.get_from_proof(root, key, [rlp.decode(n) for n in proof]) == items.get(key, b"")
