"""What consensus writes to disk: the machine's own state before anything signed leaves, and decided blocks.

Owns the persisted `TendermintMachine` state in the datadir (its RLP codec and
the atomic, fsynced file: a restart resumes from exactly what was signed, so
it never signs twice) and `apply_decision`, which turns a decision into a
chain import with its commit or, if block sync imported the block first,
stores the commit beside it.
"""
from __future__ import annotations

import enum
import logging
import os
from pathlib import Path

import rlp

from chain.blocks import Block
from chain.chain import Chain
from chain.exceptions import ChainError
from consensus.bft import Decide, PersistedState, Step
from consensus.votes import Proposal, Vote
from node.chain_importer import ChainImporter
from node.exceptions import CorruptConsensusState

logger = logging.getLogger("node.consensus")

PERSISTED_STATE_FILE = "consensus_state.rlp"


# --- the persisted machine state ------------------------------------------------------------

def encode_persisted_state(state: PersistedState) -> bytes:
    # RLP has no negatives or None: rounds are stored +1, a missing value as b"".
    return rlp.encode([
        state.height, state.round, int(state.step),
        state.locked_value or b"", state.locked_round + 1,
        state.valid_value or b"", state.valid_round + 1,
        [rlp.encode(vote) for vote in state.own_votes],
        [rlp.encode(proposal) for proposal in state.own_proposals],
    ])


def decode_persisted_state(encoded: bytes) -> PersistedState:
    fields = rlp.decode(encoded)
    height, round_, step, locked_round, valid_round = (int.from_bytes(fields[i], "big") for i in (0, 1, 2, 4, 6))
    return PersistedState(
        height=height, round=round_, step=Step(step),
        locked_value=fields[3] or None, locked_round=locked_round - 1,
        valid_value=fields[5] or None, valid_round=valid_round - 1,
        own_votes=tuple(rlp.decode(v, sedes=Vote) for v in fields[7]),
        own_proposals=tuple(rlp.decode(p, sedes=Proposal) for p in fields[8]),
    )


class PersistedStateFile:
    """The machine state in the datadir, replaced atomically and fsynced before any signed message leaves."""

    def __init__(self, datadir: Path) -> None:
        self.path = Path(datadir) / PERSISTED_STATE_FILE

    def load(self) -> PersistedState | None:
        if not self.path.exists():
            return None
        try:
            return decode_persisted_state(self.path.read_bytes())
        except (rlp.exceptions.RLPException, ValueError, IndexError, TypeError) as error:
            # Never guess: starting from nothing could sign a second vote where one was already signed.
            raise CorruptConsensusState(f"cannot read {self.path}: {error}", got=str(self.path),
                                        expected="the file this node wrote; move it away only if you are sure "
                                                 "this validator signs nowhere else") from None

    def save(self, state: PersistedState) -> None:
        temporary = self.path.with_suffix(".tmp")
        with open(temporary, "wb") as handle:
            handle.write(encode_persisted_state(state))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)


# --- decided blocks ----------------------------------------------------------------------------

class DecisionOutcome(enum.Enum):
    IMPORTED = "imported"                  # the importer's listeners moved consensus on
    ALREADY_IMPORTED = "already_imported"  # block sync got there first; the commit is kept if it is the head's
    MISSING_BLOCK = "missing_block"        # decided a block we never received: block sync must fetch it
    IMPORT_FAILED = "import_failed"        # a local fault (we judged it valid before voting)


def apply_decision(chain: Chain, importer: ChainImporter, decision: Decide, block: Block | None) -> DecisionOutcome:
    """Put the decided block (and the commit that finalised it) on the chain."""
    if chain.height >= decision.height:
        if chain.head.hash == decision.block_hash and chain.get_commit(decision.block_hash) is None:
            chain.store_commit(decision.block_hash, decision.commit)
        return DecisionOutcome.ALREADY_IMPORTED
    if block is None:
        logger.warning("decided a block we do not hold height=%d; syncing", decision.height)
        return DecisionOutcome.MISSING_BLOCK
    try:
        importer.import_block(block, decision.commit)
    except ChainError as error:
        # Say so loudly and let block sync fetch the chain's view rather than take the node down.
        logger.error("decided block failed to import height=%d error=%s", decision.height, error)
        return DecisionOutcome.IMPORT_FAILED
    logger.info("finalised height=%d round=%d txs=%d hash=%s", decision.height, decision.round,
                len(block.transactions), block.hash.hex()[:16])
    return DecisionOutcome.IMPORTED
