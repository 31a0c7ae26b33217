"""A real node in its own process for the hostile-input tests, and the fixture side that drives it.

Run as `python -m tests.node.hostile_node DATADIR`: one validator finalising
alone, JSON-RPC and p2p on loopback. It prints one JSON line (the HTTP URL, the
p2p port, the chain id and genesis hash) once it serves. Then, unless told
otherwise, it raises Python's recursion limit to 100,000, as py_ecc does when
it is imported: the bounds must hold without the interpreter's recursion guard.
A crash therefore shows as a dead process with faulthandler's trace in its log,
not as a dead pytest.
"""
from __future__ import annotations

import argparse
import faulthandler
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx

RAISED_RECURSION_LIMIT = 100_000  # py_ecc/__init__.py's value
ROOT = Path(__file__).resolve().parents[2]


# --- the node process ------------------------------------------------------------------------------

async def serve(datadir: Path, raise_recursion_limit: bool) -> None:
    import trio

    from tests.node.nodekit import VALIDATOR_KEYS, make_node, make_test_genesis

    genesis = make_test_genesis(1)
    node = make_node(genesis, datadir, VALIDATOR_KEYS[0], http=("127.0.0.1", 0))
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        while node.http_url is None:
            await trio.sleep(0.05)
        if raise_recursion_limit:
            sys.setrecursionlimit(RAISED_RECURSION_LIMIT)  # after the node's own reset: a late dependency
        print(json.dumps({"http": node.http_url, "p2p_port": node.p2p.listen_port, "chain_id": genesis.chain_id,
                          "genesis_hash": genesis.genesis_hash.hex(),
                          "recursion_limit": sys.getrecursionlimit()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datadir", type=Path)
    parser.add_argument("--keep-recursion-limit", action="store_true")
    args = parser.parse_args()
    faulthandler.enable()
    import trio

    trio.run(serve, args.datadir, not args.keep_recursion_limit)


# --- the test side ---------------------------------------------------------------------------------

class HostileNode:
    """The node process, its addresses, and the checks every hostile test ends with."""

    def __init__(self, process: subprocess.Popen, log_path: Path, info: dict) -> None:
        self.process = process
        self.log_path = log_path
        self.url = info["http"]
        self.p2p_port = info["p2p_port"]
        self.chain_id = info["chain_id"]
        self.genesis_hash = bytes.fromhex(info["genesis_hash"])
        self.recursion_limit = info["recursion_limit"]
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def post(self, body: bytes, path: str = "/", **headers: str) -> httpx.Response:
        return self.client.post(path, content=body, headers={"content-type": "application/json", **headers})

    def rpc(self, method: str, *params) -> dict:
        return self.client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": method,
                                           "params": list(params)}).json()

    def get_log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def get_height(self) -> int:
        """eth_blockNumber, after checking the process is alive: the check after every attack."""
        assert self.process.poll() is None, (
            f"the node died (exit {self.process.returncode}); its log ends:\n{self.get_log_tail()}")
        try:
            response = self.rpc("eth_blockNumber")
        except httpx.HTTPError as error:
            raise AssertionError(f"the node stopped answering ({error!r}); its log ends:\n{self.get_log_tail()}")
        return int(response["result"], 16)

    def wait_for_blocks(self, count: int = 2, timeout: float = 30.0) -> int:
        """The chain keeps finalising: `count` more blocks within `timeout` seconds."""
        target = self.get_height() + count
        deadline = time.monotonic() + timeout
        while (height := self.get_height()) < target:
            assert time.monotonic() < deadline, f"no block finalised for {timeout} s (height {height})"
            time.sleep(0.1)
        return height

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_hostile_node(datadir: Path, *, keep_recursion_limit: bool = False, timeout: float = 60.0) -> HostileNode:
    datadir.mkdir(parents=True, exist_ok=True)
    log_path = datadir / "node.log"
    command = [sys.executable, "-m", "tests.node.hostile_node", str(datadir / "node")]
    if keep_recursion_limit:
        command.append("--keep-recursion-limit")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=log,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    line = process.stdout.readline() if ready else b""
    if not line:
        process.kill()
        process.wait()
        raise AssertionError(f"the node did not start: {log_path.read_text(errors='replace')[-4000:]}")
    return HostileNode(process, log_path, json.loads(line))


if __name__ == "__main__":
    main()
