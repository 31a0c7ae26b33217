"""Node command: `magicoin node`, a full node (validator when given a validator key) until SIGINT/SIGTERM.

Flags are geth-style and override the TOML file given with --config.
"""
from __future__ import annotations

import logging
from pathlib import Path

import click
import trio

from chain.exceptions import ChainError
from genesis.exceptions import GenesisError
from genesis import load_genesis
from inference.exceptions import InferenceError
from node.config import NodeConfig, build_config, get_rpc_limits, get_timeouts, read_validator_key
from node.exceptions import ConfigError, NodeError
from node.logs import configure_logging, enable_crash_traces, log_fatal, trigger_test_crash

logger = logging.getLogger("node.cli")


def path_option(name: str, help: str, **kwargs):
    return click.option(name, type=click.Path(path_type=Path), default=None, help=help, **kwargs)


@click.command("node")
@path_option("--config", "Node configuration (TOML); flags override it.")
@path_option("--datadir", "Data directory (chain database, consensus state, node key). [./datadir]")
@path_option("--genesis", "Genesis file. [genesis/devnet.json]")
@click.option("--http/--no-http", "http", default=None, help="Serve JSON-RPC and the OpenAI API. [on]")
@click.option("--http.addr", "http_addr", default=None, help="HTTP listen address. [127.0.0.1]")
@click.option("--http.port", "http_port", type=int, default=None, help="HTTP port. [8545]")
@click.option("--http.max-concurrency", "http_max_concurrency", type=int, default=None,
              help="JSON-RPC worker threads (requests computed at once, off the consensus loop). [2]")
@click.option("--http.max-queue", "http_max_queue", type=int, default=None,
              help="JSON-RPC requests admitted to wait for a worker; beyond: HTTP 429, error -32005. [64]")
@click.option("--http.max-per-client", "http_max_per_client", type=int, default=None,
              help="JSON-RPC requests one client IP may have in flight. [32]")
@click.option("--http.rate-limit", "http_rate_limit", type=float, default=None,
              help="JSON-RPC tokens per second per client IP (a call costs 1, eth_getProof 5, eth_getLogs 9; "
                   "0: no limit). [2000]")
@click.option("--http.burst", "http_burst", type=float, default=None,
              help="Tokens a client IP may spend at once. [4000]")
@click.option("--http.on-loop/--no-http.on-loop", "http_on_loop", default=None,
              help="Serve HTTP on the consensus loop, JSON-RPC inline and unlimited, as before issue 14 "
                   "(a benchmark baseline; never in production). [off]")
@click.option("--http.front", "http_front", type=click.Choice(["process", "thread"]), default=None,
              help="Parse and admit HTTP in a process of its own at a lower CPU priority, so no request "
                   "delays consensus (process), or in a thread of the node (thread). [process]")
@click.option("--http.server-rate-limit", "http_server_rate_limit", type=float, default=None,
              help="JSON-RPC tokens per second for all clients together (0: no limit). [2000]")
@click.option("--p2p.addr", "p2p_addr", default=None, help="p2p listen address. [127.0.0.1]")
@click.option("--p2p.port", "p2p_port", type=int, default=None, help="p2p port. [30303]")
@click.option("--bootnodes", default=None, help="Comma-separated enodes (<pubkey-hex>@host:port).")
@click.option("--p2p.ban-exempt", "p2p_ban_exempt", default=None,
              help="Comma-separated IP addresses a banned peer's ban does not extend to (its key stays banned): "
                   "co-located nodes, or a NAT shared by honest peers. [none]")
@path_option("--validator-key", "Validator key: a v3 keystore (with --password-file) or a raw hex key file.")
@path_option("--password-file", "File whose first line is the keystore password.")
@click.option("--metrics/--no-metrics", "metrics", default=None, help="Expose Prometheus metrics. [off]")
@click.option("--metrics.addr", "metrics_addr", default=None, help="Metrics listen address. [127.0.0.1]")
@click.option("--metrics.port", "metrics_port", type=int, default=None, help="Metrics port. [6060]")
@click.option("--model", default=None, help="Model for worker duties (GGUF path or known name). [default model]")
@click.option("--verify-models", "verify_models", default=None,
              help="More models to hold for auditing jobs on them: GGUF paths or 'default', comma-separated. "
                   "Declared on chain; committees for a model are drawn among its holders. [none]")
