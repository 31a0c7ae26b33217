"""`make devnet`: N validators as separate `magicoin node` processes on loopback, a load generator and a live view.

Owns the devnet's layout and the lifecycle of its processes:
- node i: RPC on 127.0.0.1:(base_rpc_port + i), p2p on 127.0.0.1:(base_p2p_port + i),
  datadir <datadir>/node<i> (the node's chaindata and consensus state, plus
  `validator.key`: `devnet_private_key(i)`, INSECURE and public, as a raw hex key
  file, and `node.log`: the node's JSON log lines), every other node as a bootnode;
- the genesis is genesis/devnet.json (its validators are exactly those keys);
- stopping is SIGTERM to every child, a bounded wait, then SIGKILL for stragglers;
- a second run finds the datadirs and each node resumes from its database;
- supervision (`Devnet.supervise`, on in `make devnet`): a node that exits on its own is restarted on
  its datadir after an exponential, capped backoff, until it has restarted `RestartPolicy.limit`
  times within `RestartPolicy.window` seconds (then it stays down and the log says so). A node
  stopped on purpose (`NodeProcess.kill`/`terminate`, `Devnet.stop`) is never restarted by it.

`Devnet` is also what the devnet tests and benchmarks/network.py drive: it can
kill, restart and wipe single nodes. Run as `python -m node.devnet [options]`.
"""
from __future__ import annotations

import ctypes
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import click
import httpx
from eth_keys import keys

from genesis import DEVNET_GENESIS_PATH, load_genesis
from genesis.keys import devnet_private_key, get_address
from node.exceptions import NodeError

logger = logging.getLogger("node.devnet")

KEY_FILE = "validator.key"
LOG_FILE = "node.log"
STOP_GRACE_SECONDS = 15.0
PR_SET_PDEATHSIG = 1
CRASH_FILE = "crash.log"  # node.logs.CRASH_FILE: where a node's faulthandler writes its stacks
SUPERVISE_POLL_SECONDS = 0.25


class DevnetError(NodeError):
    """A devnet node could not be started, or did not come up in time."""


@dataclass(frozen=True)
class DevnetConfig:
    nodes: int = 4
    base_rpc_port: int = 8545
    base_p2p_port: int = 30303
    datadir: Path = Path("./devnet")
    genesis: Path = DEVNET_GENESIS_PATH
    worker: bool = True  # each validator also serves inference with the default model
    model: str | None = None
    # Several models: node i serves models[i % len], and holds the others to audit their jobs ("default" is the
    # embedded model). Empty: every node serves `model`.
    models: tuple[str, ...] = ()
    # An OpenAI-compatible server that generates node0's jobs (its --worker.backend), and its name for the model.
    backend: str | None = None
    backend_model: str | None = None
    block_interval: float | None = None  # None: the node's default
    timeouts_ms: tuple[int, int, int, int] | None = None  # None: the node's default
    adaptive_timeouts: bool | None = None  # False: static timeouts (consensus.adaptive-timeouts); None: default
    log_level: str = "info"
    extra_args: tuple[str, ...] = field(default=())

    def get_rpc_port(self, index: int) -> int:
        return self.base_rpc_port + index

    def get_p2p_port(self, index: int) -> int:
        return self.base_p2p_port + index

    def get_rpc_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.get_rpc_port(index)}"

    def get_node_dir(self, index: int) -> Path:
        return Path(self.datadir) / f"node{index}"


def get_validator_key(index: int) -> bytes:
    return devnet_private_key(index)


def compute_enode(index: int, config: DevnetConfig) -> str:
    node_id = keys.PrivateKey(get_validator_key(index)).public_key.to_bytes()
    return f"{node_id.hex()}@127.0.0.1:{config.get_p2p_port(index)}"


def validate_genesis_matches_keys(config: DevnetConfig) -> None:
    """The devnet keys must be the genesis validators, else the nodes would never reach a quorum."""
    genesis = load_genesis(config.genesis)
    expected = {bytes(v.address) for v in genesis.validators}
    got = {get_address(get_validator_key(i)) for i in range(config.nodes)}
    if not got <= expected:
        raise DevnetError("the devnet keys are not genesis validators", got=sorted(a.hex() for a in got - expected),
                          expected=sorted(a.hex() for a in expected))


def write_key_file(node_dir: Path, key: bytes) -> Path:
    node_dir.mkdir(parents=True, exist_ok=True)
    path = node_dir / KEY_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("0x" + key.hex() + "\n")
    return path


