"""magicoin genesis: the genesis format, the shipped devnet genesis, and devnet keys."""

from pathlib import Path

from genesis.format import (
    DEFAULT_FORKS,
    DEFAULT_MODEL_CARD,
    DEFAULT_PARAMS,
    DEVNET_CHAIN_ID,
    MUAGIC,
    Fork,
    Genesis,
    GenesisValidator,
    ModelCard,
    Params,
    genesis_from_dict,
    genesis_to_dict,
    load_genesis,
    make_genesis,
    save_genesis,
)

DEVNET_GENESIS_PATH = Path(__file__).with_name("devnet.json")


def load_devnet_genesis() -> Genesis:
    return load_genesis(DEVNET_GENESIS_PATH)


__all__ = [
    "DEFAULT_FORKS",
    "DEFAULT_MODEL_CARD",
    "DEFAULT_PARAMS",
    "DEVNET_CHAIN_ID",
    "DEVNET_GENESIS_PATH",
    "MUAGIC",
    "Fork",
    "Genesis",
    "GenesisValidator",
    "ModelCard",
    "Params",
    "genesis_from_dict",
    "genesis_to_dict",
    "load_devnet_genesis",
    "load_genesis",
    "make_genesis",
    "save_genesis",
]