@click.option("--worker/--no-worker", "worker", default=None,
              help="Serve inference jobs, audits and annotations with the local model. [off]")
@click.option("--worker.capacity", "worker_capacity", type=int, default=None,
              help="Tokens/s the worker declares on chain; 0 measures a probe job at start-up. [0]")
@click.option("--worker.threads", "worker_threads", type=int, default=None,
              help="llama.cpp threads for the worker's model; 0: every core but one (at least 1). [0]")
@click.option("--worker.gpu-layers", "worker_gpu_layers", type=int, default=None,
              help="Model layers to offload to a GPU (needs llama-cpp-python built with CUDA/Metal/Vulkan; "
                   "without one: a warning, and the CPU). [0]")
@click.option("--worker.ctx", "worker_ctx", type=int, default=None,
              help="llama.cpp context size; at least the protocol's 2048; 0: 2048. [0]")
@click.option("--worker.batch", "worker_batch", type=int, default=None,
              help="llama.cpp batch size (prompt tokens per decode); 0: 512. [0]")
@click.option("--worker.backend", "worker_backend", default=None,
              help="Where jobs are generated: local, or openai:URL for an OpenAI-compatible server "
                   "(llama-server, Ollama's http://127.0.0.1:11434/v1, LM Studio, vLLM), checked at start "
                   "against the local copy of --model. [local]")
@click.option("--worker.backend-model", "worker_backend_model", default=None,
              help="The model's name on the backend server. [the first model it lists]")
@click.option("--block-interval", type=float, default=None, help="Seconds between blocks. [0.5]")
@click.option("--log.level", "log_level", default=None, help="debug, info, warning, error. [info]")
@click.option("--log.format", "log_format", default=None, help="json or text. [json]")
def node_command(config: Path | None, **flags) -> None:
    """Run a magicoin node until SIGINT or SIGTERM.

    \b
    Crashes are loud: faulthandler writes every thread's Python stack to <datadir>/crash.log on a
    segfault or abort (to stderr until the datadir is known), and an error that ends the node is
    logged as one JSON line (level critical, "fatal": true) with the datadir and height.
    \b
    As a service: contrib/systemd/magicoin-node.service runs `magicoin node --config
    /etc/magicoin/node.toml` (example: contrib/systemd/node.toml) as user magicoin, restarted on
    failure; install it in /etc/systemd/system, then `systemctl enable --now magicoin-node` and
    `journalctl -u magicoin-node -f` for the log.
    """
    enable_crash_traces()  # before anything can crash; moved to the datadir once it is known
    overrides = {name.replace("_", "."): value for name, value in flags.items()}
    overrides = {rename_flag(name): value for name, value in overrides.items()}
    run = NodeRun()
    try:
        settings = build_config(config, overrides)
        configure_logging(settings.log_level, json_lines=settings.log_format == "json")
        run.datadir = settings.datadir
        enable_crash_traces(settings.datadir)
        trio.run(run_node, settings, run)
    except EXPECTED_ERRORS as error:
        run.log_fatal(error, traceback=False)
        raise click.ClickException(str(error)) from None
    except BaseExceptionGroup as group:
        # Services fail inside nurseries; a user should read the cause (a port in use, a bad
        # datadir), not a tree of tracebacks. Anything else is a bug and keeps its traceback.
        # A worker that refuses its backend (BackendModelMismatch, BackendUnreachable) stops the node the same way.
        expected, unexpected = group.split(EXPECTED_ERRORS)
        if expected is None or unexpected is not None:
            run.log_fatal(group, traceback=True)
            raise
        leaves = list(iter_leaves(expected))
        run.log_fatal(leaves[0] if len(leaves) == 1 else expected, traceback=False)
        raise click.ClickException("; ".join(str(error) for error in leaves)) from None
    except Exception as error:
        run.log_fatal(error, traceback=True)  # a bug: the JSON line keeps its traceback, and so does stderr
        raise


EXPECTED_ERRORS = (NodeError, ChainError, GenesisError, InferenceError, OSError)


