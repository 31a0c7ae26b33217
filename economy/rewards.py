"""Rewards: the block's claims paid from issuance plus the pool's drip, and the index of recognised accounts.

Each payout is logged as `Rewarded(account, amount)` of `MagicoinPool` (`chain.events`), in the block receipt.
"""
from __future__ import annotations

from chain import ledger
from chain.abc import BlockContext, StateAPI
from chain.events import REWARDED, emit_event
from chain.ledger import get_recognition
from chain.transactions import is_system_address
from economy.maths import (
    compute_block_budget,
    compute_decayed,
    compute_payouts,
)
from economy.params import EconomyParams
from economy.records import (
    decode_list,
    encode_list,
)
from economy.store import (
    ATTESTATION_ADDRESS,
    POOL_ADDRESS,
    RECOGNISED_SLOT,
    add_claim,
    clear_claims,
    get_claims,
    get_standing,
)


class RewardRules:
    """Claims, payouts and the recognised-account index of `WorkRules` (a mixin)."""

    params: EconomyParams

    def get_recognised_accounts(self, state: StateAPI) -> list[tuple[bytes, int]]:
        """Accounts at or above the validator threshold, the top validator_cap by recognition."""
        recognised = []
        for address in self.get_recognised_index(state):
            recognition = get_recognition(state, address)  # re-read: a slash may have zeroed it
            if recognition > 0 and recognition >= self.params.validator_threshold:
                recognised.append((address, recognition))
        recognised.sort(key=lambda item: (-item[1], item[0]))
        return recognised[: self.params.validator_cap]

    def get_recognised_index(self, state: StateAPI) -> tuple[bytes, ...]:
        """Every account that ever reached the threshold, so a draw need not walk the whole trie.

        Recognition only rises through `credit_reward`, which only this economy
        calls (`note_recognised` keeps the index), and at genesis; the first use
        walks the accounts once to pick up the genesis allocations.
        """
        raw = state.get_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT)
        if raw:  # present, even when empty (rlp of an empty list is 0xc0), once built
            return decode_list(raw)
        items = tuple(sorted(
            address for address, _ in state.iter_accounts()
            if not is_system_address(address)
            and get_recognition(state, address) >= max(1, self.params.validator_threshold)))
        state.set_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT, encode_list(items))
        return items

    def note_recognised(self, state: StateAPI, address: bytes) -> None:
        if get_recognition(state, address) < max(1, self.params.validator_threshold):
            return
        index = self.get_recognised_index(state)
        if address not in index:
            state.set_storage(ATTESTATION_ADDRESS, RECOGNISED_SLOT, encode_list(index + (address,)))

    # -- attestations ------------------------------------------------------------------------

    def add_claim(self, state: StateAPI, address: bytes, units: int) -> None:
        if units > 0:
            add_claim(state, address, units)

    def process_rewards(self, state: StateAPI, block: BlockContext) -> int:
        """Issue, share the block's budget (issuance plus drip) over its claims, and return the recognition credited.

        The budget is read before this block's issuance lands, so a block pays at most
        issuance + drip of the pool it started from; what it does not pay stays in the pool.
        """
        budget = compute_block_budget(state.get_balance(POOL_ADDRESS), self.params)
        ledger.issue(state, self.params.issuance_per_block)
        recognised = 0
        for address, amount in compute_payouts(get_claims(state), budget, self.params):
            if amount == 0:
                continue
            ledger.credit_reward(state, address, amount)
            emit_event(block, REWARDED, address, amount)
            self.note_recognised(state, address)
            recognised += amount
            if get_standing(state, address) is not None:
                self.note_recent_reward(state, address, amount, block)
        clear_claims(state)
        return recognised

    def note_recent_reward(self, state: StateAPI, address: bytes, amount: int, block: BlockContext) -> None:
        standing = get_standing(state, address)
        decayed = compute_decayed(standing.recent_rewards, standing.recent_rewards_block, block.number,
                                  self.params.recent_rewards_half_life_blocks)
        self.update_standing(state, address, recent_rewards=decayed + amount, recent_rewards_block=block.number)
