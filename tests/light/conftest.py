import pytest

from tests.light.kit import build_test_chain


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The 40-block, 4-validator chain with a validator-set change at height 6 (built once per module)."""
    genesis, built = build_test_chain(tmp_path_factory.mktemp("light-chain") / "db")
    yield genesis, built.chain
    built.db.close()