class NodeRun:
    """What a fatal-error line says about the run it ended: the datadir, and the height once the node exists."""

    def __init__(self) -> None:
        self.datadir: Path | None = None  # set once logging is configured: before that, click's message suffices
        self.node = None

    @property
    def height(self) -> int | None:
        return None if self.node is None else self.node.chain.height

    def log_fatal(self, error: BaseException, *, traceback: bool) -> None:
        if self.datadir is not None:
            log_fatal(error, datadir=self.datadir, height=self.height, traceback=traceback)


def iter_leaves(group: BaseExceptionGroup):
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            yield from iter_leaves(error)
        else:
            yield error


def rename_flag(name: str) -> str:
    """click's parameter names back to the flag names the config uses."""
    return {"validator.key": "validator-key", "password.file": "password-file",
            "block.interval": "block-interval", "verify.models": "verify-models", "worker.gpu.layers": "worker.gpu-layers",
            "worker.backend.model": "worker.backend-model", "http.max.concurrency": "http.max-concurrency",
            "http.max.queue": "http.max-queue", "http.max.per.client": "http.max-per-client",
            "http.rate.limit": "http.rate-limit", "http.on.loop": "http.on-loop",
            "http.server.rate.limit": "http.server-rate-limit", "p2p.ban.exempt": "p2p.ban-exempt"}.get(name, name)


def make_node(settings: NodeConfig):
    from node.service import Node

    genesis = load_genesis(settings.genesis)
    key = read_validator_key(settings.validator_key, settings.password_file) if settings.validator_key else None
    duties = None
    if settings.worker:
        from node.duties import make_duties

        duties = make_duties(settings.model, n_threads=settings.worker_threads or None,
                             declared_capacity=settings.worker_capacity or None,
                             verify_models=[None if m == "default" else m for m in settings.verify_models],
                             engine=make_engine_settings(settings), backend=make_backend(settings))
    return Node(
        genesis, settings.datadir, validator_key=key,
        p2p_host=settings.p2p_addr, p2p_port=settings.p2p_port, bootnodes=settings.bootnodes,
        http=(settings.http_addr, settings.http_port) if settings.http_enabled else None,
        metrics_address=(settings.metrics_addr, settings.metrics_port) if settings.metrics else None,
        timeouts=get_timeouts(settings), block_interval=settings.block_interval, duties=duties,
        rpc_limits=get_rpc_limits(settings),
        p2p_overrides={"ip_ban_exempt": settings.p2p_ban_exempt} if settings.p2p_ban_exempt else None,
    )


def make_engine_settings(settings: NodeConfig):
    """The worker's llama.cpp settings from the flags (0: the engine's default), validated before any loading."""
    from inference.engine import BATCH_TOKENS, CONTEXT_TOKENS, EngineSettings, validate_engine_settings
    from inference.exceptions import EngineSettingsError

    engine = EngineSettings(n_threads=settings.worker_threads, n_gpu_layers=settings.worker_gpu_layers,
                            n_ctx=settings.worker_ctx or CONTEXT_TOKENS, n_batch=settings.worker_batch or BATCH_TOKENS)
    try:
        validate_engine_settings(engine)
    except EngineSettingsError as error:
        raise ConfigError(f"worker engine setting {error.name}", got=error.got, expected=error.expected) from None
    return engine


def make_backend(settings: NodeConfig):
    """`--worker.backend` as a generation backend (`inference.backends`)."""
    from inference.backends import parse_backend_spec
    from inference.exceptions import BackendError

    try:
        return parse_backend_spec(settings.worker_backend, settings.worker_backend_model)
    except BackendError as error:
        raise ConfigError(f"worker.backend: {error.reason}", got=error.got, expected=error.expected) from None


async def run_node(settings: NodeConfig, run: NodeRun | None = None) -> None:
    from node.service import run_until_signalled
    from primitives.limits import set_safe_recursion_limit

    node = make_node(settings)
    if run is not None:
        run.node = node
    # Everything is imported by now (py-evm and py_ecc raise the limit on import): back to a safe value, for a
    # node without HTTP too (serve_http does the same).
    set_safe_recursion_limit()
    trigger_test_crash()  # inert unless MAGICOIN_TEST_CRASH is set (tests/node/test_crash.py)
    await run_until_signalled(node)


COMMANDS: list = [node_command]
