"""Work events: the receipt logs the chain and the economy emit, their ABI, and the collector they go into.

Every event is a Solidity-style event of a *system contract*: the system
address that holds the records the event is about, so one published ABI entry
(`docs/abi/magicoin.json`, `compute_event_abis`) per contract decodes all of
its events with web3.py's `contract.events.X().process_receipt`, ethers'
`Interface.parseLog` or viem's `decodeEventLog`:

| contract (address)                 | events |
|---|---|
| `MagicoinPool` (`...1000`)         | `Offering`, `Slashed`, `Rewarded` |
| `MagicoinWorkers` (`...1001`)      | `WorkerRegistered` |
| `MagicoinJobs` (`...1002`)         | `JobRequested`, `JobAssigned`, `JobResult`, `JobAttested`, `JobClosed` |
| `MagicoinAnnotations` (`...1005`)  | `AnnotationTaskPosted`, `Annotated`, `LabelRecognised`, `AnnotationTaskClosed` |

A log is `Log(address, [keccak(signature), indexed args...], data)` where data
is the ABI encoding of the other args. Every argument type is static (uint256,
uint8, bool, address, bytes32), so the encoding is one 32-byte word per value,
written here directly (what `eth_abi.encode` produces, checked by the tests)
because replaying a chain encodes every log again.

Collecting. The state transition puts a `LogSink` in the `BlockContext`;
`emit_event(block, EVENT, *values)` appends to it and does nothing when the
context has no sink (a prediction run by the gateway). The transition takes a
transaction's logs into its receipt, and drops them with its state effects
when the transaction is skipped or its work refused (`mark`/`truncate`).

End-of-block events (`finalize_block`: rewards, deadlines, assignments of
waiting jobs, gold tasks) belong to no transaction. Like Polygon's bor does
for state-sync events, they go into one extra *block receipt* appended to the
receipts trie at index len(transactions), only when there are any: status 1,
cumulative gas = the block's gas, the logs and their bloom. So they are
committed in `receipts_root` and a light client rebuilds the trie from
`eth_getBlockReceipts`. The RPC shows it with the synthetic transaction hash
`compute_block_events_hash(number, block_hash)` (keccak of
b"magicoin-block-events" + number (8 bytes) + block hash) and
transactionIndex = the number of transactions.
"""
from __future__ import annotations

from collections.abc import Sequence

from chain.blocks import Log
from chain.transactions import ADDRESS_BY_KIND, POOL_ADDRESS
from primitives.hashing import keccak

BLOCK_EVENTS_DOMAIN = b"magicoin-block-events"
STATIC_TYPES = frozenset({"uint256", "uint8", "bool", "address", "bytes32"})

CONTRACT_ADDRESSES = {
    "MagicoinPool": POOL_ADDRESS,
    "MagicoinWorkers": ADDRESS_BY_KIND["register_worker"],
    "MagicoinJobs": ADDRESS_BY_KIND["inference_request"],
    "MagicoinAnnotations": ADDRESS_BY_KIND["annotation_task"],
}


def encode_word(kind: str, value) -> bytes:
    """One static ABI value as its 32-byte word (addresses and bytes32 as bytes, the rest as ints)."""
    if kind == "address":
        assert len(value) == 20, "an address is 20 bytes"
        return b"\x00" * 12 + value
    if kind == "bytes32":
        assert len(value) == 32, "a bytes32 is 32 bytes"
        return value
    value = int(value)
    assert 0 <= value < (1 << (8 if kind == "uint8" else 256)), f"{kind} out of range"
    return value.to_bytes(32, "big")


class Event:
    """One event of one system contract: its signature, topic and how its values become a log."""

    __slots__ = ("address", "contract", "inputs", "name", "signature", "topic")

    def __init__(self, contract: str, name: str, inputs: Sequence[tuple[str, str, bool]]) -> None:
        assert all(kind in STATIC_TYPES for _, kind, _ in inputs), "events carry static types only"
        assert sum(indexed for _, _, indexed in inputs) <= 3, "at most three indexed arguments"
        self.contract = contract
        self.address = CONTRACT_ADDRESSES[contract]
        self.name = name
        self.inputs = tuple(inputs)
        self.signature = f"{name}({','.join(kind for _, kind, _ in inputs)})"
        self.topic = int.from_bytes(keccak(self.signature.encode()), "big")

    def make_log(self, values: Sequence) -> Log:
        assert len(values) == len(self.inputs), f"{self.name} takes {len(self.inputs)} values"
        topics = [self.topic]
        data = []
        for (_, kind, indexed), value in zip(self.inputs, values):
            word = encode_word(kind, value)
            if indexed:
                topics.append(int.from_bytes(word, "big"))
            else:
                data.append(word)
        return Log(self.address, topics, b"".join(data))

    def compute_abi(self) -> dict:
        return {"type": "event", "name": self.name, "anonymous": False,
                "inputs": [{"name": name, "type": kind, "indexed": indexed} for name, kind, indexed in self.inputs]}


