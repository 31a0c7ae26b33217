"""Mempool on a real LevelDB chain: admission, nonce gaps, replacement, per-account limit, eviction, selection."""
from __future__ import annotations

import pytest
import rlp
from eth_utils import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chain.chain import Chain
from chain.db import LevelDB
from chain.state import State
from chain.exceptions import InsufficientBalance, WrongChainId
from chain.payloads import Offering
from chain.transactions import sign_work_transaction
from chain.transition import NoWorkRules
from genesis import DEFAULT_PARAMS, MUAGIC, make_genesis
from genesis.keys import devnet_private_key, get_address
from node.exceptions import (
    AccountLimitReached, AlreadyKnown, MempoolFull, NonceGapTooLarge, NonceTooLow, ReplacementUnderpriced,
)
from node.mempool import Mempool, MempoolConfig

CHAIN_ID = 4343
PARAMS = DEFAULT_PARAMS.copy(max_txs_per_account_per_block=3)
KEYS = [devnet_private_key(i) for i in range(4)]
GENESIS = make_genesis(CHAIN_ID, [get_address(k) for k in KEYS], params=PARAMS, timestamp_ms=1_000_000)
USERS = [keccak(b"mempool-user-%d" % i) for i in range(6)]
OFFERING = rlp.encode(Offering(b"test", b""))


def offering(key: bytes, nonce: int, *, tip: int = 0, value: int = 0, chain_id: int = CHAIN_ID) -> bytes:
    return sign_work_transaction(key, chain_id=chain_id, nonce=nonce, kind="offering", data=OFFERING, value=value,
                                 max_fee_per_gas=tip, max_priority_fee_per_gas=tip, gas=100_000)


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    db = LevelDB(tmp_path_factory.mktemp("mempool-db"))
    # Offerings are applied by the chain itself, so the economy is not needed to test admission.
    yield Chain.from_genesis(db, GENESIS, lambda _genesis: NoWorkRules())
    db.close()


def make_pool(chain, **config) -> Mempool:
    return Mempool(chain.genesis, lambda: chain.state, MempoolConfig(**config))


def test_add_get_and_pending_nonce(chain):
    pool = make_pool(chain)
    raw = offering(USERS[0], 0)
    tx_hash = pool.add(raw)
    assert tx_hash == keccak(raw)
    assert pool.get(tx_hash).raw == raw and pool.get(tx_hash).nonce == 0
    assert pool.get_pending_nonce(get_address(USERS[0])) == 1
    assert pool.get_pending_nonce(get_address(USERS[1])) == 0
    with pytest.raises(AlreadyKnown):
        pool.add(raw)
    assert pool.statistics()["size"] == 1


def test_stateless_and_state_errors_are_typed(chain):
    pool = make_pool(chain)
    with pytest.raises(WrongChainId):
        pool.add(offering(USERS[0], 0, chain_id=1))
    with pytest.raises(InsufficientBalance):
        pool.add(offering(USERS[0], 0, value=1))  # a zero-balance user cannot offer value
    validator = KEYS[0]
    pool.add(offering(validator, 0, value=MUAGIC))  # the validator has a balance
    assert pool.statistics()["rejected"] == 2


def test_nonce_gaps_are_kept_but_not_selected(chain):
    pool = make_pool(chain, max_nonce_gap=4)
    user = USERS[1]
    pool.add(offering(user, 2))
    assert pool.select(10) == []  # nonce 0 and 1 missing
    assert pool.get_pending_nonce(get_address(user)) == 0
    with pytest.raises(NonceGapTooLarge):
        pool.add(offering(user, 4))
    pool.add(offering(user, 0))
    assert [r for r in pool.select(10)] == [offering(user, 0)]
    pool.add(offering(user, 1))
    assert pool.select(10) == [offering(user, 0), offering(user, 1), offering(user, 2)]
    assert pool.get_pending_nonce(get_address(user)) == 3


def test_replacement_needs_a_higher_tip(chain):
    pool = make_pool(chain)
    key = KEYS[1]  # has a balance to pay tips
    first = pool.add(offering(key, 0, tip=100))
    with pytest.raises(ReplacementUnderpriced):
        pool.add(offering(key, 0, tip=105))
    second = pool.add(offering(key, 0, tip=110))
    assert pool.get(first) is None and pool.get(second) is not None
    assert pool.statistics()["replaced"] == 1 and pool.statistics()["size"] == 1


def test_per_account_limit(chain):
    pool = make_pool(chain, max_per_account=3)
    for nonce in range(3):
        pool.add(offering(USERS[2], nonce))
    with pytest.raises(AccountLimitReached):
        pool.add(offering(USERS[2], 3))
    pool.add(offering(USERS[3], 0))  # other accounts are unaffected


