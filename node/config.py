"""Node configuration: a TOML file (`--config FILE`, read with tomllib) with geth-style flags overriding it.

Keys use the flag names. In TOML they may be written flat (`"http.port" = 8545`)
or as tables (`[http]` then `port = 8545`); both flatten to `http.port`.
Also owns reading the validator key: a v3 keystore (with `--password-file`)
or, for devnets, a file holding the raw key in hex.
"""
from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from genesis import DEVNET_GENESIS_PATH
from genesis.keys import MAX_KEYSTORE_SIZE, decode_keystore
from node.exceptions import ConfigError, KeyFileError
from primitives.limits import BoundedInputError, InputTooLarge, read_bounded_file

# flag name -> NodeConfig attribute
FLAG_NAMES = {
    "datadir": "datadir",
    "genesis": "genesis",
    "http": "http_enabled",
    "http.addr": "http_addr",
    "http.port": "http_port",
    "p2p.addr": "p2p_addr",
    "p2p.port": "p2p_port",
    "bootnodes": "bootnodes",
    "p2p.ban-exempt": "p2p_ban_exempt",
    "validator-key": "validator_key",
    "password-file": "password_file",
    "metrics": "metrics",
    "metrics.addr": "metrics_addr",
    "metrics.port": "metrics_port",
    "model": "model",
    "verify-models": "verify_models",
    "worker": "worker",
    "worker.capacity": "worker_capacity",
    "worker.threads": "worker_threads",
    "worker.gpu-layers": "worker_gpu_layers",
    "worker.ctx": "worker_ctx",
    "worker.batch": "worker_batch",
    "worker.backend": "worker_backend",
    "worker.backend-model": "worker_backend_model",
    "block-interval": "block_interval",
    "log.level": "log_level",
    "log.format": "log_format",
    "consensus.timeouts-ms": "timeouts_ms",
    "consensus.adaptive-timeouts": "adaptive_timeouts",
    "http.max-concurrency": "http_max_concurrency",
    "http.max-queue": "http_max_queue",
    "http.max-per-client": "http_max_per_client",
    "http.rate-limit": "http_rate_limit",
    "http.burst": "http_burst",
    "http.on-loop": "http_on_loop",
    "http.front": "http_front",
    "http.server-rate-limit": "http_server_rate_limit",
}


@dataclass(frozen=True)
class NodeConfig:
    datadir: Path = Path("./datadir")
    genesis: Path = DEVNET_GENESIS_PATH
    http_enabled: bool = True
    http_addr: str = "127.0.0.1"
    http_port: int = 8545
    p2p_addr: str = "127.0.0.1"
    p2p_port: int = 30303
    bootnodes: tuple[str, ...] = ()
    # Addresses a peer's ban never extends to (its key is still banned): co-located nodes, or a NAT many
    # honest peers share. The node's own p2p address is always exempt.
    p2p_ban_exempt: tuple[str, ...] = ()
    validator_key: Path | None = None
    password_file: Path | None = None
    metrics: bool = False
    metrics_addr: str = "127.0.0.1"
    metrics_port: int = 6060
    model: str | None = None  # a GGUF path or a name inference.models knows; None: the default model
    # More models (GGUF paths, or "default") loaded only to audit jobs on them; declared on chain (declare_models).
    verify_models: tuple[str, ...] = ()
    worker: bool = False  # serve inference jobs, audits and annotations with the local model
    # Tokens/s the worker declares on chain; 0: measure a probe job at start-up. Declare it on a
    # machine whose load at start-up is not its load in service (the probe would under-read).
    worker_capacity: int = 0
    worker_threads: int = 0  # llama.cpp threads for the model; 0: every core but one, at least 1
    worker_gpu_layers: int = 0  # layers offloaded to a GPU (needs a GPU build of llama.cpp); 0: CPU only
    worker_ctx: int = 0  # llama context size; 0: the protocol's window (2048), and never less than it
    worker_batch: int = 0  # llama batch size (prefill chunk); 0: 512
    # Where jobs are generated: "local" (the in-process model) or "openai:URL" (an OpenAI-compatible
    # server, e.g. openai:http://127.0.0.1:11434/v1), checked at start against the local model.
    worker_backend: str = "local"
    worker_backend_model: str | None = None  # the model's name on the backend; None: the first it lists
    block_interval: float = 0.5  # seconds between blocks when nothing forces a new round
    log_level: str = "info"
    log_format: str = "json"
    timeouts_ms: tuple[int, int, int, int] = (3000, 1000, 1000, 500)  # propose, prevote, precommit, delta
    # Shorten each timeout from observed proposal delays and proposer liveness (consensus.pacing); the
    # timeouts above are then ceilings. false: always wait the configured values.
    adaptive_timeouts: bool = True
    # JSON-RPC admission (node.rpc_admission.RPCLimits; 0 disables a limit): worker threads, requests
    # queued beyond them, requests in flight per client IP, tokens/s per client IP and its bucket's depth.
    http_max_concurrency: int = 2
    http_max_queue: int = 64
    http_max_per_client: int = 32
    http_rate_limit: float = 2000.0
    http_burst: float = 4000.0
    http_on_loop: bool = False  # the pre-issue-14 server on the consensus loop, for benchmark baselines only
    # Tokens per second for all clients together, so many clients cannot add up to more than the node's
    # share of the CPU (0: no limit).
    http_server_rate_limit: float = 2000.0
    # Where HTTP is parsed and admitted: "process" (node.rpc_front, a process of its own at a lower CPU
    # priority, so no request takes the consensus loop's GIL) or "thread" (a thread of the node's process).
    http_front: str = "process"