OFFERING = Event("MagicoinPool", "Offering", (
    ("account", "address", True), ("jobId", "bytes32", True), ("amount", "uint256", False)))
SLASHED = Event("MagicoinPool", "Slashed", (
    ("offender", "address", True), ("reporter", "address", True), ("amount", "uint256", False)))
REWARDED = Event("MagicoinPool", "Rewarded", (("account", "address", True), ("amount", "uint256", False)))
WORKER_REGISTERED = Event("MagicoinWorkers", "WorkerRegistered", (
    ("worker", "address", True), ("model", "bytes32", True), ("capacity", "uint256", False)))
JOB_REQUESTED = Event("MagicoinJobs", "JobRequested", (
    ("jobId", "bytes32", True), ("requester", "address", True), ("model", "bytes32", True),
    ("maxTokens", "uint256", False)))
JOB_ASSIGNED = Event("MagicoinJobs", "JobAssigned", (
    ("jobId", "bytes32", True), ("worker", "address", True), ("attempt", "uint256", False),
    ("deadlineBlock", "uint256", False)))
JOB_RESULT = Event("MagicoinJobs", "JobResult", (
    ("jobId", "bytes32", True), ("worker", "address", True), ("outputTokens", "uint256", False),
    ("outputHash", "bytes32", False)))
JOB_ATTESTED = Event("MagicoinJobs", "JobAttested", (
    ("jobId", "bytes32", True), ("attester", "address", True), ("scorePpm", "uint256", False)))
JOB_CLOSED = Event("MagicoinJobs", "JobClosed", (
    ("jobId", "bytes32", True), ("status", "uint8", True), ("scorePpm", "uint256", False)))
ANNOTATION_TASK_POSTED = Event("MagicoinAnnotations", "AnnotationTaskPosted", (
    ("taskId", "bytes32", True), ("requester", "address", True), ("labels", "uint256", False),
    ("annotators", "uint256", False), ("deadlineBlock", "uint256", False)))
ANNOTATED = Event("MagicoinAnnotations", "Annotated", (
    ("taskId", "bytes32", True), ("annotator", "address", True), ("labelIndex", "uint256", False),
    ("weightPpm", "uint256", False)))
LABEL_RECOGNISED = Event("MagicoinAnnotations", "LabelRecognised", (
    ("taskId", "bytes32", True), ("labelIndex", "uint256", False)))
ANNOTATION_TASK_CLOSED = Event("MagicoinAnnotations", "AnnotationTaskClosed", (
    ("taskId", "bytes32", True), ("status", "uint8", True)))

EVENTS = (OFFERING, SLASHED, REWARDED, WORKER_REGISTERED, JOB_REQUESTED, JOB_ASSIGNED, JOB_RESULT, JOB_ATTESTED,
          JOB_CLOSED, ANNOTATION_TASK_POSTED, ANNOTATED, LABEL_RECOGNISED, ANNOTATION_TASK_CLOSED)


def compute_event_abis() -> dict[str, tuple[str, list[dict]]]:
    """Per contract name: (address hex, the ABI entries of its events), for the published ABI file."""
    abis: dict[str, tuple[str, list[dict]]] = {}
    for event in EVENTS:
        _, entries = abis.setdefault(event.contract, ("0x" + event.address.hex(), []))
        entries.append(event.compute_abi())
    return abis


class LogSink:
    """The logs emitted while one block is applied, taken per transaction (and once for the block's end)."""

    __slots__ = ("logs",)

    def __init__(self) -> None:
        self.logs: list[Log] = []

    def mark(self) -> int:
        return len(self.logs)

    def truncate(self, mark: int) -> None:
        """Drop what was emitted since `mark` (the effects it reports were reverted)."""
        del self.logs[mark:]

    def take(self) -> tuple[Log, ...]:
        logs = tuple(self.logs)
        self.logs.clear()
        return logs


def emit_event(block, event: Event, *values) -> None:
    """Append `event` with `values` to the sink of `block` (a `chain.abc.BlockContext`); no sink, no log."""
    sink = block.logs
    if sink is not None:
        sink.logs.append(event.make_log(values))


def take_logs(block) -> tuple[Log, ...]:
    return () if block.logs is None else block.logs.take()


def mark_logs(block) -> int:
    return 0 if block.logs is None else block.logs.mark()


def truncate_logs(block, mark: int) -> None:
    if block.logs is not None:
        block.logs.truncate(mark)


def compute_block_events_hash(number: int, block_hash: bytes) -> bytes:
    """The synthetic transaction hash under which the RPC shows a block receipt's logs."""
    return keccak(BLOCK_EVENTS_DOMAIN + number.to_bytes(8, "big") + block_hash)
