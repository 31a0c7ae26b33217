// A real devnet for the client's tests: `python -m node.devnet` (validators as separate node processes
// on 127.0.0.1, each serving the embedded default model) in a temporary directory, on free ports,
// stopped (SIGTERM, then SIGKILL of its process group) when the tests end.
//
// The Python is $MAGICOIN_PYTHON, else the repository's .venv/bin/python. The genesis is
// genesis/devnet.json with one change, as tests/node/test_ethers.py makes: no gold answers needed
// before a registered annotator has weight, so a fresh account's annotation task finds one at once.
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const STOP_GRACE_MS = 25_000;  // the devnet itself gives its nodes 15 s after SIGTERM

export function findPython() {
  const python = process.env.MAGICOIN_PYTHON ?? join(REPO_ROOT, ".venv", "bin", "python");
  if (!existsSync(python)) {
    throw new Error(`no Python for the devnet at ${python}: run \`make setup\` in ${REPO_ROOT} or set MAGICOIN_PYTHON`);
  }
  return python;
}

function isPortFree(port) {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, "127.0.0.1", () => server.close(() => done(true)));
  });
}

/** A base port whose next `count` ports are free on 127.0.0.1. */
async function findFreePorts(count, avoid = new Set()) {
  for (let attempt = 0; attempt < 200; attempt += 1) {
    const base = 20_000 + Math.floor(Math.random() * 40_000);
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => avoid.has(p))) continue;
    if ((await Promise.all(ports.map(isPortFree))).every(Boolean)) return base;
  }
  throw new Error("no free ports on 127.0.0.1");
}

async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }), signal: AbortSignal.timeout(5_000),
  });
  const body = await response.json();
  if (body.error) throw new Error(`${method}: ${body.error.message}`);
  return body.result;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start a devnet and wait until every node serves RPC and every node is a registered worker.
 * @returns {Promise<{rpcUrls: string[], genesis: any, dir: string, stop: () => Promise<void>}>}
 */
export async function startDevnet({ nodes = 3, workerCapacity = 30, readyTimeoutMs = 240_000 } = {}) {
  const python = findPython();
  const dir = mkdtempSync(join(tmpdir(), "magicoin-js-"));
  const genesis = JSON.parse(readFileSync(join(REPO_ROOT, "genesis", "devnet.json"), "utf8"));
  genesis.params.annotator_min_gold = 0;
  genesis.params.annotator_prior_correct = 2;
  const genesisPath = join(dir, "genesis.json");
  writeFileSync(genesisPath, JSON.stringify(genesis, null, 2));
  const rpcBase = await findFreePorts(nodes);
  const p2pBase = await findFreePorts(nodes, new Set(Array.from({ length: nodes }, (_, i) => rpcBase + i)));
  const logPath = join(dir, "devnet.log");
  const log = openSync(logPath, "a");
  const child = spawn(python, [
    "-m", "node.devnet", "--nodes", String(nodes), "--no-load", "--no-view", "--no-restart",
    "--datadir", join(dir, "devnet"), "--genesis", genesisPath,
    "--base-rpc-port", String(rpcBase), "--base-p2p-port", String(p2pBase),
    // Declared, not probed: a start-up probe on a busy machine can measure so little that a 256-token job
    // (the sketch's default) finds no worker with room under 70% of its capacity.
    "--worker-capacity", String(workerCapacity),
  ], { cwd: REPO_ROOT, stdio: ["ignore", log, log], detached: true });
  closeSync(log);
  let exited = null;
  child.on("exit", (code, signal) => { exited = { code, signal }; });
  // Never leave the devnet running: if the test process ends without stop() (a crash, the test
  // runner's timeout, Ctrl-C), its process group goes too (its nodes die with it: PR_SET_PDEATHSIG).
  const killGroup = (signal) => { try { process.kill(-child.pid, signal); } catch { /* already gone */ } };
  process.once("exit", () => {
    if (exited !== null) return;
    killGroup("SIGKILL");
    if (!process.env.MAGICOIN_KEEP_DEVNET) rmSync(dir, { recursive: true, force: true });
  });
  for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => { killGroup("SIGTERM"); process.exit(1); });
  const rpcUrls = Array.from({ length: nodes }, (_, i) => `http://127.0.0.1:${rpcBase + i}`);
  const tail = () => readFileSync(logPath, "utf8").split("\n").slice(-40).join("\n");

  async function stop() {
    if (exited === null) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      const timer = setTimeout(() => killGroup("SIGKILL"), STOP_GRACE_MS);
      await gone;
      clearTimeout(timer);
    }
    if (!process.env.MAGICOIN_KEEP_DEVNET) rmSync(dir, { recursive: true, force: true });
  }

  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (exited !== null) throw new Error(`the devnet exited (${JSON.stringify(exited)}) before serving:\n${tail()}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`the devnet did not serve within ${readyTimeoutMs / 1000} s:\n${tail()}`);
    }
    try {
      const heights = await Promise.all(rpcUrls.map((url) => rpc(url, "eth_blockNumber")));
      const workers = await rpc(rpcUrls[0], "muagic_getWorkers");
      if (heights.every((h) => Number(h) >= 1) && workers.length >= nodes) break;
    } catch {
      // not serving yet
    }
    await sleep(500);
  }
  return { rpcUrls, genesis, dir, stop };
}
