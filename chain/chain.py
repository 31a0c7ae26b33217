"""The chain coordinator: genesis, block import, the head, and every read the node needs.

`Chain` is what the node, the devnet, replay and the benchmarks hold. Importing
a block is a list of calls: check it extends the head, check the commit it
carries for its parent, execute it (`chain.transition.execute_block`, which
checks every root and signature), then persist trie nodes, body, receipts,
indexes and the head pointer as ONE atomic write batch.

The state is kept open across blocks (its caches are the replay hot path) with
`buffer_writes=True`, so its trie nodes land in the block's batch rather than in
a write of their own. If a block fails after touching the state, the state is
reopened at the head's root, so nothing of the bad block survives in memory either.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import rlp

from chain.abc import AccountProof, WorkRulesAPI
from chain.blocks import Block, Header, Receipt, decode_receipt, split_encoded_block
from chain.events import compute_block_events_hash
from chain.exceptions import BlockError, ChainError, InvalidHeader
from chain.state import BLANK_ROOT, State, prune_state
from chain.store import GENESIS_KEY, BlockStore, BlockWrite, UnknownBlock, UnknownTransaction, commit_writes
from chain.transition import BlockOutcome, apply_genesis, execute_block, get_validator_set
from consensus.validators import ValidatorSet, compute_validator_set, compute_validators_hash
from consensus.votes import Commit, ConsensusError, validate_commit
from genesis import Genesis

__all__ = [
    "Chain",
    "ChainView",
    "GenesisMismatch",
    "ImportedBlock",
    "InvalidParentCommit",
    "KnownBlock",
    "NoGenesis",
    "ReadOnlyChain",
    "UnknownValidatorSet",
]

VALSET_PREFIX = b"valset:"


class GenesisMismatch(ChainError):
    """The database was initialised from another genesis."""


class NoGenesis(ChainError):
    """The database holds no chain (run `magicoin import` or start a node with a genesis first)."""


class IncompatibleDatabase(ChainError):
    """The database was written by a version of magicoin whose genesis format differs from this one's."""


def decode_stored_genesis(stored: bytes) -> Genesis:
    try:
        return rlp.decode(stored, sedes=Genesis)
    except (rlp.DecodingError, rlp.DeserializationError) as error:
        # Genesis params are consensus rules, so a format change is a new chain: the data cannot be reused.
        raise IncompatibleDatabase("database was written with another genesis format; remove the datadir and resync",
                                   got=str(error)[:120], expected=f"a genesis with {len(Genesis._meta.fields)} "
                                   "fields as this version encodes it") from None


class KnownBlock(BlockError):
    """The block is already part of the chain (import skips these)."""


class InvalidParentCommit(BlockError):
    """The commit a block carries for its parent is not signed by > 2/3 of the parent's validators."""

    def __init__(self, number: int, cause: ConsensusError) -> None:
        self.number = number
        self.cause = cause
        super().__init__(f"block {number}: last_commit invalid: {cause}", got=getattr(cause, "got", None),
                         expected=getattr(cause, "expected", None))


class UnknownValidatorSet(BlockError):
    pass


class ReadOnlyChain(ChainError):
    """A write was asked of a `ChainView`."""


class ImportedBlock(NamedTuple):
    block: Block
    outcome: BlockOutcome


RulesFactory = Callable[[Genesis], WorkRulesAPI]


