// The client without a devnet: payloads byte-for-byte against the chain's own Python encoders,
// refusals before anything is signed or sent, the published ABI, and the bounds on what a server
// sends back (a real HTTP server on 127.0.0.1 that misbehaves).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { test } from "node:test";

import { keccak256, stringToHex } from "viem";

import {
  KIND_ADDRESSES, MagicoinAnnotations, MagicoinJobs, MagicoinPool, MagicoinWorkers, NodeRefusedError, PayloadError, PolicyError, ResponseTooLargeError,
  StreamError, WORK_EVENTS_ABI, WORK_KINDS, computeWorkId, createMagicoin, encodePayload,
} from "../src/index.js";
import { REPO_ROOT, findPython } from "../testing/devnet.js";

const hash = (text) => keccak256(stringToHex(text));
const VOTE_A = stringToHex("vote a: any bytes; the chain checks them when it applies evidence");
const VOTE_B = stringToHex("vote b");

// One payload of every kind, with the Python constructor arguments that must encode to the same bytes.
const CASES = [
  ["register_worker", { model: hash("m"), capacity: 80, engine: "backend=local" }, `RegisterWorker(h("m"), 80, b"backend=local")`],
  ["inference_request", { messages: [{ role: "system", content: "Be brief." }, { role: "user", content: "Say hé!" }], model: hash("m"), maxTokens: 256 },
    `InferenceRequest([ChatMessage(b"system", b"Be brief."), ChatMessage(b"user", "Say hé!".encode())], h("m"), 256)`],
  ["inference_result", { jobId: hash("j"), outputTokens: [0, 1, 127, 128, 65535, 2 ** 32 - 1] }, `InferenceResult(h("j"), [0, 1, 127, 128, 65535, 2**32 - 1])`],
  ["attestation", { jobId: hash("j"), scorePpm: 0 }, `Attestation(h("j"), 0)`],
  ["annotation_task", { content: "is the sky blue?", labels: ["yes", "no"], k: 3 }, `AnnotationTask(b"is the sky blue?", [b"yes", b"no"], 3)`],
  ["annotation", { taskId: hash("t"), labelIndex: 1 }, `Annotation(h("t"), 1)`],
  ["offering", { purpose: "priority", jobId: hash("j") }, `Offering(b"priority", h("j"))`],
  ["offering", {}, `Offering(b"", b"")`],
  ["evidence", { voteA: VOTE_A, voteB: VOTE_B }, `Evidence(bytes.fromhex("${VOTE_A.slice(2)}"), bytes.fromhex("${VOTE_B.slice(2)}"))`],
  ["register_annotator", { operator: "person" }, `RegisterAnnotator(b"person")`],
  ["register_model", { sha256: hash("m"), name: "SmolLM2", chatTemplateSha256: hash("c"), vocabSha256: hash("v"), contextTokens: 8192 },
    `RegisterModel(h("m"), b"SmolLM2", h("c"), h("v"), 8192)`],
  ["declare_models", { models: [hash("m"), hash("n")] }, `DeclareModels([h("m"), h("n")])`],
];

function encodeWithPython(expressions, workIdArgs) {
  const script = `
import json, sys, rlp
from eth_utils import keccak
from chain.payloads import *
from chain.transactions import ADDRESS_BY_KIND
def h(text): return keccak(text.encode())
out = {"payloads": [rlp.encode(e).hex() for e in [${expressions.join(", ")}]],
       "addresses": {k: "0x" + a.hex() for k, a in ADDRESS_BY_KIND.items()},
       "workId": "0x" + compute_work_id(bytes.fromhex("${workIdArgs[0].slice(2)}"), ${workIdArgs[1]}).hex()}
print(json.dumps(out))`;
  return JSON.parse(execFileSync(findPython(), ["-c", script], { cwd: REPO_ROOT, encoding: "utf8" }));
}

test("every work kind encodes byte for byte as chain/payloads.py does, at the kind's system address", () => {
  const sender = "0x00000000000000000000000000000000deadbeef";
  const python = encodeWithPython(CASES.map(([, , expression]) => expression), [sender, 300]);
  assert.deepEqual(CASES.map(([kind, payload]) => encodePayload(kind, payload).slice(2)), python.payloads);
  assert.deepEqual({ ...KIND_ADDRESSES }, python.addresses);
  assert.deepEqual([...new Set(CASES.map(([kind]) => kind))].sort(), [...WORK_KINDS].sort());
  assert.equal(computeWorkId(sender, 300), python.workId);
});

test("payloads the chain would refuse are refused before signing, naming the field", () => {
  const refusals = [
    ["annotation_task", { content: "x", labels: ["only"], k: 1 }, "labels"],
    ["annotation_task", { content: "x", labels: ["a", "a"], k: 1 }, "labels"],
    ["attestation", { jobId: hash("j"), scorePpm: 1_000_001 }, "scorePpm"],
    ["annotation", { taskId: "0x1234", labelIndex: 0 }, "taskId"],
    ["register_annotator", { operator: "" }, "operator"],
    ["register_worker", { model: hash("m"), capacity: 0 }, "capacity"],
    ["inference_request", { messages: [{ role: "tool", content: "x" }], model: hash("m"), maxTokens: 1 }, "messages.role"],
  ];
  for (const [kind, payload, field] of refusals) {
    assert.throws(() => encodePayload(kind, payload), (error) => error instanceof PayloadError && error.message.includes(field), `${kind} ${field}`);
  }
  assert.throws(() => encodePayload("transfer", {}), (error) => error instanceof PayloadError && error.got === "transfer" && error.expected.includes("offering"));
});

