"""The light client: trusts the genesis file (or a checkpoint hash) and verifies everything else.

`LightClient` holds the verified headers and the validator sets it has
checked by hash, and drives an untrusted server through a transport:

- bootstrap: block 0 and the first validator set are computed locally from
  the genesis file (`chain.transition.apply_genesis` on an in-memory state), and
  the server's block 0 must hash the same; or a user-given checkpoint hash is
  trusted and its header and sets are fetched and checked against it;
- `sync_sequential`: every header from the verified head to the target, each
  linked to its parent and carrying a commit of > 2/3 of the set it names
  (which must be the set its parent announced, fetched and hash-checked when it
  changes at an epoch boundary);
- `sync_skipping`: CometBFT-style skipping, a far header accepted when > 1/3 of
  the trusted set signed it (and > 2/3 of its own), otherwise bisection;
- `get_header`: a header below the verified head that a skip jumped over is
  verified backwards by parent hashes from the nearest verified header above it;
- `get_account`: eth_getProof with storage key 0, checked against the verified
  state root (`node.light.proofs`);
- `get_block`: a block's transactions and receipts, checked against the
  verified header's roots. Receipts are rebuilt from the server's receipt
  objects, logs included (address, topics, data; the bloom recomputed here,
  and the server's `logsBloom` must equal it), and from the block receipt
  of end-of-block events that `eth_getBlockReceipts` lists last when the
  block has one (`chain.events`), so its events are verified too.

Every method either returns verified data or raises a `LightClientError`.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, NamedTuple, Sequence

import rlp
import trio
from eth.db.atomic import AtomicDB
from eth.vm.forks.london.transactions import LondonTransactionBuilder

from chain.blocks import (
    Header,
    Log,
    Receipt,
    compute_receipts_root,
    compute_transactions_root,
    decode_header,
    make_receipt,
)
from chain.chain import decode_validator_set
from chain.exceptions import ChainError
from chain.state import State
from chain.transactions import decode_transaction
from chain.transition import apply_genesis
from consensus.validators import ValidatorSet, compute_validator_set
from genesis import Genesis
from node.light.exceptions import (
    BlockBodyMismatch,
    ForgedHeader,
    GenesisMismatch,
    HeaderWithheld,
    InvalidHeaderCommit,
    LightClientError,
    NotVerified,
    MalformedResponse,
    RPCFailure,
    WrongValidatorSet,
)
from node.light.proofs import VerifiedAccount, parse_hex_bytes, parse_hex_int, verify_account_proof
from node.light.transport import TransportAPI
from primitives.limits import decode_rlp_bounded, validate_rlp_shape
from node.light.verify import (
    CommitSignature,
    CommitView,
    NotEnoughTrust,
    validate_adjacent,
    validate_header_commit,
    validate_header_hash,
    validate_parent_link,
    validate_skip,
    validate_validator_set,
)

log = logging.getLogger("magicoin.light")

WINDOW = 48  # heights per batch: a header and a commit each, under the server's 100-call batch limit
RANGE_WINDOW = 128  # heights per muagic_getHeaders call (the server allows up to 256)
MAX_KEPT_HEADERS = 50_000


class LightStats(NamedTuple):
    head: int
    headers_verified: int  # checked adjacent, with a commit
    headers_skipped_to: int  # accepted by a skip
    headers_backfilled: int  # checked backwards by parent hash
    bisections: int
    commits_checked: int
    proofs_checked: int
    validator_sets_fetched: int


def compute_genesis_header(genesis: Genesis) -> tuple[Header, ValidatorSet]:
    """Block 0 and the first validator set, computed from the genesis file alone."""
    block = apply_genesis(State(AtomicDB()), genesis)
    validator_set = compute_validator_set([(v.address, v.recognition) for v in genesis.validators],
                                          genesis.params.validator_threshold, genesis.params.validator_cap)
    validate_validator_set(validator_set, block.header.validators_hash, 0)
    return block.header, validator_set


def quantity(number: int) -> str:
    return hex(number)


class LightClient:
    """Verified headers (`head`, `headers`), checked validator sets by hash, and the verified reads.

    Build it with `from_genesis` or `from_checkpoint`; every public coroutine returns
    verified data or raises a `LightClientError`.
    """

    def __init__(self, genesis: Genesis, transport: TransportAPI, trusted: Header,
                 validator_sets: dict[bytes, ValidatorSet], *, max_kept_headers: int = MAX_KEPT_HEADERS) -> None:
        self.genesis = genesis
        self.chain_id = genesis.chain_id
        self.transport = transport
        self.max_kept_headers = max_kept_headers
        self.headers: OrderedDict[int, Header] = OrderedDict()
        self.validator_sets = dict(validator_sets)
        self.head = trusted
        self.root = trusted  # the header trusted without verification (genesis or the checkpoint)
        self.remember(trusted)
        self.sync_lock = trio.Lock()
        self.range_supported = True  # muagic_getHeaders, until the server says it has no such method
        self.claimed_height: int | None = None  # the server's last claimed head: a target, never trusted
        self._counts = dict(headers_verified=0, headers_skipped_to=0, headers_backfilled=0, bisections=0,
                            commits_checked=0, proofs_checked=0, validator_sets_fetched=0)

    # --- bootstrap ------------------------------------------------------------------------------

    @classmethod
    async def from_genesis(cls, genesis: Genesis, transport: TransportAPI, **kwargs) -> "LightClient":
        header, validator_set = compute_genesis_header(genesis)
        client = cls(genesis, transport, header, {header.validators_hash: validator_set}, **kwargs)
        await client.validate_server_genesis()
        return client

    @classmethod
    async def from_checkpoint(cls, genesis: Genesis, transport: TransportAPI, checkpoint: bytes,
                              **kwargs) -> "LightClient":
        """Trust the block whose hash the user gives (weak subjectivity), and follow the chain from it."""
        results = await transport.call_batch([("muagic_getHeader", ["0x" + checkpoint.hex()]),
                                              ("muagic_getValidatorSet", ["0x" + checkpoint.hex()])])
        result = results[0]
        if not isinstance(result, dict):
            raise HeaderWithheld("checkpoint header", -1, got=str(result)[:120])
        header = parse_header(result, parse_claimed_number(result.get("number", "0x0")))
        if header.hash != checkpoint:
            raise ForgedHeader(header.number, "hash (the checkpoint)", header.hash, checkpoint)
        validator_set = parse_validator_set(results[1], header.validators_hash, header.number)
        client = cls(genesis, transport, header, {header.validators_hash: validator_set}, **kwargs)
        return client

    async def validate_server_genesis(self) -> None:
        result = (await self.call([("muagic_getHeader", ["0x0"])]))[0]
        if not isinstance(result, dict) or "hash" not in result:
            raise HeaderWithheld("header", 0, got=str(result)[:120])
        try:
            got = parse_hex_bytes(result["hash"])
        except ValueError:
            raise ForgedHeader(0, "hash", str(result["hash"])[:120], "0x-hex block hash") from None
        if got != self.root.hash:
            raise GenesisMismatch("server's block 0 is not the genesis file's block 0", got=got,
                                  expected=self.root.hash)

    # --- reading ----------------------------------------------------------------------------------

    @property
    def stats(self) -> LightStats:
        return LightStats(head=self.head.number, **self._counts)

    def remember(self, header: Header) -> None:
        self.headers[header.number] = header
        while len(self.headers) > self.max_kept_headers:
            oldest = next(iter(self.headers))
            if oldest in (self.head.number, self.root.number):
                self.headers.move_to_end(oldest)
                continue
            del self.headers[oldest]

    def accept(self, header: Header) -> None:
        self.head = header
        self.remember(header)

    async def call(self, calls: Sequence[tuple[str, list]]) -> list[Any]:
        return await self.transport.call_batch(calls)

    async def get_server_height(self) -> int:
        """The server's claimed head: only a target to verify towards, never shown as such."""
        result = (await self.call([("eth_blockNumber", [])]))[0]
        if isinstance(result, RPCFailure):
            raise result
        try:
            height = parse_hex_int(result)
        except ValueError:
            raise MalformedResponse("eth_blockNumber is not a quantity", got=str(result)[:120],
                                    expected="0x-hex") from None
        self.claimed_height = height
        return height

    async def get_validator_set(self, validators_hash: bytes, height: int) -> ValidatorSet:
        """The set named by `validators_hash`, which header `height` names: cached, or fetched and hash-checked."""
        known = self.validator_sets.get(validators_hash)
        if known is not None:
            return known
        result = (await self.call([("muagic_getValidatorSet", [quantity(height)])]))[0]
        validator_set = parse_validator_set(result, validators_hash, height)
        self._counts["validator_sets_fetched"] += 1
        self.validator_sets[validators_hash] = validator_set
        return validator_set

    # --- header sync ------------------------------------------------------------------------------

    async def sync(self, target: int | None = None, *, skipping: bool = True) -> Header:
        """Verify up to `target` (default: the server's head, or the block below it if the head's
        commit is not stored yet). Returns the verified head."""
        async with self.sync_lock:
            if target is None:
                target = await self.get_server_height()
                if target > self.head.number and not await self.has_commit(target):
                    target -= 1
            if target <= self.head.number:
                return self.head
            if skipping:
                await self._sync_skipping(target)
            else:
                await self._sync_sequential(target)
            return self.head

    async def has_commit(self, height: int) -> bool:
        result = (await self.call([("muagic_getCommit", [quantity(height)])]))[0]
        return isinstance(result, dict)

    async def sync_sequential(self, target: int) -> Header:
        return await self.sync(target, skipping=False)

    async def sync_skipping(self, target: int) -> Header:
        return await self.sync(target, skipping=True)

    async def _sync_sequential(self, target: int) -> None:
        """Fetch windows of headers and commits while the previous window is verified in a worker thread.

        Verification (signature recovery, in C with the GIL released) and the server's work then overlap.
        """
        send, receive = trio.open_memory_channel(1)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self.fetch_windows, self.head.number + 1, target, send)
                async with receive:
                    async for heights, results in receive:
                        await self.verify_window(heights, results)
        except BaseExceptionGroup as group:
            raise get_single_error(group) from None

    async def fetch_windows(self, first: int, target: int, send: trio.MemorySendChannel) -> None:
        async with send:
            while first <= target:
                heights = range(first, min(target, first + RANGE_WINDOW - 1) + 1)
                results = await self.fetch_range(heights) if self.range_supported else None
                if results is None:
                    heights = heights[:WINDOW]
                    calls = []
                    for height in heights:
                        calls += [("muagic_getHeader", [quantity(height)]), ("muagic_getCommit", [quantity(height)])]
                    results = await self.call(calls)
                await send.send((heights, results))
                first = heights[-1] + 1

    async def fetch_range(self, heights: range) -> list | None:
        """[header, commit, header, commit, ...] answers for `heights` from one muagic_getHeaders call,
        laid out as the per-height calls would give them; None if the server lacks the method.

        Nothing is trusted here: a missing or misnumbered item becomes a withheld header (or commit)
        at that height, and `verify_sequence` checks every header and commit as it would otherwise.
        """
        result = (await self.call([("muagic_getHeaders", [quantity(heights[0]), quantity(len(heights))])]))[0]
        if isinstance(result, RPCFailure) and is_method_not_found(result):
            log.info("server has no muagic_getHeaders; fetching headers one call each")
            self.range_supported = False
            return None
        items = result if isinstance(result, list) else []
        results: list[Any] = []
        for index, height in enumerate(heights):
            item = items[index] if index < len(items) else None
            if not isinstance(item, dict) or item.get("number") != quantity(height):
                results += [result if isinstance(result, RPCFailure) else None, None]
                continue
            commit = item.get("commit")
            results += [item, {"rlp": commit} if commit is not None else None]
        return results

    async def verify_window(self, heights: range, results: list) -> None:
        index = 0
        while index < len(heights):
            verified, missing_set, error = await trio.to_thread.run_sync(
                verify_sequence, self.head, heights[index:], results[2 * index:], self.validator_sets, self.chain_id)
            for header in verified:
                self._counts["commits_checked"] += 1
                self._counts["headers_verified"] += 1
                self.accept(header)
            if error is not None:
                raise error  # after keeping the verified prefix: everything below the lie is still true
            index += len(verified)
            if missing_set is not None:
                # An epoch boundary announced a new set: fetch it by the height that names it, check its hash.
                await self.get_validator_set(missing_set, heights[index])

    async def _sync_skipping(self, target: int) -> None:
        pending = [target]
        while self.head.number < target:
            height = pending[-1]
            header, commit, header_set = await self.fetch_verifiable(height)
            trusted = self.head
            trusted_set = await self.get_validator_set(trusted.next_validators_hash, trusted.number + 1)
            try:
                validate_skip(trusted, trusted_set, header, header_set, commit, self.chain_id)
            except NotEnoughTrust as reason:
                log.debug("bisecting: %s", reason)
                self._counts["bisections"] += 1
                pending.append((trusted.number + height) // 2)
                continue
            self._counts["commits_checked"] += 1
            self._counts["headers_skipped_to"] += 1
            self.accept(header)
            pending.pop()

    async def fetch_verifiable(self, height: int) -> tuple[Header, CommitView, ValidatorSet]:
        """A header, its commit and the set it names (hash-checked), in one batch."""
        tag = [quantity(height)]
        results = await self.call([("muagic_getHeader", tag), ("muagic_getCommit", tag),
                                   ("muagic_getValidatorSet", tag)])
        header = parse_header(results[0], height)
        commit = parse_commit(results[1], height)
        validator_set = self.validator_sets.get(header.validators_hash)
        if validator_set is None:
            validator_set = parse_validator_set(results[2], header.validators_hash, height)
            self._counts["validator_sets_fetched"] += 1
            self.validator_sets[header.validators_hash] = validator_set
        return header, commit, validator_set

    # --- verified reads -----------------------------------------------------------------------------

    async def get_header(self, height: int | None = None) -> Header:
        """The verified header at `height` (default: the verified head)."""
        if height is None:
            return self.head
        if height in self.headers:
            return self.headers[height]
        if height > self.head.number:
            raise NotVerified(f"block {height} is beyond the verified head", got=height,
                              expected=f"<= {self.head.number}")
        if height < self.root.number:
            raise NotVerified(f"block {height} is below the trusted checkpoint", got=height,
                              expected=f">= {self.root.number}")
        return await self.backfill(height)

    async def backfill(self, height: int) -> Header:
        """Verify headers below the nearest verified one by parent hashes, down to `height`."""
        above = min(number for number in self.headers if number > height)
        child = self.headers[above]
        while child.number > height:
            low = max(height, child.number - WINDOW * 2)
            heights = list(range(child.number - 1, low - 1, -1))
            results = await self.call([("muagic_getHeader", [quantity(n)]) for n in heights])
            for result, number in zip(results, heights):
                parent = parse_header(result, number)
                validate_parent_link(child, parent)
                self._counts["headers_backfilled"] += 1
                self.remember(parent)
                child = parent
        return child

    async def get_account(self, address: bytes, height: int | None = None) -> VerifiedAccount:
        """Nonce, balance and recognition of `address`, proven against the verified state root."""
        header = await self.get_header(height)
        result = (await self.call([("eth_getProof", ["0x" + address.hex(), ["0x0"], quantity(header.number)])]))[0]
        if isinstance(result, RPCFailure) or result is None:
            raise HeaderWithheld("account proof", header.number, got=str(result)[:200])
        account = verify_account_proof(address, header.number, header.state_root, result)
        self._counts["proofs_checked"] += 1
        return account

    async def get_block(self, height: int | None = None) -> "VerifiedBlock":
        """The header with its transactions and gas used, each checked against the header's roots."""
        header = await self.get_header(height)
        tag = quantity(header.number)
        results = await self.call([("eth_getBlockByNumber", [tag, True]), ("eth_getBlockReceipts", [tag])])
        block, receipts = results
        if not isinstance(block, dict):
            raise HeaderWithheld("block body", header.number, got=str(block)[:120])
        items = block.get("transactions", [])
        if not isinstance(items, list):
            raise BlockBodyMismatch(header.number, "transactions", str(items)[:120], "a list of transactions")
        raws = [encode_transaction_json(item, header.number) for item in items]
        root = compute_transactions_root(raws)
        if root != header.transactions_root:
            raise BlockBodyMismatch(header.number, "transactions_root", root, header.transactions_root)
        transactions = []
        for raw in raws:
            try:
                transactions.append(decode_transaction(raw, self.chain_id, self.genesis.params.max_payload_size))
            except ChainError as error:
                raise BlockBodyMismatch(header.number, "transactions", str(error), "valid transactions") from None
        # Always: a block without transactions may still have a block receipt of end-of-block events.
        gas_used = verify_receipts(header, receipts)
        return VerifiedBlock(header, tuple(transactions), gas_used)


class VerifiedBlock(NamedTuple):
    header: Header
    transactions: tuple
    gas_used: int


def verify_sequence(trusted: Header, heights: Sequence[int], results: Sequence[Any],
                    validator_sets: dict[bytes, ValidatorSet], chain_id: int
                    ) -> tuple[list[Header], bytes | None, LightClientError | None]:
    """Verify consecutive (header, commit) answers from `trusted` on; pure, so it can run in a thread.

    Returns the verified prefix, and either the validators_hash of a set not yet fetched that the
    next header names, or the error that stopped verification, or neither when all verified.
    """
    verified: list[Header] = []
    try:
        for index, height in enumerate(heights):
            header = parse_header(results[2 * index], height)
            commit = parse_commit(results[2 * index + 1], height)
            validate_adjacent(trusted, header)
            validator_set = validator_sets.get(header.validators_hash)
            if validator_set is None:
                return verified, header.validators_hash, None
            validate_header_commit(header, commit, validator_set, chain_id)
            verified.append(header)
            trusted = header
    except LightClientError as error:
        return verified, None, error
    return verified, None, None


def is_method_not_found(failure: RPCFailure) -> bool:
    error = failure.got
    return isinstance(error, dict) and error.get("code") == -32601


def get_single_error(group: BaseExceptionGroup) -> BaseException:
    """The one error a nursery of fetcher and verifier failed with (the other task is only cancelled)."""
    errors = [error for error in flatten(group) if not isinstance(error, trio.Cancelled)]
    return errors[0] if errors else group


def flatten(group: BaseExceptionGroup) -> list[BaseException]:
    errors: list[BaseException] = []
    for error in group.exceptions:
        errors += flatten(error) if isinstance(error, BaseExceptionGroup) else [error]
    return errors


# --- decoding what the server sent ------------------------------------------------------------------

def parse_header(result: Any, height: int) -> Header:
    """A muagic_getHeader answer as a header whose RLP hashes to the hash claimed, at `height`."""
    if not isinstance(result, dict):
        raise HeaderWithheld("header", height, got=str(result)[:120])
    try:
        header = decode_header(parse_hex_bytes(result["rlp"]))
        claimed = parse_hex_bytes(result["hash"])
    except (KeyError, ValueError, ChainError) as error:
        raise ForgedHeader(height, "rlp", str(error)[:120], "rlp(Header)") from None
    validate_header_hash(header, claimed, height)
    return header


def parse_commit(result: Any, height: int) -> CommitView:
    """A muagic_getCommit answer's RLP as a commit, its shape checked as `consensus.votes.Commit`'s sedes would."""
    if not isinstance(result, dict):
        raise HeaderWithheld("commit", height, got=str(result)[:120])
    try:
        fields = decode_rlp_bounded(parse_hex_bytes(result["rlp"]), strict=True)
        number, round_, block_hash, signatures = fields
        view = CommitView(decode_int(number), decode_int(round_), block_hash,
                          tuple(CommitSignature(validator, signature) for validator, signature in signatures))
        if not isinstance(block_hash, bytes) or len(block_hash) != 32:
            raise ValueError("block_hash is not 32 bytes")
        for sig in view.signatures:
            if not (isinstance(sig.validator, bytes) and len(sig.validator) == 20
                    and isinstance(sig.signature, bytes) and len(sig.signature) == 65):
                raise ValueError("a signature is not [20-byte address, 65-byte signature]")
        return view
    except (KeyError, ValueError, TypeError, rlp.exceptions.RLPException) as error:
        raise InvalidHeaderCommit(height, "undecodable commit", str(error)[:120], "rlp(Commit)") from None


def parse_claimed_number(value: Any) -> int:
    try:
        return parse_hex_int(value)
    except ValueError:
        raise MalformedResponse("block number is not a quantity", got=str(value)[:120], expected="0x-hex") from None


def decode_int(value: Any) -> int:
    if not isinstance(value, bytes) or value[:1] == b"\x00":
        raise ValueError("not a canonical RLP integer")
    return int.from_bytes(value, "big")


def parse_validator_set(result: Any, expected_hash: bytes, height: int) -> ValidatorSet:
    if not isinstance(result, dict):
        raise HeaderWithheld("validator set", height, got=str(result)[:120])
    try:
        encoded = parse_hex_bytes(result["rlp"])
        validate_rlp_shape(encoded)  # decode_validator_set is plain rlp.decode: bound it first
        validator_set = decode_validator_set(encoded)
    except (KeyError, ValueError, TypeError, rlp.exceptions.RLPException, LightClientError) as error:
        raise WrongValidatorSet(height, str(error)[:120].encode(), expected_hash) from None
    except Exception as error:  # noqa: BLE001 - InvalidValidatorSet and friends: any undecodable set is wrong
        raise WrongValidatorSet(height, str(error)[:120].encode(), expected_hash) from None
    validate_validator_set(validator_set, expected_hash, height)
    return validator_set


def encode_transaction_json(item: Any, height: int) -> bytes:
    """The raw type-2 transaction a full transaction object stands for (its hash is then ours, not the server's)."""
    if not isinstance(item, dict):
        raise BlockBodyMismatch(height, "transactions", str(item)[:120], "full type-2 transaction objects")
    try:
        tx = LondonTransactionBuilder.new_dynamic_fee_transaction(
            chain_id=parse_hex_int(item["chainId"]), nonce=parse_hex_int(item["nonce"]),
            max_priority_fee_per_gas=parse_hex_int(item["maxPriorityFeePerGas"]),
            max_fee_per_gas=parse_hex_int(item["maxFeePerGas"]), gas=parse_hex_int(item["gas"]),
            to=parse_hex_bytes(item["to"]), value=parse_hex_int(item["value"]), data=parse_hex_bytes(item["input"]),
            access_list=[], y_parity=parse_hex_int(item.get("yParity", item["v"])), r=parse_hex_int(item["r"]),
            s=parse_hex_int(item["s"]))
        return tx.encode()
    except (KeyError, TypeError, ValueError, rlp.exceptions.RLPException) as error:
        raise BlockBodyMismatch(height, "transactions", str(error)[:120], "full type-2 transaction objects") from None


def verify_receipts(header: Header, receipts: Any) -> int:
    """Gas used by the block, from receipts whose root is the header's receipts_root."""
    if not isinstance(receipts, list):
        raise HeaderWithheld("receipts", header.number, got=str(receipts)[:120])
    try:
        rebuilt = [rebuild_receipt(r) for r in receipts]
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise BlockBodyMismatch(header.number, "receipts_root", str(error)[:120], "receipt objects") from None
    root = compute_receipts_root(rebuilt)
    if root != header.receipts_root:
        raise BlockBodyMismatch(header.number, "receipts_root", root, header.receipts_root)
    return rebuilt[-1].cumulative_gas_used if rebuilt else 0


MAX_RECEIPT_LOGS = 1024
MAX_LOG_DATA = 4096


def rebuild_receipt(item: Any) -> Receipt:
    """The typed receipt a receipt object stands for; its bloom computed from its logs, never taken from it."""
    logs = item.get("logs", [])
    if not isinstance(logs, list) or len(logs) > MAX_RECEIPT_LOGS:
        raise ValueError(f"logs must be a list of at most {MAX_RECEIPT_LOGS}")
    receipt = make_receipt(parse_hex_int(item["status"]) == 1, parse_hex_int(item["cumulativeGasUsed"]),
                           [rebuild_log(log) for log in logs])
    claimed_bloom = item.get("logsBloom")
    if claimed_bloom is not None and parse_hex_bytes(claimed_bloom) != receipt.logs_bloom:
        raise ValueError("logsBloom is not the bloom of the receipt's logs")
    return receipt


def rebuild_log(item: Any) -> Log:
    address = parse_hex_bytes(item["address"])
    topics = item["topics"]
    data = parse_hex_bytes(item["data"])
    if len(address) != 20 or not isinstance(topics, list) or len(topics) > 4 or len(data) > MAX_LOG_DATA:
        raise ValueError("a log has a 20-byte address, at most 4 topics and bounded data")
    words = [parse_hex_bytes(topic) for topic in topics]
    if any(len(word) != 32 for word in words):
        raise ValueError("a topic is 32 bytes")
    return Log(address, [int.from_bytes(word, "big") for word in words], data)
