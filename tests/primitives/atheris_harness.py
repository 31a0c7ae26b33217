"""An optional coverage-guided fuzz harness (atheris) over every decoder of outside bytes (issue 14).

Not collected by pytest (no test_ prefix); `test_atheris_harness.py` runs it briefly when atheris is
importable. atheris is not a project dependency: it installs on Python 3.11 here from its manylinux wheel,
e.g. into a side directory so the project's venv is untouched:

    .venv/bin/pip install --no-deps --target /tmp/atheris_site atheris
    PYTHONPATH=/tmp/atheris_site:. .venv/bin/python tests/primitives/atheris_harness.py -runs=200000 [corpus/]

The first input byte picks the decoder, the rest is its input. Each decoder may return or raise its
own typed error; anything else (or a crash, or a hang past -timeout) is a finding.
"""
from __future__ import annotations

import sys

import atheris

# Only the project's own packages are instrumented (all of py-evm & co. would take minutes to instrument).
with atheris.instrument_imports(include=["primitives", "genesis", "consensus", "chain", "economy", "p2p", "node"]):
    import rlp

    from chain.blocks import (
        decode_block,
        decode_header,
        decode_receipt,
        split_encoded_block,
    )
    from chain.exceptions import MalformedBlock, TransactionError
    from chain.transactions import decode_transaction
    from genesis.keys import decode_keystore
    from node.config import decode_toml
    from node.consensus_wire import compute_proposal_verdict, compute_vote_verdict
    from node.exceptions import ConfigError
    from p2p.exceptions import P2PError
    from p2p.hello import decode_hello
    from p2p.messages import decode_message
    from primitives.limits import (
        BoundedInputError,
        decode_json_bounded,
        decode_rlp_bounded,
    )

CHAIN_ID = 4747


def run_verdicts(data: bytes) -> None:
    compute_vote_verdict(data, CHAIN_ID, 3, 4)
    compute_proposal_verdict(data, CHAIN_ID, 3, 4)


# decoder, the errors it may raise
TARGETS = [
    (lambda data: decode_transaction(data, CHAIN_ID, 16_384), (TransactionError,)),
    (decode_block, (MalformedBlock,)),
    (decode_header, (MalformedBlock,)),
    (decode_receipt, (MalformedBlock,)),
    (split_encoded_block, (MalformedBlock,)),
    (decode_message, (P2PError,)),  # InvalidMessage, or MalformedFrame for what is not msgpack
    (decode_hello, (P2PError,)),
    (lambda data: decode_json_bounded(data, max_size=1 << 20), (BoundedInputError,)),
    (lambda data: decode_rlp_bounded(data), (rlp.exceptions.RLPException,)),
    (decode_keystore, (BoundedInputError,)),
    (decode_toml, (ConfigError,)),
    (run_verdicts, ()),
]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    decode, allowed = TARGETS[data[0] % len(TARGETS)]
    try:
        decode(data[1:])
    except allowed:
        pass


def main() -> None:
    sys.setrecursionlimit(100_000)  # as py_ecc does on import: the bounds must hold without the guard
    atheris.Setup(sys.argv, fuzz_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
