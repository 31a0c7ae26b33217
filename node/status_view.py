"""The devnet's terminal view: what the nodes say about themselves over JSON-RPC, redrawn with rich Live.

Owns polling (`poll_devnet`, one snapshot of every node plus the chain-wide
figures from one answering node) and drawing (`render`, a rich Group; or
`format_line`, one plain line per poll for CI). Worker utilisation is the
share of wall time the node's llama.cpp worker was busy since the previous
poll (muagic_status' workerBusySeconds); the on-chain load/capacity of each
worker is shown beside it. Each node also shows its supervisor restarts and, when it has no
status, whether it is down, down (restarting) or down (gave up) (`NodeProcess.get_state`).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

MUAGIC = 10**18
POLL_SECONDS = 1.0
UTILISATION_WINDOW = 30.0


@dataclass
class NodeSnapshot:
    index: int
    url: str
    running: bool
    status: dict | None  # muagic_status, None when the node did not answer
    utilisation: float | None = None
    restarts: int = 0  # by the devnet's supervisor
    state: str = "up"  # NodeProcess.get_state: up, down, down (restarting), down (gave up)

    def describe_down(self) -> str:
        """A node without a status: down (and whether the supervisor brings it back), or starting."""
        return self.state if not self.running else "starting"


@dataclass
class Snapshot:
    at: float
    nodes: list[NodeSnapshot]
    validators: list[dict] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)
    pool: dict | None = None
    open_jobs: int | None = None
    load: dict | None = None

    @property
    def height(self) -> int | None:
        heights = [n.status["height"] for n in self.nodes if n.status]
        return max(heights) if heights else None


class Poller:
    """Keeps recent busy-seconds per node so utilisation is a rate over a window, not a total.

    A worker adds a job's busy time when the job ends, so short windows would
    swing between 0 and 100%; UTILISATION_WINDOW seconds smooth that out.
    """

    def __init__(self, devnet, loadgen=None) -> None:
        self.devnet = devnet
        self.loadgen = loadgen
        self.client = httpx.Client(timeout=2.0)
        self.history: dict[int, deque[tuple[float, float]]] = {}  # index -> (time, busy seconds) samples

    def close(self) -> None:
        self.client.close()

    def call(self, url: str, method: str, params=()):
        try:
            payload = self.client.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                  "params": list(params)}).json()
        except (httpx.HTTPError, ValueError):
            return None
        return payload.get("result") if isinstance(payload, dict) else None

    def poll(self) -> Snapshot:
        now = time.monotonic()
        nodes = []
        for node in self.devnet.nodes:
            status = self.call(node.rpc_url, "muagic_status") if node.is_running() else None
            nodes.append(NodeSnapshot(node.index, node.rpc_url, node.is_running(), status,
                                      self.compute_utilisation(node.index, now, status),
                                      restarts=node.restarts, state=node.get_state()))
        snapshot = Snapshot(now, nodes)
        answering = [n.url for n in nodes if n.status]
        if answering:
            url = answering[0]
            snapshot.validators = self.call(url, "muagic_getValidators") or []
            snapshot.workers = self.call(url, "muagic_getWorkers") or []
            snapshot.pool = self.call(url, "muagic_getPool")
            open_jobs = self.call(url, "muagic_getOpenJobs")
            snapshot.open_jobs = len(open_jobs) if isinstance(open_jobs, list) else None
        if self.loadgen is not None:
            snapshot.load = self.loadgen.statistics()
        return snapshot

    def compute_utilisation(self, index: int, now: float, status: dict | None) -> float | None:
        if not status or "workerBusySeconds" not in status:
            return None
        busy = float(status["workerBusySeconds"])
        history = self.history.setdefault(index, deque())
        if history and busy < history[-1][1]:
            history.clear()  # the node restarted: its counter began again
        history.append((now, busy))
        while len(history) > 2 and now - history[1][0] >= UTILISATION_WINDOW:
            history.popleft()
        first_time, first_busy = history[0]
        if now - first_time < 1.0:
            return None
        return max(0.0, min(1.0, (busy - first_busy) / (now - first_time)))


# --- drawing --------------------------------------------------------------------------------------

def to_int(value) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    return 0


def format_muagic(value) -> str:
    return f"{to_int(value) / MUAGIC:,.3f}"


def short(address: str | None) -> str:
    return "-" if not address else address[:8] + ".." + address[-4:]


def render(snapshot: Snapshot, started: float) -> Group:
    return Group(render_header(snapshot, started), render_nodes(snapshot), render_validators(snapshot),
                 render_workers(snapshot), render_load(snapshot))


def render_header(snapshot: Snapshot, started: float) -> Text:
    pool = snapshot.pool or {}
    finality = [n.status.get("meanFinalityMs") for n in snapshot.nodes if n.status and n.status.get("meanFinalityMs")]
    mean = f"{sum(finality) / len(finality):.0f} ms" if finality else "-"
    return Text.assemble(
        ("magicoin devnet  ", "bold magenta"),
        f"height {snapshot.height if snapshot.height is not None else '-'}   decision time (mean) {mean}   ",
        f"pool {format_muagic(pool.get('balance', 0))} MUAGIC (issued {format_muagic(pool.get('issued', 0))})   ",
        f"open jobs {snapshot.open_jobs if snapshot.open_jobs is not None else '-'}   ",
        (f"up {time.monotonic() - started:.0f} s   Ctrl-C stops", "dim"),
    )


def render_nodes(snapshot: Snapshot) -> Table:
    table = Table(title="nodes", expand=True)
    for column in ("node", "rpc", "height", "last decision", "round/step", "peers", "mempool", "jobs served",
                   "attest", "annot", "utilisation (30 s)", "restarts"):
        table.add_column(column)
    for node in snapshot.nodes:
        status = node.status
        if not status:
            colour = "yellow" if node.running else "red"
            table.add_row(f"node{node.index}", node.url, f"[{colour}]{node.describe_down()}[/]", *["-"] * 8,
                          str(node.restarts))
            continue
        table.add_row(
            f"node{node.index}", node.url, str(status["height"]),
            f"{status['lastFinalityMs']} ms" if status.get("lastFinalityMs") is not None else "-",
            f"{status.get('round', '-')}/{status.get('step', '-')}", str(status.get("peers", "-")),
            str(status.get("mempool", "-")), str(status.get("duty_jobs_served", "-")),
            str(status.get("duty_attestations", "-")), str(status.get("duty_annotations", "-")),
            f"{node.utilisation:.0%}" if node.utilisation is not None else "-", str(node.restarts),
        )
    return table


def render_validators(snapshot: Snapshot) -> Table:
    table = Table(title="validators", expand=True)
    for column in ("address", "weight", "recognition", "balance", "proposer"):
        table.add_column(column)
    for validator in snapshot.validators:
        table.add_row(short(validator["address"]), format_muagic(validator["weight"]),
                      format_muagic(validator["recognition"]), format_muagic(validator["balance"]),
                      "*" if validator.get("isProposer") else "")
    return table


def render_workers(snapshot: Snapshot) -> Table:
    table = Table(title="workers", expand=True)
    for column in ("address", "model", "capacity tok/s", "load", "quality", "reliability", "jobs done", "failed audit"):
        table.add_column(column)
    for worker in snapshot.workers:
        table.add_row(short(worker["address"]), short(worker["model"]), str(to_int(worker["capacity"])),
                      str(to_int(worker["load"])), f"{to_int(worker['quality']) / 1e4:.1f}%",
                      f"{to_int(worker['reliability']) / 1e4:.1f}%", str(to_int(worker.get("jobsDone", 0))),
                      str(to_int(worker.get("jobsFailedAudit", 0))))
    return table


def render_load(snapshot: Snapshot) -> Text:
    if snapshot.load is None:
        return Text("load generator off", style="dim")
    counts, outcomes = snapshot.load["counts"], snapshot.load["job_outcomes"]
    line = ("load: chat jobs %d (refused %d), annotation tasks %d, offerings %d; recent jobs: %s"
            % (counts.get("chat_submitted", 0), counts.get("chat_refused", 0), counts.get("annotation_submitted", 0),
               counts.get("offering_submitted", 0),
               ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "-"))
    by_model = snapshot.load.get("job_outcomes_by_model", {})
    if len(by_model) > 1:
        line += "\nby model: " + "; ".join(
            f"{model}… " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) for model, counts in sorted(by_model.items()))
    if snapshot.load.get("last_error"):
        line += f"\nlast refusal/error: {snapshot.load['last_error'][:160]}"
    return Text(line)


def format_line(snapshot: Snapshot) -> str:
    """One plain line per poll (--no-view)."""
    parts = []
    for node in snapshot.nodes:
        if node.status:
            parts.append(f"node{node.index} h={node.status['height']} peers={node.status.get('peers')} "
                         f"fin={node.status.get('lastFinalityMs')}ms restarts={node.restarts}")
        else:
            parts.append(f"node{node.index} {node.describe_down()} restarts={node.restarts}")
    pool = snapshot.pool or {}
    line = " | ".join(parts) + f" | workers={len(snapshot.workers)} pool={format_muagic(pool.get('balance', 0))}"
    if snapshot.load is not None:
        counts = snapshot.load["counts"]
        line += (f" | chat={counts.get('chat_submitted', 0)} annot={counts.get('annotation_submitted', 0)} "
                 f"offer={counts.get('offering_submitted', 0)} jobs={snapshot.load['job_outcomes']}")
        if len(snapshot.load.get("job_outcomes_by_model", {})) > 1:
            line += f" by_model={snapshot.load['job_outcomes_by_model']}"
    return line


def watch(devnet, loadgen, stop: threading.Event, *, live: bool, duration: float | None) -> None:
    """Poll and draw until `stop` is set or `duration` seconds have passed."""
    poller = Poller(devnet, loadgen)
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    try:
        if live:
            with Live(render(poller.poll(), started), refresh_per_second=2, screen=False) as view:
                while not is_done(stop, deadline):
                    view.update(render(poller.poll(), started))
                    stop.wait(POLL_SECONDS)
            print(flush=True)  # the last frame ends without a newline
        else:
            while not is_done(stop, deadline):
                print(time.strftime("%H:%M:%S ") + format_line(poller.poll()), flush=True)
                stop.wait(2 * POLL_SECONDS)
    finally:
        poller.close()


def is_done(stop: threading.Event, deadline: float | None) -> bool:
    return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)
