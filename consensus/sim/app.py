"""The replicated application the simulator drives, and one real one: a small MUAGIC ledger.

`ApplicationAPI` is the seam between consensus and the state machine being
replicated: build a block, judge a block, apply a decided block. The lead
plugs `chain.transition.apply_block` in through the same interface later.

`LedgerApp` keeps balances that pool, a common pool, and issuance, with the
design's ledger rules: value only moves as a reward (pool -> account, raising
recognition), an offering (account -> pool) or issuance (new supply into the
pool). Each block carries the commit for its parent, checked with
`consensus.votes.validate_commit`. After every committed block it checks the
supply invariant: sum(balances) + pool == genesis supply + issued. With an
`epoch_length`, the validator set is re-derived from recognition
(`compute_validator_set`) at each epoch boundary, so weights follow recognised
work and change only between epochs.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod

import rlp
from eth_utils import keccak
from rlp.sedes import Binary, CountableList, big_endian_int

from consensus.validators import ValidatorSet, compute_validator_set, get_epoch_start, is_epoch_boundary
from consensus.votes import EMPTY_COMMIT, Commit, ConsensusError, validate_commit

address_sedes = Binary.fixed_length(20)
hash_sedes = Binary.fixed_length(32)

REWARD = 1
OFFERING = 2
TX_KINDS = (REWARD, OFFERING)


class InvalidBlock(ConsensusError):
    def __init__(self, reason: str, got: object, expected: object) -> None:
        super().__init__(f"invalid block, {reason}: got {got!r}, expected {expected!r}")
        self.reason = reason
        self.got = got
        self.expected = expected


class ApplicationAPI(ABC):
    """What the simulator (and later the trio service) needs from the replicated application."""

    @abstractmethod
    def get_height(self) -> int:
        """The last committed height (0 before the first block)."""

    @abstractmethod
    def get_validator_set(self, height: int) -> ValidatorSet:
        """The set that votes at `height` (it changes only at epoch boundaries)."""

    @abstractmethod
    def propose(self, height: int, proposer: bytes, last_commit: Commit) -> bytes:
        """Build the encoded block for `height`, carrying the commit of its parent."""

    @abstractmethod
    def compute_block_hash(self, block: bytes) -> bytes: ...

    @abstractmethod
    def validate(self, block: bytes) -> None:
        """Raise InvalidBlock unless `block` is a valid next block on the committed head."""

    @abstractmethod
    def commit(self, block: bytes, commit: Commit) -> list[str]:
        """Apply a decided block; return the invariant violations found after it (empty if none)."""


class LedgerTx(rlp.Serializable):
    fields = [("kind", big_endian_int), ("account", address_sedes), ("amount", big_endian_int)]


class LedgerBlock(rlp.Serializable):
    fields = [
        ("height", big_endian_int),
        ("parent_hash", hash_sedes),
        ("proposer", address_sedes),
        ("issuance", big_endian_int),
        ("txs", CountableList(LedgerTx)),
        ("last_commit", Commit),
    ]


GENESIS_HASH = keccak(b"magicoin/sim/genesis")


class LedgerApp(ApplicationAPI):
    """One node's copy of the ledger. `mempool_seed` makes each node's proposals its own."""

    def __init__(
        self,
        validator_set: ValidatorSet,
        chain_id: int,
        accounts: list[bytes],
        genesis_balance: int = 1_000,
        genesis_pool: int = 10_000,
        issuance: int = 100,
        mempool_seed: int = 0,
        txs_per_block: int = 4,
        epoch_length: int | None = None,
        validator_threshold: int = 1,
        validator_cap: int = 100,
    ) -> None:
        self.chain_id = chain_id
        self.balances = {a: genesis_balance for a in accounts}
        # Genesis recognition is the genesis weight, so the first derived set starts where genesis did.
        self.recognition = {a: validator_set.get_weight(a) for a in accounts}
        self.epoch_length = epoch_length
        self.validator_threshold = validator_threshold
        self.validator_cap = validator_cap
        self.sets: dict[int, ValidatorSet] = {1: validator_set}  # epoch start -> set
        self.pool = genesis_pool
        self.issued = 0
        self.issuance = issuance
        self.genesis_supply = genesis_balance * len(accounts) + genesis_pool
        self.height = 0
        self.head_hash = GENESIS_HASH
        self.last_commit = EMPTY_COMMIT
        self.txs_per_block = txs_per_block
        self._rng = random.Random(mempool_seed)

    def get_height(self) -> int:
        return self.height

    def get_validator_set(self, height: int) -> ValidatorSet:
        if self.epoch_length is None:
            return self.sets[1]
        epoch_start = get_epoch_start(height, self.epoch_length)
        if epoch_start not in self.sets:
            raise InvalidBlock("height", height, f"<= {self.height + 1} (sets are known one block ahead)")
        return self.sets[epoch_start]

    def compute_block_hash(self, block: bytes) -> bytes:
        return keccak(block)

    # --- building ----------------------------------------------------------------

    def propose(self, height: int, proposer: bytes, last_commit: Commit) -> bytes:
        txs = self._draw_valid_txs()
        return rlp.encode(LedgerBlock(height, self.head_hash, proposer, self.issuance, txs, last_commit))

    def _draw_valid_txs(self) -> list[LedgerTx]:
        """A node's mempool: random rewards and offerings that fit the current balances."""
        pool = self.pool + self.issuance
        balances = dict(self.balances)
        accounts = sorted(balances)
        txs = []
        for _ in range(self.txs_per_block):
            account = self._rng.choice(accounts)
            if self._rng.random() < 0.5 and pool > 0:
                amount = self._rng.randint(1, max(1, pool // 10))
                pool -= amount
                balances[account] += amount
                txs.append(LedgerTx(REWARD, account, amount))
            elif balances[account] > 0:
                amount = self._rng.randint(1, balances[account])
                balances[account] -= amount
                pool += amount
                txs.append(LedgerTx(OFFERING, account, amount))
        return txs

    # --- judging and applying ---------------------------------------------------------

    def decode(self, block: bytes) -> LedgerBlock:
        try:
            return rlp.decode(block, sedes=LedgerBlock)
        except (rlp.exceptions.DecodingError, rlp.exceptions.DeserializationError) as exc:
            raise InvalidBlock("encoding", str(exc), "an RLP LedgerBlock") from exc

    def validate(self, block: bytes) -> None:
        self.compute_post_state(self.decode(block))

    def compute_post_state(self, block: LedgerBlock) -> tuple[dict[bytes, int], dict[bytes, int], int]:
        """Apply the block's transfers to copies of the state, raising InvalidBlock on any broken rule."""
        if block.height != self.height + 1:
            raise InvalidBlock("height", block.height, self.height + 1)
        if block.parent_hash != self.head_hash:
            raise InvalidBlock("parent_hash", block.parent_hash.hex(), self.head_hash.hex())
        if block.issuance != self.issuance:
            raise InvalidBlock("issuance", block.issuance, self.issuance)
        self.validate_last_commit(block)
        balances, recognition = dict(self.balances), dict(self.recognition)
        pool = self.pool + block.issuance
        for tx in block.txs:
            if tx.kind not in TX_KINDS:
                raise InvalidBlock("tx kind", tx.kind, TX_KINDS)
            if tx.account not in balances:
                raise InvalidBlock("account", tx.account.hex(), "a known account")
            if tx.amount <= 0:
                raise InvalidBlock("amount", tx.amount, "> 0")
            if tx.kind == REWARD:
                # Rewards come out of the pool; nothing else can create value.
                if tx.amount > pool:
                    raise InvalidBlock("reward above pool", tx.amount, f"<= {pool}")
                pool -= tx.amount
                balances[tx.account] += tx.amount
                recognition[tx.account] += tx.amount
            else:
                if tx.amount > balances[tx.account]:
                    raise InvalidBlock("offering above balance", tx.amount, f"<= {balances[tx.account]}")
                balances[tx.account] -= tx.amount
                pool += tx.amount
        return balances, recognition, pool

    def validate_last_commit(self, block: LedgerBlock) -> None:
        # The first block has no parent to prove; every later one carries its parent's commit.
        if block.height == 1:
            if block.last_commit != EMPTY_COMMIT:
                raise InvalidBlock("last_commit", "a commit", "the empty commit at height 1")
            return
        try:
            validate_commit(
                block.last_commit, self.get_validator_set(self.height), self.chain_id, self.height, self.head_hash
            )
        except ConsensusError as exc:
            raise InvalidBlock("last_commit", str(exc), "a quorum commit for the parent") from exc

    def commit(self, block: bytes, commit: Commit) -> list[str]:
        decoded = self.decode(block)
        balances, recognition, pool = self.compute_post_state(decoded)
        self.balances, self.recognition, self.pool = balances, recognition, pool
        self.issued += decoded.issuance
        self.height = decoded.height
        self.head_hash = self.compute_block_hash(block)
        self.last_commit = commit
        if self.epoch_length is not None and is_epoch_boundary(self.height + 1, self.epoch_length):
            self.sets[self.height + 1] = compute_validator_set(
                self.recognition.items(), self.validator_threshold, self.validator_cap
            )
        return self.get_invariant_violations()

    def get_invariant_violations(self) -> list[str]:
        violations = []
        total = sum(self.balances.values()) + self.pool
        if total != self.genesis_supply + self.issued:
            violations.append(f"supply {total} != genesis {self.genesis_supply} + issued {self.issued}")
        if any(b < 0 for b in self.balances.values()) or self.pool < 0:
            violations.append("negative balance")
        return violations


class InvalidProposerApp(LedgerApp):
    """A byzantine node's ledger: it proposes blocks that mint value out of nothing."""

    def propose(self, height: int, proposer: bytes, last_commit: Commit) -> bytes:
        account = sorted(self.balances)[0]
        mint = LedgerTx(REWARD, account, self.pool + self.issuance + 1)
        return rlp.encode(LedgerBlock(height, self.head_hash, proposer, self.issuance, [mint], last_commit))