test("unknown policies and value on work are refused without contacting a node", async () => {
  const magicoin = createMagicoin({ rpcUrl: "http://127.0.0.1:9", account: hash("key") });
  await assert.rejects(magicoin.p2p_inference("hi", { routing: "round_robin" }),
    (error) => error instanceof PolicyError && error.code === "UNSUPPORTED_POLICY" && error.got === "round_robin" && error.expected[0] === "whoever_needs_most");
  await assert.rejects(magicoin.p2p_inference("hi", { reward: "tokens" }), PolicyError);
  await assert.rejects(magicoin.p2p_inference("hi", { validation: "none", stream: true }), PolicyError);
  assert.throws(() => magicoin.streamInference("hi", { routing: "random" }), PolicyError);
  await assert.rejects(magicoin.sendWork("register_annotator", { operator: "person" }, { value: 1n }),
    (error) => error instanceof PayloadError && /never moves between accounts/.test(error.message));
});

test("the client's ABI is the published one (docs/abi/magicoin.json)", () => {
  const published = JSON.parse(readFileSync(join(REPO_ROOT, "docs", "abi", "magicoin.json"), "utf8"));
  const contracts = { MagicoinPool, MagicoinJobs, MagicoinWorkers, MagicoinAnnotations };
  assert.deepEqual(Object.keys(contracts).sort(), Object.keys(published).sort());
  for (const [name, contract] of Object.entries(contracts)) {
    assert.equal(contract.address, published[name].address);
    assert.deepEqual(contract.abi, published[name].abi, `${name}: functions and events`);
  }
  const events = Object.values(published).flatMap((c) => c.abi.filter((entry) => entry.type === "event"));
  assert.deepEqual(WORK_EVENTS_ABI, events);
  assert.ok(events.some((e) => e.name === "AnnotationTaskPosted") && events.some((e) => e.name === "JobClosed"));
});

/** A local server that answers every request with `handler`; yields the client pointed at it. */
async function withServer(handler, run, options = {}) {
  const server = createServer(handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  try {
    await run(createMagicoin({ rpcUrl: `http://127.0.0.1:${server.address().port}`, ...options }));
  } finally {
    server.closeAllConnections();
    server.close();
  }
}

const sse = (events) => (_request, response) => {
  response.writeHead(200, { "content-type": "text/event-stream" });
  for (const event of events) response.write(event);
  response.end();
};

const CHUNK = JSON.stringify({ model: "m", choices: [{ delta: { content: "hi" }, finish_reason: null }],
  magicoin: { job_id: hash("j"), worker: `0x${"11".repeat(20)}`, request_tx: hash("r") } });

test("what a server sends back is bounded: body size, event-stream line length and size", async () => {
  const huge = "x".repeat(300_000);
  await withServer((_q, response) => response.end(JSON.stringify({ pad: huge })), async (magicoin) => {
    await assert.rejects(magicoin.p2p_inference("hi"), ResponseTooLargeError);
  }, { maxResponseBytes: 100_000 });
  await withServer(sse([`data: ${huge}`]), async (magicoin) => {
    await assert.rejects(async () => { for await (const _ of magicoin.streamInference("hi")) { /* drain */ } }, ResponseTooLargeError);
  }, { maxLineBytes: 64 * 1024 });
  await withServer(sse(Array(50).fill(`data: ${CHUNK}\n\n`)), async (magicoin) => {
    await assert.rejects(async () => { for await (const _ of magicoin.streamInference("hi")) { /* drain */ } }, ResponseTooLargeError);
  }, { maxStreamBytes: 10 * CHUNK.length });
});

test("a stream that fails or stops early is an error; a refusal carries the node's message", async () => {
  const error = JSON.stringify({ error: { message: "the worker did not complete the job: gone", code: "worker_failed" } });
  await withServer(sse([`data: ${CHUNK}\n\n`, `data: ${error}\n\n`, "data: [DONE]\n\n"]), async (magicoin) => {
    const seen = [];
    await assert.rejects(async () => { for await (const chunk of magicoin.streamInference("hi")) seen.push(chunk.content); },
      (e) => e instanceof StreamError && e.code === "worker_failed" && /did not complete/.test(e.message));
    assert.deepEqual(seen, ["hi"]);
  });
  await withServer(sse([`data: ${CHUNK}\r\n\r\n`]), async (magicoin) => {
    await assert.rejects(async () => { for await (const _ of magicoin.streamInference("hi")) { /* drain */ } }, StreamError);
  });
  await withServer((_q, response) => {
    response.writeHead(503, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: { message: "network busy: 64 jobs waiting", code: "network_busy" } }));
  }, async (magicoin) => {
    await assert.rejects(magicoin.p2p_inference("hi"),
      (e) => e instanceof NodeRefusedError && e.status === 503 && e.code === "network_busy" && /network busy/.test(e.message));
  });
});