class Chain:
    """A chain in a database: open it with `from_genesis` (creating it if empty) or `open`.

    The work rules are injected (the node passes `economy.make_work_rules`): the
    chain applies whatever `WorkRulesAPI` it is given and imports no economy.
    """

    def __init__(self, db, genesis: Genesis, rules: WorkRulesAPI, *, verify_commits: bool = True) -> None:
        self.db = db
        self.genesis = genesis
        self.rules = rules
        self.verify_commits = verify_commits
        self.store = BlockStore(db, Block, decode_receipt)
        head_hash = self.store.get_head_hash()
        if head_hash is None:
            raise NoGenesis("database has no head", got=None, expected="an initialised chain")
        self._head: Block = self.store.get_block(head_hash)
        self._node_cache: dict = {}
        self._state = self._open_state()
        self._valsets: dict[bytes, ValidatorSet] = {}

    # --- opening ----------------------------------------------------------------------------

    @classmethod
    def from_genesis(cls, db, genesis: Genesis, make_rules: RulesFactory, **kwargs) -> "Chain":
        """Open the chain in db, writing genesis first if db is empty; refuse another chain's db."""
        spec = rlp.encode(genesis)
        stored = db.get(GENESIS_KEY)
        if stored is None:
            write_genesis(db, genesis)
        elif stored != spec:
            stored_hash = decode_stored_genesis(stored).genesis_hash
            raise GenesisMismatch("database belongs to another genesis", got=stored_hash,
                                  expected=genesis.genesis_hash)
        return cls(db, genesis, make_rules(genesis), **kwargs)

    @classmethod
    def open(cls, db, make_rules: RulesFactory, **kwargs) -> "Chain":
        """Open an existing chain, with the genesis it was created from."""
        stored = db.get(GENESIS_KEY)
        if stored is None:
            raise NoGenesis("database holds no chain", got=None, expected="a database made by magicoin")
        genesis = decode_stored_genesis(stored)
        return cls(db, genesis, make_rules(genesis), **kwargs)

    def _open_state(self) -> State:
        return State(self.db, self._head.header.state_root, buffer_writes=True, node_cache=self._node_cache)

    # --- the head ---------------------------------------------------------------------------

    @property
    def head(self) -> Header:
        return self._head.header

    @property
    def head_block(self) -> Block:
        return self._head

    @property
    def height(self) -> int:
        return self._head.header.number

    @property
    def state(self) -> State:
        """The head's state. Read it; do not write it (build on `state_at(head.state_root)`)."""
        return self._state

    # --- import -----------------------------------------------------------------------------

    def import_block(self, block: Block, commit: Commit | None = None) -> ImportedBlock:
        """Validate `block` on top of the head, apply it, and commit it in one batch.

        `commit` is the commit consensus saw for this block itself (kept as the
        head's commit until the next block carries it). Raises KnownBlock for a
        block already in the chain and a BlockError subclass for an invalid one;
        either way nothing is written.
        """
        parent = self._head.header
        self.validate_extends_head(block)
        self.validate_parent_commit(block, parent)
        try:
            outcome = execute_block(self._state, parent, block, self.genesis, self.rules)
        except BaseException:
            # The state may hold the bad block's writes (e.g. after a state_root mismatch).
            self._state = self._open_state()
            raise
        self.persist_block(block, outcome, commit)
        return ImportedBlock(block, outcome)

    def validate_extends_head(self, block: Block) -> None:
        header = block.header
        if header.number <= self.height:
            try:
                known = self.store.get_canonical_hash(header.number)
            except UnknownBlock:
                known = None
            if known == block.hash:
                raise KnownBlock("block already imported", got=header.number, expected=f"> {self.height}")
        if header.number != self.height + 1:
            raise InvalidHeader("number", got=header.number, expected=self.height + 1)

    def validate_parent_commit(self, block: Block, parent: Header) -> None:
        """The block's last_commit carries > 2/3 of the weight of the set that finalised the parent."""
        if not self.verify_commits or parent.number == 0:
            # Genesis is not voted on; execute_block checks that block 1 carries the empty commit.
            return
        validator_set = self.get_validator_set(parent.validators_hash)
        try:
            validate_commit(block.last_commit, validator_set, self.genesis.chain_id, parent.number, parent.hash)
        except ConsensusError as error:
            raise InvalidParentCommit(block.header.number, error) from None

    def persist_block(self, block: Block, outcome: BlockOutcome, commit: Commit | None) -> None:
        header = block.header
        write = BlockWrite()
        if header.next_validators_hash != header.validators_hash:
            # Before the pending writes are taken: the set is read from this block's
            # post-state, whose new accounts' preimages are still pending.
            self._add_validator_set(write, header.next_validators_hash)
        write.add_nodes(self._state.pop_pending_writes())
        reasons = [b""] * len(outcome.receipts)
        for index, reason in outcome.failures:
            reasons[index] = reason.encode()
        write.add_block(block.hash, header.number, rlp.encode(block), [tx.hash for tx in outcome.transactions],
                        [receipt.encode() for receipt in outcome.receipts], reasons)
        write.add_logs(block.hash, outcome.receipts, outcome.block_receipt,  # bloom and block receipt (chain.events)
                       compute_block_events_hash(header.number, block.hash))
        if commit is not None:
            write.add_commit(block.hash, rlp.encode(commit))
        write.set_head(block.hash)
        commit_writes(self.db, write.writes)
        self._head = block

    def _add_validator_set(self, write: BlockWrite, validators_hash: bytes) -> None:
        # The set an epoch boundary announces is derived from this block's post-state;
        # keep it by hash so the next blocks' commits can be checked without re-deriving it.
        validator_set = get_validator_set(self._state, self.genesis.params)
        if validator_set is None or compute_validators_hash(validator_set) != validators_hash:
            raise UnknownValidatorSet("announced validator set not derivable from state", got=validators_hash,
                                      expected="the hash of the state's validator set")
        write.writes[VALSET_PREFIX + validators_hash] = encode_validator_set(validator_set)
        self._valsets[validators_hash] = validator_set

    def store_commit(self, block_hash: bytes, commit: Commit) -> None:
        """Record the commit consensus saw for an already imported block (e.g. the head's)."""
        commit_writes(self.db, {b"commit:" + block_hash: rlp.encode(commit)})

    # --- reads ------------------------------------------------------------------------------

    def get_validator_set(self, validators_hash: bytes) -> ValidatorSet:
        validator_set = self._valsets.get(validators_hash)
        if validator_set is None:
            encoded = self.db.get(VALSET_PREFIX + validators_hash)
            if encoded is None:
                raise UnknownValidatorSet("no validator set with this hash", got=validators_hash,
                                          expected="a set announced by a stored header")
            validator_set = self._valsets[validators_hash] = decode_validator_set(encoded)
        return validator_set

    def get_block_by_hash(self, block_hash: bytes) -> Block:
        return self.store.get_block(block_hash)

    def get_block_by_number(self, number: int) -> Block:
        return self.store.get_block_by_number(number)

    def get_header(self, number: int) -> Header:
        return self.store.get_block_by_number(number).header

    def get_encoded_header(self, number: int) -> bytes:
        """rlp(Header) of the canonical block at `number`, cut from the stored block (nothing decoded)."""
        return split_encoded_block(self.store.get_encoded_block(self.store.get_canonical_hash(number)))[0]

    def get_encoded_commit(self, number: int) -> bytes | None:
        """rlp(Commit) that finalised the canonical block at `number`, as `get_commit` finds it, undecoded.

        None for genesis (never voted on) and for a head whose commit is not stored yet.
        """
        if number <= 0:
            return None
        if number < self.height:
            return split_encoded_block(self.store.get_encoded_block(self.store.get_canonical_hash(number + 1)))[2]
        return self.store.get_encoded_commit(self.store.get_canonical_hash(number))

    def get_transaction(self, tx_hash: bytes) -> tuple[Block, int, bytes]:
        """(block, index, raw transaction) of a committed transaction."""
        block, index = self._get_transaction_block(tx_hash)
        return block, index, block.transactions[index]

    def get_receipt(self, tx_hash: bytes) -> tuple[Block, int, Receipt, str]:
        """(block, index, receipt, failure reason or "") of a committed transaction."""
        block, index = self._get_transaction_block(tx_hash)
        receipts = self.store.get_receipts(block.hash)
        reason = self.store.get_failure_reasons(block.hash)[index].decode()
        return block, index, receipts[index], reason

    def get_block_events_receipt(self, events_hash: bytes) -> tuple[Block, Receipt]:
        """(block, block receipt) under the hash `chain.events.compute_block_events_hash` gives a block's events."""
        block_hash, index = self.store.get_transaction_location(events_hash)
        block = self.store.get_block(block_hash)
        block_receipt = self.store.get_block_receipt(block_hash)
        if index != len(block.transactions) or block_receipt is None:
            raise UnknownTransaction("not a block's events", got=events_hash, expected="a block events hash")
        return block, block_receipt

    def _get_transaction_block(self, tx_hash: bytes) -> tuple[Block, int]:
        block_hash, index = self.store.get_transaction_location(tx_hash)
        block = self.store.get_block(block_hash)
        if index >= len(block.transactions):  # a block's events (get_block_events_receipt), not a transaction
            raise UnknownTransaction("no committed transaction with this hash", got=tx_hash,
                                     expected="a committed transaction hash")
        return block, index

    def get_receipts(self, block_hash: bytes) -> list[Receipt]:
        return self.store.get_receipts(block_hash)

    def get_commit(self, block_hash: bytes) -> Commit | None:
        """The commit that finalised a block: the next block's last_commit, or the one stored for the head."""
        block = self.store.get_block(block_hash)
        number = block.header.number
        if number < self.height:
            return self.store.get_block_by_number(number + 1).last_commit
        encoded = self.store.get_encoded_commit(block_hash)
        return rlp.decode(encoded, sedes=Commit) if encoded is not None else None

    def scratch_state(self, state_root: bytes | None = None) -> State:
        """A writable State at a root (default: the head's) whose writes are never persisted.

        For proposers and pre-vote checks (build_block / execute_block on a copy);
        it shares the chain's decoded-node cache, so it is as fast as the head state.
        """
        root = self.head.state_root if state_root is None else state_root
        return State(self.db, root, buffer_writes=True, node_cache=self._node_cache)

    def state_at(self, state_root: bytes) -> State:
        """A read-only view of a kept state root."""
        return State.at(self.db, state_root, node_cache=self._node_cache)

    def prune(self, keep_last: int) -> tuple[int, int]:
        """Delete the state of all but the last `keep_last` blocks; returns (nodes kept, nodes deleted).

        Blocks, receipts and indexes stay; proofs at pruned heights raise UnknownStateRoot.
        """
        if keep_last < 1:
            raise ValueError("keep_last must be at least 1 (the head's state)")
        first = max(0, self.height - keep_last + 1)
        roots = [self.get_header(number).state_root for number in range(first, self.height + 1)]
        # Roots pruned by an earlier call stay pruned; their absence is not an error.
        roots = [root for root in roots if root == BLANK_ROOT or self.db.get(root) is not None]
        result = prune_state(self.db, roots)
        self._node_cache.clear()  # it may hold decoded nodes of pruned roots
        self._state = self._open_state()
        return result

    def get_proof(self, address: bytes, slots: Sequence[bytes] = (), number: int | None = None) -> AccountProof:
        """EIP-1186 proof of an account (and slots) against the state root of block `number` (default head)."""
        header = self.head if number is None else self.get_header(number)
        return self.state_at(header.state_root).get_proof(address, slots)

    def get_head_view(self) -> ChainView:
        """A read-only view of the chain pinned at the current head, safe to read from another thread."""
        return ChainView(self)