def test_eviction_takes_the_busiest_senders_tail(chain):
    pool = make_pool(chain, max_size=4)
    busy = [offering(USERS[0], n) for n in range(4)]
    for raw in busy:
        pool.add(raw)
    pool.add(offering(USERS[1], 0))  # evicts USERS[0]'s nonce 3, not its nonce 0
    assert pool.get(keccak(busy[3])) is None and pool.get(keccak(busy[0])) is not None
    assert pool.statistics()["evicted"] == 1
    pool.add(offering(USERS[2], 0))  # evicts busy[2]
    with pytest.raises(MempoolFull):
        pool.add(offering(USERS[0], 2))  # the busiest sender cannot push out others


def test_select_caps_per_account_and_orders_by_tip(chain):
    pool = make_pool(chain)
    for nonce in range(5):
        pool.add(offering(USERS[4], nonce))
    rich = offering(KEYS[2], 0, tip=7)
    pool.add(rich)
    selected = pool.select(100)
    assert selected[0] == rich  # highest tip first
    assert selected[1:] == [offering(USERS[4], n) for n in range(3)]  # per-block cap of 3
    assert pool.select(2) == selected[:2]


def test_on_block_drops_included_and_stale(chain, tmp_path):
    from chain.builder import build_block
    from consensus.votes import EMPTY_COMMIT

    db = LevelDB(tmp_path / "db")
    local = Chain.from_genesis(db, GENESIS, lambda _genesis: NoWorkRules())
    pool = Mempool(local.genesis, lambda: local.state)
    user = USERS[5]
    included = [offering(user, 0), offering(user, 1)]
    for raw in included:
        pool.add(raw)
    pool.add(offering(user, 2))
    other = offering(USERS[0], 0)
    pool.add(other)
    # The block includes user's 0 and 1 and a *different* nonce-0 tx of USERS[0] (replaced elsewhere).
    elsewhere = sign_work_transaction(
        USERS[0], chain_id=CHAIN_ID, nonce=0, kind="offering", data=rlp.encode(Offering(b"other", b"")), gas=100_000)
    state = State(local.db, local.head.state_root, buffer_writes=True)
    built = build_block(state, local.head, included + [elsewhere], local.head.timestamp_ms + 1, get_address(KEYS[0]),
                        EMPTY_COMMIT, local.genesis, local.rules)
    local.import_block(built.block)
    pool.on_block([tx.hash for tx in built.transactions])
    assert pool.get(keccak(other)) is None  # stale: its nonce was used by another tx
    assert [p.nonce for p in (pool.get(keccak(offering(user, 2))),)] == [2]
    assert pool.select(10) == [offering(user, 2)]
    assert pool.statistics()["included"] == 2 and pool.statistics()["dropped"] == 1
    db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 6)), min_size=1, max_size=40))
def test_invariants_hold_for_any_arrival_order(chain, arrivals):
    """Whatever arrives: bounded size and per-account count, and select() is gap-free from each sender's nonce."""
    pool = make_pool(chain, max_size=8, max_per_account=4, max_nonce_gap=6)
    for user, nonce in arrivals:
        try:
            pool.add(offering(USERS[user], nonce))
        except Exception as error:
            assert isinstance(error, (AlreadyKnown, MempoolFull, AccountLimitReached, NonceGapTooLarge))
    stats = pool.statistics()
    assert stats["size"] <= 8 and len(pool) == stats["size"]
    for user in range(4):
        assert len(pool._by_sender.get(get_address(USERS[user]), {})) <= 4
    seen: dict[bytes, list[int]] = {}
    for raw in pool.select(100):
        pending = pool.get(keccak(raw))
        seen.setdefault(pending.sender, []).append(pending.nonce)
    for sender, nonces in seen.items():
        assert nonces == list(range(len(nonces)))  # starts at the state nonce (0) with no gap
        assert len(nonces) <= PARAMS.max_txs_per_account_per_block


def test_builder_refusals_are_dropped_but_limits_and_gaps_kept(chain):
    from chain.exceptions import AccountTxLimitExceeded, InsufficientBalance, NonceMismatch

    pool = make_pool(chain)
    raws = [offering(USERS[0], n) for n in range(3)]
    for raw in raws:
        pool.add(raw)
    pool.drop_invalid([
        (raws[0], InsufficientBalance("x", got=0, expected=1)),
        (raws[1], NonceMismatch("x", got=1, expected=0)),
        (raws[2], AccountTxLimitExceeded("x", got=4, expected=3)),
    ])
    assert pool.get(keccak(raws[0])) is None
    assert pool.get(keccak(raws[1])) is not None and pool.get(keccak(raws[2])) is not None
