"""genesis: stable hash, JSON round trip, typed errors, and `magicoin genesis init` keystores opened by eth-account."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from eth_account import Account
from eth_utils import keccak, to_canonical_address

from genesis.exceptions import GenesisError
from economy import EconomyParams
from genesis import (
    DEFAULT_PARAMS,
    DEVNET_CHAIN_ID,
    DEVNET_GENESIS_PATH,
    Genesis,
    Params,
    genesis_from_dict,
    genesis_to_dict,
    load_devnet_genesis,
    load_genesis,
    make_genesis,
    save_genesis,
)
from genesis.keys import devnet_private_key, get_address, read_keystore
from economy.audit import AuditPolicy
from node.cli import cli

# Pinned: if this changes, every devnet node's genesis changes with it.
DEVNET_GENESIS_HASH = "d3e41e5bec2676061fe3454a2ddd4698d766266ed452e778c0b7826cc4f6bfb0"


def test_devnet_genesis_hash_is_stable():
    genesis = load_devnet_genesis()
    assert genesis.genesis_hash.hex() == DEVNET_GENESIS_HASH
    assert load_genesis(DEVNET_GENESIS_PATH).genesis_hash == genesis.genesis_hash


def test_devnet_validators_are_the_documented_insecure_keys():
    genesis = load_devnet_genesis()
    assert devnet_private_key(0) == keccak(b"magicoin-devnet-validator-0")
    assert [v.address for v in genesis.validators] == [
        get_address(devnet_private_key(i)) for i in range(4)
    ]
    assert genesis.chain_id == DEVNET_CHAIN_ID and genesis.is_fork_active("recognition", 0)
    assert genesis.supply == sum(v.balance for v in genesis.validators) + genesis.pool_balance


def test_json_round_trip_preserves_the_hash(tmp_path):
    genesis = make_genesis(7, [b"\x01" * 20, b"\x02" * 20], forks={"recognition": 0, "later": 50})
    save_genesis(genesis, tmp_path / "g.json")
    loaded = load_genesis(tmp_path / "g.json")
    assert loaded == genesis and loaded.genesis_hash == genesis.genesis_hash
    assert loaded.get_fork_height("later") == 50 and not loaded.is_fork_active("later", 49)
    # Amounts are strings in JSON so no reader rounds them through a double.
    assert json.loads((tmp_path / "g.json").read_text())["validators"][0]["balance"] == str(
        100 * 10**18
    )


def test_code_defaults_are_the_genesis_defaults():
    # The node runs on the genesis values; the code defaults serve tests and
    # simulations, so they must not drift from what a default chain runs.
    assert AuditPolicy.from_genesis(DEFAULT_PARAMS) == AuditPolicy()
    assert EconomyParams.from_genesis(DEFAULT_PARAMS) == EconomyParams()
    assert load_devnet_genesis().params == DEFAULT_PARAMS
    # Every economy constant is a genesis param (only the overrides hook may add others).
    assert set(EconomyParams._fields) <= set(Params._meta.field_names)


def test_audit_and_economy_params_round_trip_through_json(tmp_path):
    params = DEFAULT_PARAMS.copy(
        audit_base_rate_ppm=1_000_000, audit_probation_jobs=0, audit_caught_window_jobs=7,
        audit_failure_rate_step_ppm=1, audit_committee_size=2, audit_escalation_committee_size=5,
        acceptance_threshold_ppm=900_000, initial_quality_ppm=1, initial_reliability_ppm=2, average_divisor=3,
        attestation_window_blocks=4, max_assignment_attempts=5, job_target_seconds=6, wei_per_unit=10**18,
        attester_share_ppm=7, annotation_units=8, annotation_weight_floor=10**20,
        recent_rewards_half_life_blocks=9,
    )
    genesis = make_genesis(7, [b"\x01" * 20], params=params)
    save_genesis(genesis, tmp_path / "g.json")
    loaded = load_genesis(tmp_path / "g.json")
    assert loaded.params == params and loaded.genesis_hash == genesis.genesis_hash
    written = json.loads((tmp_path / "g.json").read_text())["params"]
    assert set(written) == set(Params._meta.field_names)
    # Wei amounts are strings, like the other amounts; counts and rates are numbers.
    assert written["annotation_weight_floor"] == str(10**20) and written["wei_per_unit"] == str(10**18)
    assert written["audit_base_rate_ppm"] == 1_000_000
    policy = AuditPolicy.from_genesis(loaded.params)
    assert policy == AuditPolicy(1_000_000, 0, 7, 1, 2, 5, 900_000)
    assert EconomyParams.from_genesis(loaded.params).annotation_weight_floor == 10**20


@pytest.mark.parametrize("name", Params._meta.field_names)
def test_a_missing_consensus_param_is_an_error_not_a_code_default(name):
    data = genesis_to_dict(load_devnet_genesis())
    del data["params"][name]
    with pytest.raises(GenesisError) as info:
        genesis_from_dict(data)
    assert "missing" in str(info.value) and name in str(info.value)
    assert info.value.expected == name


def test_every_field_is_in_the_hash():
    genesis = load_devnet_genesis()
    variants = [
        genesis.copy(chain_id=genesis.chain_id + 1),
        genesis.copy(params=DEFAULT_PARAMS.copy(epoch_length=99)),
        genesis.copy(params=DEFAULT_PARAMS.copy(audit_base_rate_ppm=459_999)),
        genesis.copy(params=DEFAULT_PARAMS.copy(wei_per_unit=10**9 + 1)),
        genesis.copy(pool_balance=genesis.pool_balance + 1),
        genesis.copy(forks=[]),
        genesis.copy(validators=genesis.validators[:3]),
    ]
    hashes = {v.genesis_hash for v in variants} | {genesis.genesis_hash}
    assert len(hashes) == len(variants) + 1


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.pop("chain_id"), "missing"),
        (lambda d: d.update(chain_id=0), "chain_id"),
        (lambda d: d.update(chain_id="x"), "integer"),
        (lambda d: d["params"].update(epoch_length=0), "epoch_length"),
        (lambda d: d["params"].update(surprise=1), "unknown params"),
        (lambda d: d["params"].update(pool_drip_ppm=2_000_000), "ppm"),
        (lambda d: d["params"].update(audit_base_rate_ppm=1_000_001), "audit_base_rate_ppm"),
        (lambda d: d["params"].update(acceptance_threshold_ppm=2_000_000), "acceptance_threshold_ppm"),
        (lambda d: d["params"].update(attester_share_ppm=1_000_001), "attester_share_ppm"),
        (lambda d: d["params"].update(average_divisor=0), "average_divisor"),
        (lambda d: d["params"].update(wei_per_unit="0"), "wei_per_unit"),
        (lambda d: d["params"].update(audit_committee_size=0), "audit_committee_size"),
        (lambda d: d["params"].update(audit_committee_size=4), "audit_escalation_committee_size"),
        (lambda d: d["params"].update(recent_rewards_half_life_blocks=0), "recent_rewards_half_life_blocks"),
        (lambda d: d["params"].update(audit_probation_jobs=-1), "negative"),
        (lambda d: d.update(validators=[]), "at least one validator"),
        (lambda d: d["validators"].append(dict(d["validators"][0])), "duplicate"),
        (lambda d: d["validators"][0].update(address="0x1234"), "address"),
        (lambda d: d["validators"][0].update(recognition="0"), "threshold"),
        (lambda d: d["validators"][0].update(balance=-1), "negative"),
    ],
)
def test_bad_genesis_raises_typed_errors(mutate, message):
    data = genesis_to_dict(load_devnet_genesis())
    mutate(data)
    with pytest.raises(GenesisError) as info:
        genesis_from_dict(data)
    assert message in str(info.value)


def test_unreadable_files(tmp_path):
    with pytest.raises(GenesisError):
        load_genesis(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GenesisError):
        load_genesis(tmp_path / "bad.json")


def test_genesis_init_writes_keystores_eth_account_opens(tmp_path):
    password_file = tmp_path / "password"
    password_file.write_text("correct horse\n")
    out = tmp_path / "net"
    result = CliRunner().invoke(
        cli,
        [
            "genesis",
            "init",
            "--validators",
            "2",
            "--out",
            str(out),
            "--password-file",
            str(password_file),
            "--timestamp-ms",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    genesis = load_genesis(out / "genesis.json")
    assert f"genesis hash   0x{genesis.genesis_hash.hex()}" in result.output
    keystores = sorted((out / "keystore").iterdir())
    assert len(keystores) == 2
    opened = []
    for path in keystores:
        keystore = json.loads(path.read_text())
        assert keystore["version"] == 3 and (path.stat().st_mode & 0o777) == 0o600
        key = Account.decrypt(keystore, "correct horse")  # eth-account, unmodified
        opened.append(to_canonical_address(Account.from_key(key).address))
    assert sorted(opened) == sorted(v.address for v in genesis.validators)
    with pytest.raises(ValueError):
        read_keystore(keystores[0], "wrong")

    again = CliRunner().invoke(
        cli, ["genesis", "init", "--validators", "2", "--out", str(out), "--password", "x"]
    )
    assert again.exit_code != 0 and "exists" in again.output


def test_genesis_init_devnet_keys_are_reproducible(tmp_path):
    args = [
        "genesis",
        "init",
        "-n",
        "1",
        "--devnet-keys",
        "--timestamp-ms",
        "1",
        "--password",
        "p",
        "--out",
    ]
    first = CliRunner().invoke(cli, args + [str(tmp_path / "a")])
    second = CliRunner().invoke(cli, args + [str(tmp_path / "b")])
    assert first.exit_code == 0 and second.exit_code == 0
    assert (
        load_genesis(tmp_path / "a" / "genesis.json").genesis_hash
        == load_genesis(tmp_path / "b" / "genesis.json").genesis_hash
    )
    assert load_genesis(tmp_path / "a" / "genesis.json").validators[0].address == get_address(
        devnet_private_key(0)
    )


def test_genesis_hash_command():
    result = CliRunner().invoke(cli, ["genesis", "hash", str(DEVNET_GENESIS_PATH)])
    assert result.exit_code == 0 and DEVNET_GENESIS_HASH in result.output
    assert isinstance(load_devnet_genesis(), Genesis)


def test_genesis_init_prompts_for_the_password(tmp_path):
    args = ["genesis", "init", "-n", "1", "--out", str(tmp_path / "net")]
    result = CliRunner().invoke(cli, args, input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    (keystore,) = (tmp_path / "net" / "keystore").iterdir()
    genesis = load_genesis(tmp_path / "net" / "genesis.json")
    assert get_address(read_keystore(keystore, "s3cret")) == genesis.validators[0].address
