"""Logs over JSON-RPC: log objects as geth shapes them, the filter object, and `eth_getLogs`.

Work events are receipt logs (`chain.events`). A block's logs are, in order,
those of its transactions' receipts and then those of its block receipt (the
end-of-block events), which is shown with the synthetic transaction hash
`chain.events.compute_block_events_hash` and transactionIndex = the number of
transactions; `logIndex` counts across the whole block, as in geth.

The filter object is Ethereum's: `fromBlock`/`toBlock` (tags or numbers,
default "latest") or `blockHash` (not both), `address` (one or a list, at most
`MAX_ADDRESSES`), `topics` (at most 4 positions; each null for any, a topic,
or a list of alternatives, at most `MAX_TOPIC_ALTERNATIVES`). A range wider
than `MAX_BLOCK_RANGE` blocks is refused (-32602) and a query matching more
than `MAX_RESULTS` logs fails with -32005 "query returned more than 10000
results", as Infura and geth-style providers answer, so a client narrows its
range instead of receiving an unbounded answer. A range reaching past the head
is cut at the head (after the range check). Blocks are scanned bloom first: a block without logs costs
one read, a block whose bloom cannot match costs two, and only the others have
their receipts decoded.
"""
from __future__ import annotations

from typing import Any, NamedTuple

from eth_utils import keccak

from chain.blocks import Block, Log, is_bloom_containing
from chain.events import compute_block_events_hash
from node.abc import NodeAPI
from node.rpc_core import (
    BlockTag,
    InvalidParams,
    MethodTable,
    Param,
    RPCError,
    encode_data,
    encode_quantity,
    get_tagged_block,
    parse_address,
    parse_block_tag,
    parse_hash,
    parse_object,
)

MAX_BLOCK_RANGE = 10_000
MAX_RESULTS = 10_000
MAX_ADDRESSES = 256
MAX_TOPICS = 4
MAX_TOPIC_ALTERNATIVES = 64

LOG_METHODS = MethodTable()


class TooManyResults(RPCError):
    """-32005: the query matched more logs than one answer may carry; narrow the range."""

    code = -32005

    def __init__(self, limit: int) -> None:
        super().__init__(f"query returned more than {limit} results", {"limit": limit})


class LogFilter(NamedTuple):
    """What a log must match: an address among `addresses` (empty: any) and each topic position's set."""

    addresses: frozenset[bytes] = frozenset()
    topics: tuple[frozenset[bytes] | None, ...] = ()  # None: any topic in that position


class LogQuery(NamedTuple):
    """A parsed filter object: the criteria and the blocks they apply to."""

    criteria: LogFilter
    from_tag: BlockTag
    to_tag: BlockTag
    block_hash: bytes | None


class BlockLog(NamedTuple):
    log: Log
    block: Block
    tx_hash: bytes
    tx_index: int
    log_index: int


# --- parsing ------------------------------------------------------------------------------------------

def parse_addresses(value: Any) -> frozenset[bytes]:
    if value is None:
        return frozenset()
    if isinstance(value, list):
        if len(value) > MAX_ADDRESSES:
            raise InvalidParams("too many addresses in the filter", got=len(value), expected=f"<= {MAX_ADDRESSES}")
        return frozenset(parse_address(item) for item in value)
    return frozenset((parse_address(value),))


def parse_topic_position(value: Any) -> frozenset[bytes] | None:
    if value is None:
        return None
    if isinstance(value, list):
        if len(value) > MAX_TOPIC_ALTERNATIVES:
            raise InvalidParams("too many alternatives for one topic", got=len(value),
                                expected=f"<= {MAX_TOPIC_ALTERNATIVES}")
        if not value or any(item is None for item in value):
            return None  # an empty list, or null among the alternatives, matches anything (geth)
        return frozenset(parse_hash(item) for item in value)
    return frozenset((parse_hash(value),))


