"""Hypothesis fuzzing of the node's decoders of outside input not fuzzed elsewhere (issue 14): consensus
gossip verdicts, light-client account proofs, keystore files, the TOML config file and `magicoin verify`'s
claims file. Each must answer with its own typed error (or a verdict), never anything else.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import click
import pytest
import rlp
from eth_account import Account
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from consensus.votes import make_proposal, make_vote, sign_proposal, sign_vote
from genesis.keys import decode_keystore
from node.cli_account import read_keystore_address
from node.cli_inference import MAX_CLAIMS_DEPTH, read_claims
from node.config import (
    MAX_CONFIG_DEPTH,
    build_config,
    compute_toml_shape,
    load_toml,
    read_validator_key,
)
from node.consensus_wire import (
    compute_proposal_verdict,
    compute_vote_verdict,
    decode_optional_block,
    decode_optional_commit,
    encode_proposal_message,
    iter_pulled_messages,
)
from node.exceptions import ConfigError
from node.light.exceptions import VerificationFailed
from node.light.proofs import RECOGNITION_SLOT, verify_account_proof
from p2p import ValidationResult
from primitives.limits import BoundedInputError
from tests.chain.test_fuzz_decoders import make_block

CHAIN_ID = 4747
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
rlp_values = st.recursive(st.binary(max_size=40), lambda inner: st.lists(inner, max_size=6), max_leaves=30)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                        max_size=4), max_leaves=20)
flips = st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=4)


def corrupt(data: bytes, changes, cut: int) -> bytes:
    corrupted = bytearray(data)
    for index, value in changes:
        if index < len(corrupted):
            corrupted[index] = value
    return bytes(corrupted[: max(0, len(corrupted) - cut)])


# --- consensus gossip --------------------------------------------------------------------------------------

KEY = keccak(b"fuzz validator")
VOTE = rlp.encode(sign_vote(make_vote(1, 5, 0, keccak(b"b"), os.urandom(20)), KEY, CHAIN_ID))
BLOCK = make_block()
PROPOSAL = encode_proposal_message(sign_proposal(make_proposal(5, 0, 0, BLOCK.hash, os.urandom(20)), KEY, CHAIN_ID),
                                   BLOCK)


@FUZZ
@given(st.binary(max_size=400) | rlp_values.map(rlp.encode)
       | st.builds(corrupt, st.sampled_from([VOTE, PROPOSAL]), flips, st.integers(0, 40)))
def test_gossip_verdicts_on_junk_are_verdicts(payload):
    assert compute_vote_verdict(payload, CHAIN_ID, 3, 4) in ValidationResult
    assert compute_proposal_verdict(payload, CHAIN_ID, 3, 4) in ValidationResult
    for decode in (decode_optional_block, decode_optional_commit):  # get_candidate / get_commit answers
        try:
            decode(payload)
        except rlp.exceptions.RLPException:
            pass


@FUZZ
@given(st.lists(json_values | st.binary(max_size=20), max_size=8))
def test_pulled_messages_keep_only_well_formed_items(messages):
    for kind, payload in iter_pulled_messages(messages):
        assert kind in (1, 2) and isinstance(payload, bytes)


# --- light-client account proofs ---------------------------------------------------------------------------

def make_account_proof() -> tuple[bytes, bytes, dict]:
    """A real EIP-1186 answer for one account with recognition 77, and the state root it proves against."""
    address = os.urandom(20)
    storage = HexaryTrie({})
    storage[keccak(RECOGNITION_SLOT)] = rlp.encode(77)
    world = HexaryTrie({})
    for _ in range(20):  # neighbours, so the proof has branch nodes
        world[keccak(os.urandom(20))] = rlp.encode([1, 2, storage.root_hash, keccak(b"")])
    world[keccak(address)] = rlp.encode([3, 10**18, storage.root_hash, keccak(b"")])

    def encode_nodes(proof) -> list[str]:
        return ["0x" + rlp.encode(node).hex() for node in proof]

    answer = {
        "address": "0x" + address.hex(), "nonce": "0x3", "balance": hex(10**18),
        "storageHash": "0x" + storage.root_hash.hex(), "codeHash": "0x" + keccak(b"").hex(),
        "accountProof": encode_nodes(world.get_proof(keccak(address))),
        "storageProof": [{"key": "0x0", "value": "0x4d", "proof": encode_nodes(storage.get_proof(
            keccak(RECOGNITION_SLOT)))}],
    }
    return address, world.root_hash, answer


ADDRESS, STATE_ROOT, PROOF = make_account_proof()


def test_the_real_proof_verifies():
    assert verify_account_proof(ADDRESS, 9, STATE_ROOT, PROOF).recognition == 77


def mutate_proof(field: str, index: int, changes, cut: int, replacement) -> dict:
    proof = json.loads(json.dumps(PROOF))
    if field == "accountProof" and proof["accountProof"]:
        nodes = proof["accountProof"]
        position = index % len(nodes)
        nodes[position] = "0x" + corrupt(bytes.fromhex(nodes[position][2:]), changes, cut).hex()
    elif field == "storageProof":
        nodes = proof["storageProof"][0]["proof"]
        position = index % len(nodes)
        nodes[position] = "0x" + corrupt(bytes.fromhex(nodes[position][2:]), changes, cut).hex()
    else:
        proof[field] = replacement
    return proof


@FUZZ
@given(st.sampled_from(["accountProof", "storageProof", "nonce", "balance", "storageHash", "address",
                        "codeHash"]), st.integers(0, 10), flips, st.integers(0, 20), json_values)
def test_tampered_proofs_raise_only_verification_errors(field, index, changes, cut, replacement):
    proof = mutate_proof(field, index, changes, cut, replacement)
    try:
        account = verify_account_proof(ADDRESS, 9, STATE_ROOT, proof)
    except VerificationFailed:
        return
    assert (account.nonce, account.balance, account.recognition) == (3, 10**18, 77)  # only harmless edits pass


@FUZZ
@given(json_values)
def test_junk_proof_answers_raise_only_verification_errors(answer):
    with pytest.raises(VerificationFailed):
        verify_account_proof(ADDRESS, 9, STATE_ROOT, answer)


# --- keystores ---------------------------------------------------------------------------------------------

KEYSTORE = json.dumps(Account.encrypt(KEY, "pw", iterations=2)).encode()


@FUZZ
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode())
       | st.builds(corrupt, st.just(KEYSTORE), flips, st.integers(0, 60)))
def test_keystore_files_raise_only_typed_errors(tmp_path, data):
    try:
        decode_keystore(data)
    except BoundedInputError:
        pass
    path = tmp_path / "keystore.json"
    path.write_bytes(data)
    password = tmp_path / "password"
    password.write_text("pw\n")
    address = read_keystore_address(path)  # a directory listing skips what is not a keystore
    assert address is None or isinstance(address, bytes)
    try:
        key = read_validator_key(path, password)
    except ConfigError:  # KeyFileError is a ConfigError
        return
    assert len(key) == 32  # the keystore's key, or a raw hex key


# --- the TOML config file ----------------------------------------------------------------------------------

toml_alphabet = st.sampled_from(list('[]{}=.,"\'#\n abc123-_\\') + ["http.port", "bootnodes", "[p2p]", "true",
                                                                 '"""', "'''", "1.5", "-1", "inf"])
