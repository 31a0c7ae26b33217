"""`eth_call`: reads of the system addresses through a small published ABI.

There is no EVM and no contract code. The pool and jobs system addresses answer
a few view functions, encoded exactly as Solidity would (eth_abi), so ethers'
`Contract` and viem's `readContract` decode them with the ABI published in
docs/abi/magicoin.json (`compute_abi()` writes it; a test keeps the two equal).
Everything else fails as geth fails a call that reverts: code 3,
"execution reverted: <reason>", the reason also ABI-encoded in `data`.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, to_canonical_address

import economy
from chain.events import compute_event_abis
from chain.ledger import get_issued, get_pool_balance, get_recognition
from chain.transactions import ADDRESS_BY_KIND, KIND_BY_ADDRESS, POOL_ADDRESS, is_system_address
from node.abc import NodeAPI
from node.rpc_core import BlockTag, ExecutionReverted, MethodTable, Param, encode_data, get_state, parse_block_tag
from node.rpc_eth import parse_call

CALL_METHODS = MethodTable()
JOBS_ADDRESS = ADDRESS_BY_KIND["inference_request"]
ZERO_ADDRESS = b"\x00" * 20
ZERO_HASH = b"\x00" * 32


class View(NamedTuple):
    """One view function: its Solidity name, typed inputs and outputs, and what answers it."""

    name: str
    inputs: tuple[tuple[str, str], ...]  # (name, type)
    outputs: tuple[tuple[str, str], ...]
    read: Callable  # (state, *args) -> tuple of outputs

    @property
    def signature(self) -> str:
        return f"{self.name}({','.join(t for _, t in self.inputs)})"

    @property
    def selector(self) -> bytes:
        return function_signature_to_4byte_selector(self.signature)


def read_job(state, job_id: bytes) -> tuple:
    """A job's status and outcome; `exists` false (and zeros) for an unknown id, as a Solidity mapping reads."""
    job = economy.get_job(state, job_id)
    if job is None:
        return False, 0, ZERO_ADDRESS, ZERO_ADDRESS, ZERO_HASH, 0, 0, 0, 0
    return (True, job.status, job.requester, job.worker or ZERO_ADDRESS, job.model_sha256, job.max_tokens,
            job.output_tokens, job.score_ppm, job.created_block)


POOL_VIEWS = (
    View("balanceOf", (("account", "address"),), (("", "uint256"),),
         lambda state, account: (state.get_balance(to_canonical_address(account)),)),
    View("recognitionOf", (("account", "address"),), (("", "uint256"),),
         lambda state, account: (get_recognition(state, to_canonical_address(account)),)),
    View("poolBalance", (), (("", "uint256"),), lambda state: (get_pool_balance(state),)),
    View("issued", (), (("", "uint256"),), lambda state: (get_issued(state),)),
)
JOB_VIEWS = (
    View("getJob", (("jobId", "bytes32"),),
         (("exists", "bool"), ("status", "uint8"), ("requester", "address"), ("worker", "address"),
          ("model", "bytes32"), ("maxTokens", "uint256"), ("outputTokens", "uint256"), ("scorePpm", "uint256"),
          ("createdBlock", "uint256")),
         read_job),
)
# The published contracts: a name for the ABI file, the system address, its views.
CONTRACTS = (("MagicoinPool", POOL_ADDRESS, POOL_VIEWS), ("MagicoinJobs", JOBS_ADDRESS, JOB_VIEWS))
VIEWS_BY_ADDRESS = {address: {view.selector: view for view in views} for _, address, views in CONTRACTS}


def compute_abi() -> dict:
    """The published ABI (docs/abi/magicoin.json): per contract, its address and Solidity JSON ABI.

    Views from here, events (receipt logs) from `chain.events`; a contract may have only events.
    """
    abi = {name: {"address": "0x" + address.hex(), "abi": [encode_view_abi(view) for view in views]}
           for name, address, views in CONTRACTS}
    for name, (address, events) in compute_event_abis().items():
        abi.setdefault(name, {"address": address, "abi": []})["abi"].extend(events)
    return abi


def encode_view_abi(view: View) -> dict:
    return {"type": "function", "name": view.name, "stateMutability": "view",
            "inputs": [{"name": name, "type": kind} for name, kind in view.inputs],
            "outputs": [{"name": name, "type": kind} for name, kind in view.outputs]}


def find_view(to: bytes, data: bytes) -> View:
    """The view that (to, selector) names, or the revert that says why there is none."""
    views = VIEWS_BY_ADDRESS.get(to)
    if views is None:
        raise ExecutionReverted(describe_uncallable(to))
    view = views.get(data[:4])
    if view is None:
        known = ", ".join(v.signature for v in views.values())
        raise ExecutionReverted(f"unknown function selector {encode_data(data[:4])} (this address answers {known})")
    return view


def describe_uncallable(to: bytes) -> str:
    if to == b"":
        return "eth_call needs a `to`: magicoin has no contract creation"
    kind = KIND_BY_ADDRESS.get(to)
    if kind is not None:
        return f"{kind} is a work kind: send it as a transaction; reads go to the pool and jobs addresses"
    if is_system_address(to):
        return "system address with no view functions"
    return "no code at this address: magicoin accounts hold no contracts"


def run_view(view: View, state, arguments: bytes) -> bytes:
    input_types = [kind for _, kind in view.inputs]
    try:
        args = abi_decode(input_types, arguments) if input_types else ()
    except (DecodingError, ValueError, OverflowError) as error:
        raise ExecutionReverted(f"cannot decode the arguments of {view.signature}: {error}") from None
    return abi_encode([kind for _, kind in view.outputs], list(view.read(state, *args)))


@CALL_METHODS.method("eth_call", Param("call", parse_call), Param("block", parse_block_tag, "latest"))
def eth_call(node: NodeAPI, call: dict, tag: BlockTag) -> str:
    if call["value"]:
        raise ExecutionReverted("views take no value")
    view = find_view(call["to"], call["data"])
    return encode_data(run_view(view, get_state(node, tag), call["data"][4:]))