def parse_topics(value: Any) -> tuple[frozenset[bytes] | None, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_TOPICS:
        raise InvalidParams("topics must be a list of at most 4 positions", got=value,
                            expected="[topic0 | [alternatives] | null, ...]")
    topics = tuple(parse_topic_position(item) for item in value)
    while topics and topics[-1] is None:
        topics = topics[:-1]  # trailing wildcards constrain nothing
    return topics


def parse_log_query(value: Any) -> LogQuery:
    """The filter object of eth_getLogs and eth_newFilter."""
    spec = parse_object({} if value is None else value)
    known = {"fromBlock", "toBlock", "blockHash", "address", "topics"}
    if not set(spec) <= known:
        raise InvalidParams("unknown filter fields", got=sorted(set(spec) - known), expected=sorted(known))
    block_hash = None
    if spec.get("blockHash") is not None:
        if spec.get("fromBlock") is not None or spec.get("toBlock") is not None:
            raise InvalidParams("blockHash excludes fromBlock and toBlock", got=sorted(spec),
                                expected="blockHash, or fromBlock/toBlock")
        block_hash = parse_hash(spec["blockHash"])
    from_tag = parse_range_tag(spec.get("fromBlock"))
    to_tag = parse_range_tag(spec.get("toBlock"))
    criteria = LogFilter(parse_addresses(spec.get("address")), parse_topics(spec.get("topics")))
    return LogQuery(criteria, from_tag, to_tag, block_hash)


def parse_range_tag(value: Any) -> BlockTag:
    tag = parse_block_tag("latest" if value is None else value)
    if tag.hash is not None:
        raise InvalidParams("fromBlock/toBlock take a number or a tag; use blockHash for a hash",
                            got=value, expected="a block number or tag")
    return tag


# --- matching -------------------------------------------------------------------------------------------

def is_log_matching(log: Log, criteria: LogFilter) -> bool:
    if criteria.addresses and log.address not in criteria.addresses:
        return False
    if len(criteria.topics) > len(log.topics):
        return False
    for wanted, topic in zip(criteria.topics, log.topics):
        if wanted is not None and topic.to_bytes(32, "big") not in wanted:
            return False
    return True


def is_bloom_matching(bloom: bytes, criteria: LogFilter) -> bool:
    """Whether a block with this bloom may hold a matching log (false: it surely holds none)."""
    if criteria.addresses and not any(is_bloom_containing(bloom, a) for a in criteria.addresses):
        return False
    for wanted in criteria.topics:
        if wanted is not None and not any(is_bloom_containing(bloom, t) for t in wanted):
            return False
    return True


# --- reading ------------------------------------------------------------------------------------------

def get_block_logs(chain, block: Block) -> list[BlockLog]:
    """Every log of `block`: its transactions' receipts in order, then its block receipt's."""
    found: list[BlockLog] = []
    for index, receipt in enumerate(chain.get_receipts(block.hash)):
        if receipt.logs:
            tx_hash = keccak(block.transactions[index])
            for log in receipt.logs:
                found.append(BlockLog(log, block, tx_hash, index, len(found)))
    block_receipt = chain.store.get_block_receipt(block.hash)
    if block_receipt is not None:
        tx_hash = compute_block_events_hash(block.number, block.hash)
        for log in block_receipt.logs:
            found.append(BlockLog(log, block, tx_hash, len(block.transactions), len(found)))
    return found


def encode_log(item: BlockLog) -> dict:
    log = item.log
    return {
        "address": encode_data(log.address),
        "topics": [encode_data(topic.to_bytes(32, "big")) for topic in log.topics],
        "data": encode_data(log.data),
        "blockNumber": encode_quantity(item.block.number),
        "blockHash": encode_data(item.block.hash),
        "transactionHash": encode_data(item.tx_hash),
        "transactionIndex": encode_quantity(item.tx_index),
        "logIndex": encode_quantity(item.log_index),
        "removed": False,  # BFT finality: an imported block is never reorganised away
    }


def get_matching_logs(chain, block: Block, criteria: LogFilter) -> list[dict]:
    """The block's logs that match, bloom first (a block without logs has no bloom stored)."""
    bloom = chain.store.get_logs_bloom(block.hash)
    if bloom is None or not is_bloom_matching(bloom, criteria):
        return []
    return [encode_log(item) for item in get_block_logs(chain, block) if is_log_matching(item.log, criteria)]


def resolve_range(node: NodeAPI, query: LogQuery) -> tuple[int, int]:
    """(first, last) block numbers of a from/to query, cut at the head; first > last when empty.

    The range asked for is bounded before the cut, so a query's validity does not depend on the height.
    """
    head = node.chain.height
    first = resolve_number(node, query.from_tag, head)
    last = resolve_number(node, query.to_tag, head)
    if first <= last:
        validate_range(first, last)
    return first, min(last, head)


def resolve_number(node: NodeAPI, tag: BlockTag, head: int) -> int:
    if tag.number is not None:
        return tag.number  # beyond the head is allowed: nothing there yet
    return get_tagged_block(node, tag).number


def validate_range(first: int, last: int) -> None:
    if last - first + 1 > MAX_BLOCK_RANGE:
        raise InvalidParams("block range too large", got=f"{last - first + 1} blocks",
                            expected=f"at most {MAX_BLOCK_RANGE} blocks")


def get_logs_in_range(node: NodeAPI, criteria: LogFilter, first: int, last: int) -> list[dict]:
    """Matching logs of canonical blocks first..last (inclusive), at most MAX_RESULTS or TooManyResults."""
    chain = node.chain
    found: list[dict] = []
    for number in range(first, last + 1):
        block_hash = chain.store.get_canonical_hash(number)
        bloom = chain.store.get_logs_bloom(block_hash)
        if bloom is None or not is_bloom_matching(bloom, criteria):
            continue  # the block is not decoded at all
        block = chain.get_block_by_hash(block_hash)
        found.extend(encode_log(item) for item in get_block_logs(chain, block) if is_log_matching(item.log, criteria))
        if len(found) > MAX_RESULTS:
            raise TooManyResults(MAX_RESULTS)
    return found


def get_logs(node: NodeAPI, query: LogQuery) -> list[dict]:
    if query.block_hash is not None:
        block = get_tagged_block(node, BlockTag(hash=query.block_hash))
        found = get_matching_logs(node.chain, block, query.criteria)
        if len(found) > MAX_RESULTS:
            raise TooManyResults(MAX_RESULTS)
        return found
    first, last = resolve_range(node, query)
    if first > last:
        return []
    return get_logs_in_range(node, query.criteria, first, last)


@LOG_METHODS.method("eth_getLogs", Param("filter", parse_log_query))
def eth_get_logs(node: NodeAPI, query: LogQuery) -> list[dict]:
    return get_logs(node, query)