toml_texts = st.lists(toml_alphabet, max_size=60).map("".join)


@FUZZ
@given(toml_texts | st.text(max_size=200))
def test_toml_config_files_raise_only_config_errors(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass") if "\ud800" not in text else None
    if not path.exists():
        return
    try:
        build_config(path, {})
    except ConfigError:
        pass


def test_deep_and_dotted_toml_is_refused_before_parsing(tmp_path):
    for text in ("x = " + "[" * 100_000 + "]" * 100_000, "x = " + "{a = " * 20_000 + "1" + "}" * 20_000,
                 "a" + ".a" * 30_000 + " = 1", "[" + "a." * 20_000 + "a]\n", "x = " + "[" * 9 + "]" * 9):
        path = tmp_path / "deep.toml"
        path.write_text(text)
        with pytest.raises(ConfigError) as caught:
            load_toml(path)
        assert len(str(caught.value)) < 400
    assert compute_toml_shape('x = "[[[[[[[[[[[[" # [[[[[[[[[[[[\ny = \'{{{{{{{{{{\'') == (0, 0)
    path = tmp_path / "fine.toml"
    path.write_text("[http]\nport = 8546\n" + "x" * 10 + ' = "' + "[" * (MAX_CONFIG_DEPTH + 5) + '"\n')
    with pytest.raises(ConfigError, match="unknown configuration keys"):
        build_config(path, {})  # parsed: brackets inside a string are not nesting


def test_huge_config_files_are_refused_by_size(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_bytes(b"# " + b"x" * (1 << 20))
    with pytest.raises(ConfigError, match="too large"):
        load_toml(path)


@pytest.mark.parametrize("text, key", [
    ("[http]\nport = 70000", "http.port"), ('"worker.threads" = 1000000', "worker.threads"),
    ('"block-interval" = inf', "block-interval"), ('"block-interval" = 86400', "block-interval"),
    ('"consensus.timeouts-ms" = [1, 2, 3, 99999999]', "consensus.timeouts-ms"),
    ("bootnodes = [" + ",".join(['"x"'] * 300) + "]", "bootnodes"), ('"log.level" = "loud"', "log.level"),
    ("[http]\nport = true", "http.port"), ("[http]\nport = 1.5", "http.port"),
    ("[http]\nport = [1]", "http.port"), ('"metrics.addr" = "' + "a" * 5000 + '"', "metrics.addr"),
])
def test_out_of_range_values_name_their_key(tmp_path, text, key):
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        build_config(path, {})
    assert key in str(caught.value), str(caught.value)
    assert len(str(caught.value)) < 600


# --- magicoin verify's claims file -------------------------------------------------------------------------

@FUZZ
@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_claims_files_parse_or_raise_a_click_error(text):
    try:
        read_claims(io.StringIO(text))
    except click.ClickException as error:
        assert "Traceback" not in error.message


def test_deep_or_huge_claims_files_are_refused_cleanly():
    for text in ("[" * 100_000 + "]" * 100_000, "[" * (MAX_CLAIMS_DEPTH + 1) + "]" * (MAX_CLAIMS_DEPTH + 1),
                 '"' + "a" * (17 << 20) + '"'):
        with pytest.raises(click.ClickException):
            read_claims(io.StringIO(text))


def test_the_cli_refuses_a_deep_claims_file_without_a_trace(tmp_path):
    from click.testing import CliRunner

    from node.cli_inference import verify_command

    path = Path(tmp_path) / "claims.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = CliRunner().invoke(verify_command, [str(path)])
    assert result.exit_code == 1 and "nested too deeply" in result.output, result.output
    assert "Traceback" not in result.output