# --- the TOML file ------------------------------------------------------------------------------
# tomllib recurses on nested arrays and inline tables and takes time quadratic in a dotted key's length
# (30,000 dots: 17 s), so the text is bounded before it is parsed: its size, then (outside strings and
# comments) the nesting of brackets and braces and the dots on any one line. A real config file is a
# few hundred bytes, two levels deep, with at most a few dots per line.
MAX_CONFIG_FILE = 64 * 1024
MAX_CONFIG_DEPTH = 8
MAX_CONFIG_DOTS_PER_LINE = 32
MAX_CONFIG_STRING = 4096  # characters in any string value (a path, an enode, a URL)
MAX_CONFIG_LIST = 256  # items in a list value (bootnodes, verify-models)

# Strings and comments, removed before the structure is measured. A multi-line basic string is cut at
# its first `"""` even when escaped; that only shows more structure than there is (refuses, never admits).
_TOML_STRINGS_AND_COMMENTS = re.compile(
    r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'|"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'|#[^\n]*')


def compute_toml_shape(text: str) -> tuple[int, int]:
    """(deepest bracket/brace nesting, most dots on one line), outside strings and comments; linear, no recursion."""
    structure = _TOML_STRINGS_AND_COMMENTS.sub(" ", text)
    depth = deepest = 0
    for char in structure:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    dots = max((line.count(".") for line in structure.splitlines()), default=0)
    return deepest, dots


def validate_toml_shape(text: str, path: Path) -> None:
    deepest, dots = compute_toml_shape(text)
    if deepest > MAX_CONFIG_DEPTH:
        raise ConfigError(f"config file {path} nested too deeply", got=f"{deepest} levels of [ or {{",
                          expected=f"at most {MAX_CONFIG_DEPTH}")
    if dots > MAX_CONFIG_DOTS_PER_LINE:
        raise ConfigError(f"config file {path} has a dotted key too long", got=f"{dots} dots on one line",
                          expected=f"at most {MAX_CONFIG_DOTS_PER_LINE}")


def flatten_toml(table: Mapping[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    # The shape scan bounds the depth already; the explicit check keeps this recursion bounded on its own.
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError("config tables nested too deeply", got=prefix.rstrip("."),
                          expected=f"at most {MAX_CONFIG_DEPTH} levels")
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if name in FLAG_NAMES and "enabled" in value:
                flat[name] = value["enabled"]  # e.g. [metrics] enabled = true
                value = {k: v for k, v in value.items() if k != "enabled"}
            flat.update(flatten_toml(value, name + ".", depth + 1))
        else:
            flat[name] = value
    return flat


def load_toml(path: Path) -> dict[str, Any]:
    """The file's settings, flattened to flag names; ConfigError (got/expected) for anything else."""
    try:
        raw = read_bounded_file(path, MAX_CONFIG_FILE)
    except OSError as error:
        raise ConfigError(f"cannot read config file: {error}", got=str(path), expected="a readable TOML file") from None
    except InputTooLarge:
        raise ConfigError(f"config file {path} too large", got=f"more than {MAX_CONFIG_FILE} bytes",
                          expected=f"at most {MAX_CONFIG_FILE} bytes") from None
    return decode_toml(raw, path)


def decode_toml(raw: bytes, path: Path | str = "<config>") -> dict[str, Any]:
    """A config file's bytes, bounded (size, shape) then parsed and flattened; ConfigError for anything else."""
    if len(raw) > MAX_CONFIG_FILE:
        raise ConfigError(f"config file {path} too large", got=f"{len(raw)} bytes",
                          expected=f"at most {MAX_CONFIG_FILE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"config file {path} is not UTF-8", got=f"byte {error.start}",
                          expected="UTF-8 TOML (TOML 1.0 requires it)") from None
    validate_toml_shape(text, path)
    try:
        return flatten_toml(tomllib.loads(text))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"invalid TOML: {error}", got=str(path), expected="a TOML file") from None
    except RecursionError:  # cannot happen under the shape bound; kept so nothing untyped escapes
        raise ConfigError("config file nested too deeply", got=str(path),
                          expected=f"at most {MAX_CONFIG_DEPTH} levels") from None


def coerce(attribute: str, value: Any) -> Any:
    """Turn a TOML or flag value into the attribute's type, or raise ConfigError saying which key."""
    validate_value_size(attribute, value)
    default = NodeConfig.__dataclass_fields__[attribute].default
    try:
        if isinstance(value, (dict, list, tuple)) and attribute not in LIST_ATTRIBUTES:
            raise TypeError(value)  # e.g. `http.port = [1]`: never silently truthy or the first item
        if attribute in ("datadir", "genesis", "validator_key", "password_file"):
            return Path(value) if value not in (None, "") else None
        if attribute == "timeouts_ms":
            items = value.split(",") if isinstance(value, str) else list(value)
            timeouts = tuple(int(item) for item in items)
            if len(timeouts) != 4 or min(timeouts) < 0:
                raise ValueError(value)
            return timeouts
        if attribute in ("bootnodes", "verify_models", "p2p_ban_exempt"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(item.strip() for item in items if item.strip())
        if isinstance(default, bool):
            if isinstance(value, str):
                return value.lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(default, int):
            if isinstance(value, (bool, float)):
                raise TypeError(value)  # `true` or `1.5` for a count is a mistake, not 1
            return int(value)
        if isinstance(default, float):
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        return value if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"bad value for {get_flag_name(attribute)}", got=value,
                          expected=type(default).__name__) from None


LIST_ATTRIBUTES = ("timeouts_ms", "bootnodes", "verify_models", "p2p_ban_exempt")


def validate_value_size(attribute: str, value: Any) -> None:
    """Strings and lists from a file or a flag are bounded before anything iterates them."""
    if isinstance(value, str) and len(value) > MAX_CONFIG_STRING * (MAX_CONFIG_LIST if attribute in LIST_ATTRIBUTES
                                                                    else 1):
        raise ConfigError(f"value of {get_flag_name(attribute)} too long", got=f"{len(value)} characters",
                          expected=f"at most {MAX_CONFIG_STRING} per item")
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_CONFIG_LIST:
            raise ConfigError(f"too many items in {get_flag_name(attribute)}", got=len(value),
                              expected=f"at most {MAX_CONFIG_LIST}")
        for item in value:
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise ConfigError(f"bad item in {get_flag_name(attribute)}", got=item, expected="strings or integers")
            if isinstance(item, str) and len(item) > MAX_CONFIG_STRING:
                raise ConfigError(f"item of {get_flag_name(attribute)} too long", got=f"{len(item)} characters",
                                  expected=f"at most {MAX_CONFIG_STRING}")


def build_config(toml_path: Path | None, overrides: Mapping[str, Any]) -> NodeConfig:
    """File values first, then flags that were given (None means not given)."""
    values = load_toml(toml_path) if toml_path is not None else {}
    values.update({name: value for name, value in overrides.items() if value is not None})
    unknown = sorted(set(values) - set(FLAG_NAMES))
    if unknown:
        raise ConfigError("unknown configuration keys", got=unknown, expected=sorted(FLAG_NAMES))
    changes = {FLAG_NAMES[name]: coerce(FLAG_NAMES[name], value) for name, value in values.items()}
    config = replace(NodeConfig(), **changes)
    validate_config(config)
    return config


# The range of each number a file or flag sets, checked with the key's name in the error.
VALUE_RANGES = {
    "http_port": (0, 65535),
    "p2p_port": (0, 65535),
    "metrics_port": (0, 65535),
    "worker_capacity": (0, 10**9),  # tokens/s
    "worker_threads": (0, 1024),
    "worker_gpu_layers": (0, 100_000),
    "worker_ctx": (0, 1 << 20),
    "worker_batch": (0, 1 << 20),
    "block_interval": (0, 3600),  # seconds
    "http_max_concurrency": (0, 256),
    "http_max_queue": (0, 100_000),
    "http_max_per_client": (0, 100_000),
    "http_rate_limit": (0, 10**9),  # tokens/s
    "http_burst": (0, 10**9),
    "http_server_rate_limit": (0, 10**9),
}
MAX_TIMEOUT_MS = 600_000
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def validate_ranges(config: NodeConfig) -> None:
    for attribute, (low, high) in VALUE_RANGES.items():
        value = getattr(config, attribute)
        if not low <= value <= high:
            raise ConfigError(f"{get_flag_name(attribute)} out of range", got=value, expected=f"{low}..{high}")
    if max(config.timeouts_ms) > MAX_TIMEOUT_MS:
        raise ConfigError("consensus.timeouts-ms out of range", got=config.timeouts_ms,
                          expected=f"each 0..{MAX_TIMEOUT_MS}")


def validate_config(config: NodeConfig) -> None:
    for name in ("http_port", "p2p_port", "metrics_port"):
        port = getattr(config, name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{get_flag_name(name)} out of range", got=port, expected="0..65535")
    for name in ("worker_capacity", "worker_threads", "worker_gpu_layers", "worker_ctx", "worker_batch"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{get_flag_name(name)} must not be negative", got=getattr(config, name),
                              expected=">= 0 (0: automatic)")
    validate_backend_spec(config.worker_backend)
    if config.block_interval < 0:
        raise ConfigError("block-interval must not be negative", got=config.block_interval, expected=">= 0")
    if config.http_front not in ("process", "thread"):
        raise ConfigError("http.front", got=config.http_front, expected="process or thread")
    if config.log_format not in ("json", "text"):
        raise ConfigError("log.format", got=config.log_format, expected="json or text")
    if config.log_level.lower() not in LOG_LEVELS:  # setLevel would raise an untyped ValueError later
        raise ConfigError("log.level", got=config.log_level, expected=" or ".join(LOG_LEVELS))
    validate_ranges(config)


def get_flag_name(attribute: str) -> str:
    return next(flag for flag, name in FLAG_NAMES.items() if name == attribute)


def validate_backend_spec(spec: str) -> None:
    kind, _, url = spec.partition(":")
    if spec == "local" or (kind == "openai" and url.startswith(("http://", "https://"))):
        return
    raise ConfigError("worker.backend", got=spec, expected="local or openai:http(s)://HOST:PORT[/v1]")


# --- keys -------------------------------------------------------------------------------------

def read_validator_key(path: Path, password_file: Path | None) -> bytes:
    """A v3 keystore (needs the password file) or a raw 32-byte key in hex (devnets only)."""
    try:
        text = read_bounded_file(path, MAX_KEYSTORE_SIZE).decode("utf-8").strip()
    except OSError as error:
        raise KeyFileError(f"cannot read validator key: {error}", got=str(path), expected="a key file") from None
    except (InputTooLarge, UnicodeDecodeError):
        raise KeyFileError("not a key file", got=str(path),
                           expected=f"a v3 keystore or 64 hex characters, under {MAX_KEYSTORE_SIZE} bytes") from None
    if text.startswith("{"):
        return read_keystore_key(path, text, password_file)
    return parse_hex_key(text, path)


def read_keystore_key(path: Path, text: str, password_file: Path | None) -> bytes:
    from eth_account import Account

    if password_file is None:
        raise KeyFileError("a keystore needs --password-file", got=str(path), expected="--password-file FILE")
    try:
        lines = Path(password_file).read_text().splitlines()
        password = lines[0] if lines else ""  # the first line, as geth and `genesis init` read it
        return bytes(Account.decrypt(decode_keystore(text), password))
    except OSError as error:
        raise KeyFileError(f"cannot read password file: {error}", got=str(password_file), expected="a file") from None
    except BoundedInputError as error:  # before ValueError (it is one): not a keystore, whatever the password
        raise KeyFileError(f"not a keystore: {error.message}", got=str(path), expected=error.expected) from None
    except ValueError as error:
        raise KeyFileError(f"cannot decrypt keystore: {error}", got=str(path), expected="the right password") from None


def parse_hex_key(text: str, path: Path) -> bytes:
    body = text[2:] if text.lower().startswith("0x") else text
    try:
        key = bytes.fromhex(body)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise KeyFileError("raw key must be 32 bytes of hex", got=str(path), expected="64 hex characters")
    return key


def get_rpc_limits(config: NodeConfig):
    from node.rpc_admission import RPCLimits

    return RPCLimits(max_concurrency=config.http_max_concurrency, max_queue=config.http_max_queue,
                     max_per_client=config.http_max_per_client, rate_limit=config.http_rate_limit,
                     burst=config.http_burst, server_rate_limit=config.http_server_rate_limit,
                     on_loop=config.http_on_loop, front_process=config.http_front == "process")


def get_timeouts(config: NodeConfig):
    from consensus.bft import TimeoutConfig

    propose, prevote, precommit, delta = config.timeouts_ms
    return TimeoutConfig(propose, prevote, precommit, delta, adaptive=config.adaptive_timeouts)

