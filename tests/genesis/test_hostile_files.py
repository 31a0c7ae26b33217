"""Genesis and key files are outside input too: bounded before parsing, refused with a typed error saying why.

Run with Python's recursion limit at 100,000 (as py_ecc leaves it), where a
deep file would crash the bare C parser.
"""
from __future__ import annotations

import sys

import pytest

from genesis.exceptions import GenesisError
from genesis.format import MAX_GENESIS_FILE, load_genesis
from genesis.keys import read_keystore
from node.config import read_validator_key
from node.exceptions import KeyFileError
from primitives.limits import BoundedInputError


@pytest.fixture(autouse=True)
def raised_recursion_limit():
    found = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    yield
    sys.setrecursionlimit(found)


@pytest.mark.parametrize("content", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 300_000, b"\xff\xfe{}",
                                     b'{"chain_id": 1, "x": ' + b"9" * 10_000 + b"}"],
                         ids=["nested arrays", "nested objects", "not utf-8", "huge integer"])
def test_a_hostile_genesis_file_is_a_genesis_error(tmp_path, content):
    path = tmp_path / "genesis.json"
    path.write_bytes(content)
    with pytest.raises(GenesisError) as caught:
        load_genesis(path)
    assert len(str(caught.value)) < 300


def test_an_oversized_genesis_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "genesis.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_GENESIS_FILE + 1)  # sparse: costs no disk
    with pytest.raises(GenesisError, match="too large"):
        load_genesis(path)


def test_a_hostile_keystore_is_refused_before_decryption(tmp_path):
    path = tmp_path / "keystore.json"
    password = tmp_path / "password"
    password.write_text("secret\n")
    for content in (b"{" + b'"a":{' * 50_000, b"{" + b" " * 100_000 + b"}", b'{"crypto":' * 20 + b"1" + b"}" * 20):
        path.write_bytes(content)
        with pytest.raises(BoundedInputError):  # a ValueError too: callers treating it as "not this key" still do
            read_keystore(path, "secret")
        with pytest.raises(KeyFileError) as caught:
            read_validator_key(path, password)
        assert "key" in str(caught.value) and len(str(caught.value)) < 300
