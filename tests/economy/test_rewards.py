"""The payout rule (issue 11, part C): a block shares its budget over the work it finalises.

`compute_block_payout` says how much of the budget (issuance + the pool's drip)
a block's claims earn: all of it once the block is full (`issuance /
wei_per_unit` units), else the same fraction as its fill; `compute_payouts`
shares that pro rata to claim units, floored. Properties checked here with
Hypothesis: nothing beyond the budget is paid, each claim gets its pro rata
share within 1 wei, a full block pays its whole budget but for under 1 wei per
claim, a block without claims pays nothing, and the ledger invariant holds when
`WorkRules.process_rewards` pays a block over a real `State`. The pool's bound
I(1-F)/(F d) (docs/ARCHITECTURE.md) is checked on periodic work patterns.
"""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from chain import ledger
from chain.db import MemoryDB
from chain.state import State
from chain.abc import BlockContext
from economy import (
    POOL_ADDRESS, EconomyParams, WorkRules, compute_block_budget, compute_block_payout, compute_payouts,
)
from economy.audit import DEFAULT_AUDIT_POLICY
from economy.records import Claim
from genesis import MUAGIC

PARAMS = EconomyParams()
ACCOUNTS = [bytes([0xA0 + i]) * 20 for i in range(8)]

claims_strategy = st.lists(
    st.builds(Claim, address=st.sampled_from(ACCOUNTS), units=st.integers(1, 10**12)), max_size=12)
budgets = st.integers(0, 10**24)


@given(claims_strategy, budgets)
def test_a_block_pays_at_most_its_budget_pro_rata_to_units(claims, budget):
    payouts = compute_payouts(claims, budget, PARAMS)
    total_units = sum(c.units for c in claims)
    payout = compute_block_payout(total_units, budget, PARAMS)
    assert sum(amount for _, amount in payouts) <= payout <= budget
    assert [address for address, _ in payouts] == [c.address for c in claims]
    for claim, (_, amount) in zip(claims, payouts):
        exact = claim.units * payout  # / total_units, kept exact in integers
        assert exact - total_units < amount * total_units <= exact  # floored: within 1 wei of its exact share


@given(claims_strategy, budgets)
def test_a_full_block_pays_its_whole_budget_but_the_flooring(claims, budget):
    full = [Claim(c.address, c.units + PARAMS.issuance_per_block // PARAMS.wei_per_unit) for c in claims]
    paid = sum(amount for _, amount in compute_payouts(full, budget, PARAMS))
    if full:
        assert budget - len(full) < paid <= budget


@given(st.integers(1, 10**9), budgets)
def test_a_block_that_is_not_full_pays_its_fill(units, budget):
    """One tiny claim in an otherwise empty block earns its units' price, not the whole budget."""
    fill_units = PARAMS.issuance_per_block // PARAMS.wei_per_unit
    payout = compute_block_payout(units, budget, PARAMS)
    if units < fill_units:
        assert payout == budget * units * PARAMS.wei_per_unit // PARAMS.issuance_per_block
    else:
        assert payout == budget


@given(budgets)
def test_no_claims_pay_nothing(budget):
    assert compute_payouts([], budget, PARAMS) == []
    assert compute_block_payout(0, budget, PARAMS) == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(claims_strategy, min_size=1, max_size=6), st.integers(0, 10**22))
def test_process_rewards_keeps_the_ledger_invariant(blocks, pool):
    """Over a real State: sum(balances) + pool == genesis supply + issued, and nothing beyond the budget is paid."""
    state = State(MemoryDB())
    ledger.apply_genesis_allocation(state, POOL_ADDRESS, pool, 0)
    ledger.apply_genesis_allocation(state, ACCOUNTS[0], 10 * MUAGIC, 10 * MUAGIC)
    genesis_supply = pool + 10 * MUAGIC
    rules = WorkRules(PARAMS, DEFAULT_AUDIT_POLICY)
    for number, claims in enumerate(blocks, 1):
        for claim in claims:
            rules.add_claim(state, claim.address, claim.units)
        budget = compute_block_budget(state.get_balance(POOL_ADDRESS), PARAMS)
        before = {a: state.get_balance(a) for a in ACCOUNTS}
        recognised = rules.process_rewards(state, BlockContext(number, 1_000 * number, ACCOUNTS[0], b"\0" * 32))
        paid = sum(state.get_balance(a) - before[a] for a in ACCOUNTS)
        assert recognised == paid <= budget
        assert all(state.get_balance(a) >= before[a] for a in ACCOUNTS)
        total = sum(balance for _, balance in state.iter_accounts())
        assert total == genesis_supply + ledger.get_issued(state)


def simulate_pool(pool: int, fills: list[int], blocks: int, params: EconomyParams) -> list[int]:
    """The pool before each block, when block i's claims come to fills[i % len(fills)] units."""
    history = []
    for number in range(blocks):
        history.append(pool)
        payout = compute_block_payout(fills[number % len(fills)], compute_block_budget(pool, params), params)
        pool += params.issuance_per_block - payout
    return history


def test_the_pool_tends_to_its_bound_with_work_in_a_fraction_of_blocks():
    """Full work every k-th block (w = 1/k): before each such block the pool tends to I(1-w)/(w d)."""
    full = PARAMS.issuance_per_block // PARAMS.wei_per_unit
    issuance, drip = PARAMS.issuance_per_block, PARAMS.pool_drip_ppm / 1e6
    for k in (1, 2, 4, 10):
        fills = [full] + [0] * (k - 1)
        for start in (0, 1_000 * MUAGIC, 100_000 * MUAGIC):
            history = simulate_pool(start, fills, 40 * k * 200, PARAMS)
            w = 1 / k
            bound = issuance * (1 - w) / (w * drip)
            before_work = history[-k]
            assert abs(before_work - bound) <= 0.01 * bound + MUAGIC, (k, start, before_work / MUAGIC)


def test_a_partly_filled_block_leaves_the_pool_bounded_too():
    """Every block filled to F of a full block: the pool tends to I(1-F)/(F d), whatever it started at."""
    full = PARAMS.issuance_per_block // PARAMS.wei_per_unit
    drip = PARAMS.pool_drip_ppm / 1e6
    for fill in (0.1, 0.5):
        for start in (0, 100_000 * MUAGIC):
            history = simulate_pool(start, [int(full * fill)], 20_000, PARAMS)
            bound = PARAMS.issuance_per_block * (1 - fill) / (fill * drip)
            assert abs(history[-1] - bound) <= 0.01 * bound + MUAGIC, (fill, start, history[-1] / MUAGIC)