class ChainView(Chain):
    """The chain as it was at one head: every read of `Chain`, no writes.

    Made for readers on other threads (the JSON-RPC workers) while the owner
    thread imports blocks. It is consistent because what it reads never changes
    under it: the head is pinned; state is read through a fresh read-only
    `State` at the pinned root (the live head state holds a block's writes in
    memory while it executes), and trie nodes are content-addressed, so nodes
    of a newer root never alter an older root's reads; blocks, receipts and
    indexes of heights up to the pinned head are immutable under BFT finality
    (no reorgs); and whatever a later block added (its transactions, its
    hash) is hidden, as if not yet imported. The shared caches (decoded trie
    nodes, decoded blocks, validator sets) hold immutable values keyed by
    hash, and each access is one dict operation, which the GIL makes atomic.
    Pruning a root the view still reads makes that read raise UnknownStateRoot.
    """

    def __init__(self, chain: Chain) -> None:  # Chain.__init__ is not called: a view shares, it opens nothing
        self.db = chain.db
        self.genesis = chain.genesis
        self.rules = chain.rules
        self.verify_commits = chain.verify_commits
        self.store = chain.store
        self._head = chain._head
        self._node_cache = chain._node_cache
        self._valsets = chain._valsets
        self._state = State.at(self.db, self._head.header.state_root, node_cache=self._node_cache)

    def import_block(self, block: Block, commit: Commit | None = None) -> ImportedBlock:
        raise ReadOnlyChain("a chain view cannot import blocks", got=block.header.number, expected="the live Chain")

    def store_commit(self, block_hash: bytes, commit: Commit) -> None:
        raise ReadOnlyChain("a chain view cannot store commits", got=block_hash, expected="the live Chain")

    def prune(self, keep_last: int) -> tuple[int, int]:
        raise ReadOnlyChain("a chain view cannot prune", got=keep_last, expected="the live Chain")

    def get_block_by_hash(self, block_hash: bytes) -> Block:
        block = self.store.get_block(block_hash)
        self.validate_visible(block, block_hash)
        return block

    def get_transaction(self, tx_hash: bytes) -> tuple[Block, int, bytes]:
        block, index, raw = super().get_transaction(tx_hash)
        self.validate_visible(block, tx_hash, UnknownTransaction)
        return block, index, raw

    def get_receipt(self, tx_hash: bytes) -> tuple[Block, int, Receipt, str]:
        found = super().get_receipt(tx_hash)
        self.validate_visible(found[0], tx_hash, UnknownTransaction)
        return found

    def get_block_events_receipt(self, events_hash: bytes) -> tuple[Block, Receipt]:
        found = super().get_block_events_receipt(events_hash)
        self.validate_visible(found[0], events_hash, UnknownTransaction)
        return found

    def get_commit(self, block_hash: bytes) -> Commit | None:
        self.get_block_by_hash(block_hash)
        return super().get_commit(block_hash)

    def validate_visible(self, block: Block, key: bytes, error=UnknownBlock) -> None:
        """What a block above the pinned head holds is not there yet, for this view."""
        if block.header.number > self.height:
            raise error("not imported at this view's head", got=key, expected=f"a block at height <= {self.height}")


# --- genesis ----------------------------------------------------------------------------------

def write_genesis(db, genesis: Genesis) -> Block:
    """Initialise an empty database with the genesis state and block 0, in one batch."""
    state = State(db, buffer_writes=True)
    block = apply_genesis(state, genesis)
    validator_set = compute_validator_set(
        [(v.address, v.recognition) for v in genesis.validators],
        genesis.params.validator_threshold, genesis.params.validator_cap,
    )
    write = BlockWrite()
    write.add_nodes(state.pop_pending_writes())
    write.add_block(block.hash, 0, rlp.encode(block), [], [])
    write.writes[VALSET_PREFIX + block.header.validators_hash] = encode_validator_set(validator_set)
    write.writes[GENESIS_KEY] = rlp.encode(genesis)
    write.set_head(block.hash)
    commit_writes(db, write.writes)
    return block


def encode_validator_set(validator_set: ValidatorSet) -> bytes:
    return rlp.encode([[v.address, v.weight] for v in validator_set.members])


def decode_validator_set(encoded: bytes) -> ValidatorSet:
    return ValidatorSet((address, int.from_bytes(weight, "big")) for address, weight in rlp.decode(encoded))