def get_magicoin_command() -> list[str]:
    """The installed `magicoin` script next to this interpreter, else the same entry point through -c."""
    script = Path(sys.executable).with_name("magicoin")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from node.cli import main; main()"]


def get_worker_threads(nodes: int) -> int:
    return max(1, len(os.sched_getaffinity(0)) // nodes)


def build_node_command(index: int, config: DevnetConfig) -> list[str]:
    node_dir = config.get_node_dir(index)
    bootnodes = [compute_enode(other, config) for other in range(config.nodes) if other != index]
    command = get_magicoin_command() + [
        "node",
        "--datadir", str(node_dir),
        "--genesis", str(config.genesis),
        "--http.addr", "127.0.0.1", "--http.port", str(config.get_rpc_port(index)),
        "--p2p.addr", "127.0.0.1", "--p2p.port", str(config.get_p2p_port(index)),
        "--validator-key", str(node_dir / KEY_FILE),
        "--log.level", config.log_level, "--log.format", "json",
    ]
    if bootnodes:
        command += ["--bootnodes", ",".join(bootnodes)]
    if config.worker:
        # The nodes share the machine's cores: each model gets its share, never more
        # (ggml's spin barriers collapse when its threads outnumber free cores).
        command += ["--worker", "--worker.threads", str(get_worker_threads(config.nodes))]
        command += get_model_args(index, config)
        if config.backend and index == 0:
            command += ["--worker.backend", config.backend]
            if config.backend_model:
                command += ["--worker.backend-model", config.backend_model]
    if config.block_interval is not None:
        command += ["--block-interval", str(config.block_interval)]
    return command + list(config.extra_args)


def get_model_args(index: int, config: DevnetConfig) -> list[str]:
    """The model node `index` serves and the ones it holds for audits (`DevnetConfig.models`)."""
    if not config.models:
        return ["--model", config.model] if config.model else []
    served = config.models[index % len(config.models)]
    others = list(dict.fromkeys(model for model in config.models if model != served))
    args = [] if served == "default" else ["--model", served]
    return args + (["--verify-models", ",".join(others)] if others else [])


def die_with_parent() -> None:
    """In the child before exec: its own session (Ctrl-C reaches only the devnet), and SIGTERM if the devnet dies."""
    os.setsid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the devnet still stops its children on every normal exit


class NodeProcess:
    """One `magicoin node` child: started, stopped, killed or restarted on the same datadir."""

    def __init__(self, index: int, config: DevnetConfig) -> None:
        self.index = index
        self.config = config
        self.process: subprocess.Popen | None = None
        # Supervision state. The lock orders a deliberate kill against the supervisor's restart:
        # whoever holds it sees `stopped_on_purpose` as the other left it.
        self.lock = threading.RLock()
        self.stopped_on_purpose = False
        self.restarts = 0  # restarts by the supervisor, over the devnet's life
        self.restart_times: deque[float] = deque()  # monotonic times of recent restarts (the give-up window)
        self.restart_at: float | None = None  # a restart is scheduled for then
        self.gave_up = False

    @property
    def node_dir(self) -> Path:
        return self.config.get_node_dir(self.index)

    @property
    def rpc_url(self) -> str:
        return self.config.get_rpc_url(self.index)

    @property
    def address(self) -> bytes:
        return get_address(get_validator_key(self.index))

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def has_exited_unexpectedly(self) -> bool:
        """Dead without anyone asking: the supervisor's cue (never true before the first start)."""
        return self.process is not None and self.process.poll() is not None and not self.stopped_on_purpose

    def get_state(self) -> str:
        """up, down, down (restarting) or down (gave up): what the status view shows."""
        if self.is_running():
            return "up"
        if self.gave_up:
            return "down (gave up)"
        if self.restart_at is not None or self.has_exited_unexpectedly():
            return "down (restarting)"
        return "down"

    def start(self) -> None:
        with self.lock:
            self.stopped_on_purpose = False
            self.restart_at = None
            self.gave_up = False
            self.spawn()

    def spawn(self) -> None:
        if self.is_running():
            return
        write_key_file(self.node_dir, get_validator_key(self.index))  # also creates the datadir
        with open(self.node_dir / LOG_FILE, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                self.build_command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        logger.info("started node%d pid=%d rpc=%s", self.index, self.process.pid, self.rpc_url)

    def build_command(self) -> list[str]:
        command = build_node_command(self.index, self.config)
        lines = []
        # The timeouts have no flag, only config keys.
        if self.config.timeouts_ms is not None:
            lines.append("timeouts-ms = [%s]" % ", ".join(map(str, self.config.timeouts_ms)))
        if self.config.adaptive_timeouts is not None:
            lines.append(f"adaptive-timeouts = {'true' if self.config.adaptive_timeouts else 'false'}")
        if lines:
            config_file = self.node_dir / "consensus.toml"
            config_file.write_text("[consensus]\n" + "".join(line + "\n" for line in lines))
            command += ["--config", str(config_file)]
        return command

    def terminate(self) -> None:
        with self.lock:
            self.stopped_on_purpose = True
            self.restart_at = None
            if self.is_running():
                self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the crash a fault test wants (no shutdown path runs). On purpose: the supervisor leaves it down."""
        with self.lock:
            self.stopped_on_purpose = True
            self.restart_at = None
            if self.is_running():
                self.process.kill()
        self.wait(5.0)

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return code

    def wipe(self) -> None:
        """Delete the whole datadir (the node must be stopped); the key file is written again on start."""
        if self.is_running():
            raise DevnetError("cannot wipe a running node", got=self.index, expected="a stopped node")
        shutil.rmtree(self.node_dir, ignore_errors=True)

    def read_log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join((self.node_dir / LOG_FILE).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Devnet:
    """The devnet's node processes, stoppable as a whole (SIGTERM, wait, SIGKILL) or one by one."""

    def __init__(self, config: DevnetConfig) -> None:
        validate_genesis_matches_keys(config)
        self.config = config
        self.nodes = [NodeProcess(index, config) for index in range(config.nodes)]
        self.supervisor: Supervisor | None = None

    def supervise(self, policy: RestartPolicy | None = None) -> Supervisor:
        """Restart nodes that die on their own from now on (opt-in: fault tests kill nodes and want them down)."""
        if self.supervisor is None:
            self.supervisor = Supervisor(self.nodes, policy or RestartPolicy())
            self.supervisor.start()
        return self.supervisor

    def get_restarts(self) -> dict[int, int]:
        """Supervisor restarts by node index."""
        return {node.index: node.restarts for node in self.nodes}

    @property
    def rpc_urls(self) -> list[str]:
        return [node.rpc_url for node in self.nodes]

    def start(self) -> None:
        Path(self.config.datadir).mkdir(parents=True, exist_ok=True)
        for node in self.nodes:
            node.start()

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> dict[int, int | None]:
        """SIGTERM everyone, wait up to `grace` seconds in total, SIGKILL who is left; exit codes by index."""
        if self.supervisor is not None:
            self.supervisor.stop()  # first: no restart may race the shutdown
            self.supervisor = None
        for node in self.nodes:
            node.terminate()
        deadline = time.monotonic() + grace
        codes: dict[int, int | None] = {}
        for node in self.nodes:
            if node.process is None:
                continue
            code = node.wait(max(0.0, deadline - time.monotonic()))
            if code is None:
                logger.warning("node%d did not stop within %.0f s; SIGKILL", node.index, grace)
                node.process.kill()
                code = node.wait(5.0)
            codes[node.index] = code
        return codes

    def wait_until_serving(self, indices=None, timeout: float = 120.0) -> None:
        """Until each node answers eth_blockNumber; raises DevnetError with the node's log tail on failure."""
        pending = set(range(len(self.nodes)) if indices is None else indices)
        deadline = time.monotonic() + timeout
        while pending:
            for index in sorted(pending):
                node = self.nodes[index]
                if not node.is_running():
                    raise DevnetError(f"node{index} exited with {node.process.returncode if node.process else None}",
                                      got=node.read_log_tail(), expected="a running node")
                if rpc_or_none(node.rpc_url, "eth_blockNumber") is not None:
                    pending.discard(index)
            if pending and time.monotonic() > deadline:
                raise DevnetError(f"nodes {sorted(pending)} not serving JSON-RPC after {timeout:.0f} s",
                                  got=self.nodes[min(pending)].read_log_tail(), expected="eth_blockNumber answered")
            time.sleep(0.2)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from `backoff` up to `cap` with each restart inside `window`; `limit` such restarts: give up.

    A node that crashes at once on every start (a corrupt datadir, a port taken) would otherwise
    spin; one that crashed once an hour ago starts again at the shortest backoff.
    """
    backoff: float = 1.0
    cap: float = 30.0
    limit: int = 5
    window: float = 300.0

    def get_delay(self, recent_restarts: int) -> float:
        return min(self.cap, self.backoff * 2 ** recent_restarts)


def describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class Supervisor:
    """A thread that restarts nodes which exited on their own, on the same datadir, with backoff."""

    def __init__(self, nodes: list[NodeProcess], policy: RestartPolicy, clock=time.monotonic) -> None:
        self.nodes = nodes
        self.policy = policy
        self.clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="devnet-supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def run(self) -> None:
        while not self._stop.wait(SUPERVISE_POLL_SECONDS):
            for node in self.nodes:
                self.check(node)

    def check(self, node: NodeProcess) -> None:
        """One look at one node: schedule a restart for a fresh death, carry it out when its backoff is over."""
        with node.lock:
            if node.gave_up or self._stop.is_set() or not node.has_exited_unexpectedly():
                return
            now = self.clock()
            if node.restart_at is None:
                self.schedule(node, now)
            elif now >= node.restart_at:
                self.restart(node, now)

    def schedule(self, node: NodeProcess, now: float) -> None:
        while node.restart_times and now - node.restart_times[0] >= self.policy.window:
            node.restart_times.popleft()
        how = describe_exit(node.process.returncode)
        if len(node.restart_times) >= self.policy.limit:
            node.gave_up = True
            logger.error("node%d exited with %s after %d restarts within %.0f s; giving up, it stays down "
                         "(see %s and %s)", node.index, how, len(node.restart_times), self.policy.window,
                         node.node_dir / LOG_FILE, node.node_dir / CRASH_FILE)
            return
        delay = self.policy.get_delay(len(node.restart_times))
        node.restart_at = now + delay
        logger.warning("node%d exited unexpectedly with %s; restarting in %.1f s (a crash leaves its stacks in %s)",
                       node.index, how, delay, node.node_dir / CRASH_FILE)

    def restart(self, node: NodeProcess, now: float) -> None:
        node.restart_at = None
        node.restart_times.append(now)
        node.restarts += 1
        try:
            node.spawn()  # spawn, not start: a restart keeps the node's supervision history
        except OSError as error:
            logger.error("node%d restart %d failed: %s", node.index, node.restarts, error)
            return
        logger.warning("restarted node%d on %s pid=%d (restart %d)", node.index, node.node_dir, node.pid,
                       node.restarts)


def is_port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def get_ephemeral_port_start(default: int = 32768) -> int:
    """Where the kernel's outgoing-connection ports begin: a port above it may be taken after we checked it."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def find_free_port_range(count: int, low: int = 20000, high: int | None = None, avoid: range | None = None) -> int:
    """A base port with `count` consecutive free ports (for tests and benchmarks beside a running devnet).

    Picked below the ephemeral range, so no outgoing connection grabs one between the check and the bind.
    """
    high = high if high is not None else get_ephemeral_port_start()
    for _ in range(200):
        base = random.randrange(low, high - count)
        ports = range(base, base + count)
        if avoid is not None and (ports.start < avoid.stop and avoid.start < ports.stop):
            continue
        if all(is_port_free(port) for port in ports):
            return base
    raise DevnetError("no free port range", got=None, expected=f"{count} consecutive free ports")


def make_free_config(datadir: Path, nodes: int = 4, **kwargs) -> DevnetConfig:
    """A devnet on picked free loopback ports (never the default ones a `make devnet` may hold)."""
    rpc = find_free_port_range(nodes)
    p2p = find_free_port_range(nodes, avoid=range(rpc, rpc + nodes))
    return DevnetConfig(nodes=nodes, base_rpc_port=rpc, base_p2p_port=p2p, datadir=datadir, **kwargs)


def rpc_call(url: str, method: str, params=(), timeout: float = 5.0, client: httpx.Client | None = None):
    """One JSON-RPC call; raises DevnetError on a JSON-RPC error, httpx.HTTPError on a transport failure."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    response = (client or httpx).post(url, json=body, timeout=timeout)
    payload = response.json()
    if "error" in payload:
        raise DevnetError(f"{method}: {payload['error'].get('message')}", got=payload["error"], expected="a result")
    return payload["result"]


def rpc_or_none(url: str, method: str, params=(), timeout: float = 2.0, client: httpx.Client | None = None):
    try:
        return rpc_call(url, method, params, timeout, client)
    except (httpx.HTTPError, ValueError, DevnetError):
        return None


# --- the `python -m node.devnet` command ---------------------------------------------------------

class BurstRun:
    """`--burst N`: once every node is a registered worker, N long zero-fee requests at once (issue 11).

    Prints the workers' reliability before the burst and, when the devnet
    stops, after it, with what became of the burst's jobs.
    """

    def __init__(self, devnet: Devnet, count: int, max_tokens: int, stop: threading.Event) -> None:
        self.devnet, self.count, self.max_tokens, self.stop = devnet, count, max_tokens, stop
        self.report = None
        self.height_before = 0
        self._thread = threading.Thread(target=self.run, name="burst", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self) -> None:
        from node.loadgen import LoadGenerator

        url = self.devnet.rpc_urls[0]
        while not self.stop.is_set():
            workers = rpc_or_none(url, "muagic_getWorkers") or []
            if len(workers) >= len(self.devnet.nodes):
                break
            self.stop.wait(1.0)
        if self.stop.is_set():
            return
        self.stop.wait(5.0)  # a few blocks with registered workers first
        self.height_before = int(rpc_or_none(url, "eth_blockNumber") or "0x0", 16)
        print(f"devnet: burst: workers before at height {self.height_before}: {format_workers(url)}", flush=True)
        loadgen = LoadGenerator(self.devnet.rpc_urls, chain_id=load_genesis(self.devnet.config.genesis).chain_id)
        try:
            self.report = loadgen.submit_burst(self.count, self.max_tokens)
        finally:
            loadgen.stop()
        refused = sum(self.report.refused.values())
        print(f"devnet: burst: {self.count} requests of {self.max_tokens} tokens in {self.report.seconds:.1f} s: "
              f"{len(self.report.job_ids)} admitted, {refused} refused "
              f"{dict(self.report.refused.most_common(3))}", flush=True)

    def print_outcome(self) -> None:
        """Reliability now, and the statuses of the burst's admitted jobs (called before the nodes stop)."""
        if self.report is None:
            print("devnet: burst: never sent (the workers did not all register in time)", flush=True)
            return
        url = self.devnet.rpc_urls[0]
        height = int(rpc_or_none(url, "eth_blockNumber") or "0x0", 16)
        statuses: dict[str, int] = {}
        for job_id in self.report.job_ids:
            job = rpc_or_none(url, "muagic_getJob", ["0x" + job_id.hex()])
            status = "unknown" if job is None else job["status"]
            statuses[status] = statuses.get(status, 0) + 1
        print(f"devnet: burst: workers after at height {height} (+{height - self.height_before} blocks): "
              f"{format_workers(url)}; admitted jobs by status {statuses}", flush=True)


def format_workers(url: str) -> str:
    """Each worker's reliability, declared capacity and late jobs, from `muagic_getWorkers`."""
    workers = sorted(rpc_or_none(url, "muagic_getWorkers") or [], key=lambda w: w["address"])
    return ", ".join(f"{w['address'][:10]}={int(w['reliability'], 16) / 1e6:.3f} (capacity {int(w['capacity'], 16)}, "
                     f"late {int(w['jobsLate'], 16)})" for w in workers)


def run_devnet(config: DevnetConfig, *, load: bool, view: bool, duration: float | None, burst: int = 0,
               burst_tokens: int = 512, supervise: bool = True) -> int:
    """Start everything, run until Ctrl-C/SIGTERM or `duration`, stop everything; the exit code."""
    devnet = Devnet(config)
    stop = threading.Event()
    install_stop_handlers(stop)
    loadgen = None
    burst_run = None
    try:
        devnet.start()
        print(f"devnet: {config.nodes} validators, RPC {devnet.rpc_urls[0]}..{config.get_rpc_port(config.nodes - 1)}, "
              f"p2p {config.base_p2p_port}..{config.get_p2p_port(config.nodes - 1)}, datadirs and logs under "
              f"{config.datadir}/node<i>/ (node.log)",
              flush=True)
        wait_serving_or_stop(devnet, stop)
        if supervise and not stop.is_set():
            devnet.supervise()  # after start-up: a node that cannot start at all fails the devnet instead
        if load and not stop.is_set():
            from node.loadgen import LoadGenerator

            loadgen = LoadGenerator(devnet.rpc_urls, chain_id=load_genesis(config.genesis).chain_id)
            loadgen.start()
        if burst and not stop.is_set():
            burst_run = BurstRun(devnet, burst, burst_tokens, stop)
            burst_run.start()
        from node.status_view import watch

        watch(devnet, loadgen, stop, live=view, duration=duration)
    finally:
        if loadgen is not None:
            loadgen.stop()
        if burst_run is not None:
            try:
                burst_run.print_outcome()
            except (httpx.HTTPError, ValueError, KeyError) as error:
                print(f"devnet: burst: outcome unreadable: {error}", flush=True)
        print("devnet: stopping nodes (SIGTERM, then SIGKILL after %.0f s)" % STOP_GRACE_SECONDS, flush=True)
        codes = devnet.stop()
        print("devnet: stopped; exit codes " + ", ".join(f"node{i}={c}" for i, c in codes.items()), flush=True)
    return 0


def wait_serving_or_stop(devnet: Devnet, stop: threading.Event) -> None:
    """Until every node answers (raising DevnetError, with the failing node's log, if one exits) or Ctrl-C."""
    failure: list[DevnetError] = []

    def wait() -> None:
        try:
            devnet.wait_until_serving(timeout=300)
        except DevnetError as error:
            failure.append(error)

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    while waiter.is_alive() and not stop.is_set():
        waiter.join(0.2)
    if failure:
        raise failure[0]


def install_stop_handlers(stop: threading.Event) -> None:
    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)


@click.command()
@click.option("--nodes", type=click.IntRange(1), default=4, show_default=True, help="Number of validators (at most the genesis validators).")
@click.option("--base-rpc-port", default=8545, show_default=True, help="JSON-RPC port of node0; node i uses +i.")
@click.option("--base-p2p-port", default=30303, show_default=True, help="p2p port of node0; node i uses +i.")
@click.option("--datadir", type=click.Path(path_type=Path), default=Path("./devnet"), show_default=True,
              help="Parent of the nodes' datadirs (node0, node1, ...); reused on the next run.")
@click.option("--genesis", type=click.Path(path_type=Path), default=DEVNET_GENESIS_PATH,
              help="Genesis whose validators are the devnet keys. [genesis/devnet.json]")
@click.option("--no-load", is_flag=True, help="Do not run the load generator.")
@click.option("--no-view", is_flag=True, help="Plain log lines instead of the live view (CI).")
@click.option("--no-worker", is_flag=True, help="Validators without model duties (no LLM loaded).")
@click.option("--model", default=None, help="Model for the workers. [default model]")
@click.option("--models", default=None,
              help="Comma-separated models ('default' or GGUF paths): node i serves the i-th (round robin) and "
                   "holds the others to audit their jobs. [--model on every node]")
@click.option("--backend", default=None,
              help="openai:URL of an OpenAI-compatible server (llama-server, Ollama, ...) that generates node0's "
                   "jobs; it must serve node0's model. [node0 runs the model itself]")
@click.option("--backend-model", default=None, help="The model's name on --backend. [the first it lists]")
@click.option("--duration", type=float, default=None, help="Stop by itself after this many seconds.")
@click.option("--burst", type=click.IntRange(0), default=0, show_default=True,
              help="Once the workers are registered, send this many long zero-fee requests at once, from fresh "
                   "accounts; the workers' reliability is printed before and at the end.")
@click.option("--burst-tokens", type=click.IntRange(1), default=512, show_default=True,
              help="max_tokens of each burst request.")
@click.option("--worker-capacity", type=click.IntRange(1), default=None,
              help="Tokens/s each worker declares (the nodes' --worker.capacity). [measured at start-up]")
@click.option("--no-restart", is_flag=True,
              help="Leave a node that dies down (by default it is restarted with backoff, up to 5 times in 5 min).")
def main(nodes, base_rpc_port, base_p2p_port, datadir, genesis, no_load, no_view, no_worker, model, models, backend,
         backend_model, duration, burst, burst_tokens, worker_capacity, no_restart) -> None:
    """Run a local devnet of validators until Ctrl-C; run again to resume from the datadirs."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll would drown the view
    extra_args = ("--worker.capacity", str(worker_capacity)) if worker_capacity and not no_worker else ()
    config = DevnetConfig(nodes=nodes, base_rpc_port=base_rpc_port, base_p2p_port=base_p2p_port, datadir=datadir,
                          genesis=genesis, worker=not no_worker, model=model, extra_args=extra_args,
                          models=tuple(m.strip() for m in models.split(",") if m.strip()) if models else (),
                          backend=backend, backend_model=backend_model)
    try:
        code = run_devnet(config, load=not no_load, view=not no_view, duration=duration, burst=burst,
                          burst_tokens=burst_tokens, supervise=not no_restart)
    except NodeError as error:
        raise click.ClickException(str(error)) from None
    sys.exit(code)


if __name__ == "__main__":
    main()
