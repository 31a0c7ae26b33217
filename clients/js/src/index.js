// @magicoin/client: the founding sketch's `p2p_inference` call, job status, streamed completions,
// signed work transactions and recognition reads, for Node and browsers, built on viem.
//
//   import { createMagicoin } from "@magicoin/client";
//   const magicoin = createMagicoin({ rpcUrl: "http://127.0.0.1:8545" });
//   const result = await magicoin.p2p_inference(prompt, {routing: "whoever_needs_most",
//     validation: "annotation_quality", reward: "muagic_on_recognition"});
//
// A completion goes through the node's OpenAI-compatible /v1/chat/completions (the node signs the
// request on chain and routes it); its job is then followed with JSON-RPC muagic_getJob. Work
// transactions are signed here, with the caller's viem account, and sent with viem's default
// walletClient.sendTransaction({to, data}). Everything read from the node is size-bounded.
import { createPublicClient, createWalletClient, defineChain, http, parseEventLogs } from "viem";
import { privateKeyToAccount } from "viem/accounts";

import { MagicoinJobs, MagicoinPool, WORK_EVENTS_ABI } from "./abi.js";
import {
  MagicoinError, NodeRefusedError, NodeUnreachableError, PayloadError, PolicyError, StreamError, TimeoutError, WorkFailedError,
} from "./errors.js";
import { readEvents, readJson, toRefusal } from "./http.js";
import { KIND_ADDRESSES, KINDS_WITH_WORK_ID, computeWorkId, encodePayload, validateKind } from "./payloads.js";

export * from "./errors.js";
export { KIND_ADDRESSES, POOL_ADDRESS, WORK_KINDS, computeWorkId, encodePayload } from "./payloads.js";
export { MagicoinAnnotations, MagicoinJobs, MagicoinPool, MagicoinWorkers, WORK_EVENTS_ABI } from "./abi.js";

// The network has exactly one of each policy (node/client.py); anything else is refused, never ignored.
export const ROUTINGS = Object.freeze(["whoever_needs_most"]);
export const VALIDATIONS = Object.freeze(["annotation_quality"]);
export const REWARDS = Object.freeze(["muagic_on_recognition"]);
export const FINAL_JOB_STATUSES = Object.freeze(["accepted", "failed_audit", "unverified", "expired"]);

export const DEFAULTS = Object.freeze({
  rpcUrl: "http://127.0.0.1:8545",
  model: "default",
  maxTokens: 256,
  timeoutMs: 120_000,
  pollIntervalMs: 250,
  maxResponseBytes: 8 * 1024 * 1024,  // one JSON answer (a job record carries its messages: at most 16 KiB of payload)
  maxStreamBytes: 16 * 1024 * 1024,   // one whole event stream (at most 2,048 tokens)
  maxLineBytes: 256 * 1024,           // one event-stream line
});

/** @param {string} name @param {unknown} value @param {readonly string[]} allowed */
export function validatePolicy(name, value, allowed) {
  if (!allowed.includes(/** @type {string} */ (value))) throw new PolicyError(`unsupported ${name}`, { got: value, expected: allowed });
}

function validatePolicies({ routing = ROUTINGS[0], validation = VALIDATIONS[0], reward = REWARDS[0] }) {
  validatePolicy("routing", routing, ROUTINGS);
  validatePolicy("validation", validation, VALIDATIONS);
  validatePolicy("reward", reward, REWARDS);
}

/** A prompt string as one user message; OpenAI-style messages as they are. */
function toMessages(prompt) {
  if (typeof prompt === "string") return [{ role: "user", content: prompt }];
  if (Array.isArray(prompt) && prompt.length > 0) return prompt;
  throw new PayloadError("a prompt is a string or a non-empty array of {role, content} messages", { got: prompt, expected: "a string or messages" });
}

/** The `magicoin` extra of a completion or chunk, checked: the job, its worker and its request tx. */
function getJobInfo(body, what) {
  const info = body && typeof body === "object" ? body.magicoin : undefined;
  const isHex = (value, size) => typeof value === "string" && new RegExp(`^0x[0-9a-fA-F]{${size * 2}}$`).test(value);
  if (!info || !isHex(info.job_id, 32) || !isHex(info.worker, 20) || !isHex(info.request_tx, 32)) {
    throw new NodeUnreachableError(`${what}: the answer does not name its job`, { got: info, expected: "magicoin {job_id, worker, request_tx}" });
  }
  return { jobId: info.job_id, worker: info.worker, requestTx: info.request_tx };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a viem error says, shortest first: the node's own message when there is one. */
function describeViemError(error) {
  const inner = typeof error?.walk === "function" ? error.walk((e) => typeof e?.code === "number") : null;
  return {
    message: error?.details || error?.shortMessage || error?.message || String(error),
    code: inner?.code ?? error?.code ?? "NODE_REFUSED",
  };
}

export class InferenceResult {
  constructor({ text, jobId, worker, requestTx, model, finishReason, job = null }) {
    this.text = text;
    this.jobId = jobId;
    this.worker = worker;
    this.requestTx = requestTx;
    this.model = model;
    this.finishReason = finishReason;
    this.job = job;  // muagic_getJob's record once waited for (null when not waited)
  }

  get verified() {
    return Boolean(this.job && this.job.verified);
  }

  toString() {
    return this.text;
  }
}

/**
 * A client for one node.
 * @param {import("./index.d.ts").MagicoinOptions} [options]
 * @returns {import("./index.d.ts").Magicoin}
 */
export function createMagicoin(options = {}) {
  const config = { ...DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  const baseUrl = String(config.rpcUrl).replace(/\/+$/, "");
  const fetchFn = config.fetch ?? globalThis.fetch.bind(globalThis);
  const transport = http(baseUrl, { fetchFn, maxResponseBodySize: config.maxResponseBytes, timeout: 30_000 });
  const publicClient = createPublicClient({ transport, pollingInterval: config.pollIntervalMs });
  const account = typeof config.account === "string" ? privateKeyToAccount(/** @type {`0x${string}`} */ (config.account)) : config.account;
  let walletClient = null;

  async function request(method, params = []) {
    try {
      return await publicClient.request(/** @type {any} */ ({ method, params }));
    } catch (error) {
      const { message, code } = describeViemError(error);
      throw new NodeRefusedError(`${method} failed: ${message}`, { code, got: params, expected: "a result", cause: error });
    }
  }

  async function postChat(body, what) {
    let response;
    try {
      response = await fetchFn(`${baseUrl}/v1/chat/completions`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
        signal: AbortSignal.timeout(config.timeoutMs),
      });
    } catch (error) {
      throw new NodeUnreachableError(`${what}: cannot reach the node: ${error?.message ?? error}`, { got: baseUrl, expected: "a running node", cause: error });
    }
    if (response.status !== 200) throw await toRefusal(response, config.maxResponseBytes, what);
    return response;
  }

  function makeChatBody(prompt, settings, stream) {
    validatePolicies(settings);
    return { model: settings.model ?? config.model, messages: toMessages(prompt), max_tokens: settings.maxTokens ?? config.maxTokens, stream };
  }

  async function getJob(jobId) {
    return request("muagic_getJob", [jobId]);
  }

  async function waitForJob(jobId, { timeoutMs = config.timeoutMs, pollIntervalMs = config.pollIntervalMs, statuses = FINAL_JOB_STATUSES } = {}) {
    const deadline = Date.now() + timeoutMs;
    let job = null;
    while (Date.now() < deadline) {
      job = await getJob(jobId);  // null while the request is not yet in a block
      if (job !== null && statuses.includes(job.status)) return job;
      await sleep(pollIntervalMs);
    }
    throw new TimeoutError("the job did not reach the status asked for in time", { got: job?.status ?? null, expected: statuses });
  }

  // Checked at the call (a refused policy or prompt throws here), read as the caller iterates.
  function streamInference(prompt, settings = {}) {
    return readCompletionStream(makeChatBody(prompt, settings, true));
  }

  async function* readCompletionStream(body) {
    const what = "streamInference";
    const response = await postChat(body, what);
    let finished = false;
    for await (const data of readEvents(response, { maxLineBytes: config.maxLineBytes, maxBytes: config.maxStreamBytes })) {
      if (data === "[DONE]") {
        finished = true;
        break;
      }
      let event;
      try {
        event = JSON.parse(data);
      } catch {
        throw new NodeUnreachableError(`${what}: an event is not JSON`, { got: data, expected: "a JSON chunk or [DONE]" });
      }
      if (event && event.error) {
        throw new StreamError(`${what}: ${event.error.message ?? "the stream failed"}`, { code: event.error.code ?? "STREAM_FAILED", got: event.error, expected: "chunks" });
      }
      const choice = Array.isArray(event?.choices) ? event.choices[0] : undefined;
      if (!choice) continue;  // the usage chunk
      yield { content: choice.delta?.content ?? "", finishReason: choice.finish_reason ?? null, model: event.model, ...getJobInfo(event, what) };
    }
    if (!finished) {
      throw new StreamError(`${what}: the stream ended before [DONE]`, { got: "end of stream", expected: "[DONE]" });
    }
  }

  async function p2p_inference(prompt, settings = {}) {
    if (settings.stream) return streamInference(prompt, settings);
    const what = "p2p_inference";
    const body = makeChatBody(prompt, settings, false);
    const completion = await readJson(await postChat(body, what), config.maxResponseBytes, what);
    const info = getJobInfo(completion, what);
    const choice = completion?.choices?.[0];
    if (typeof choice?.message?.content !== "string") {
      throw new NodeUnreachableError(`${what}: the completion has no message`, { got: completion?.choices, expected: "choices[0].message.content" });
    }
    const job = settings.waitForVerification ? await waitForJob(info.jobId, { timeoutMs: settings.timeoutMs ?? config.timeoutMs }) : null;
    return new InferenceResult({ text: choice.message.content, model: completion.model, finishReason: choice.finish_reason, job, ...info });
  }

  async function getWalletClient() {
    if (!account) throw new MagicoinError("signing needs an account: createMagicoin({account})", { code: "NO_ACCOUNT", got: undefined, expected: "a viem account or a private key" });
    if (walletClient === null) {
      const id = await publicClient.getChainId();
      const chain = config.chain ?? defineChain({
        id, name: `magicoin-${id}`, nativeCurrency: { name: "MUAGIC", symbol: "MUAGIC", decimals: 18 }, rpcUrls: { default: { http: [baseUrl] } },
      });
      walletClient = createWalletClient({ account, chain, transport, pollingInterval: config.pollIntervalMs });
    }
    return walletClient;
  }

  async function sendWork(kind, payload, { value = 0n, wait = true, timeoutMs = config.timeoutMs } = {}) {
    validateKind(kind);
    const data = encodePayload(kind, payload);
    if (BigInt(value) !== 0n && kind !== "offering") {
      throw new PayloadError("only an offering carries value: MUAGIC never moves between accounts", { got: value, expected: 0 });
    }
    const wallet = await getWalletClient();
    const from = wallet.account.address;
    const nonce = await publicClient.getTransactionCount({ address: from, blockTag: "pending" });
    let hash;
    try {
      hash = await wallet.sendTransaction({ to: KIND_ADDRESSES[kind], data, value: BigInt(value), nonce, account: wallet.account, chain: wallet.chain });
    } catch (error) {
      const { message, code } = describeViemError(error);
      throw new NodeRefusedError(`the node refused the ${kind} transaction: ${message}`, { code, got: kind, expected: "an accepted transaction", cause: error });
    }
    const sent = { kind, hash, nonce, from, workId: KINDS_WITH_WORK_ID.includes(kind) ? computeWorkId(from, nonce) : null, receipt: null };
    if (!wait) return sent;
    let receipt;
    try {
      receipt = await publicClient.waitForTransactionReceipt({ hash, timeout: timeoutMs, pollingInterval: config.pollIntervalMs });
    } catch (error) {
      throw new TimeoutError(`no receipt for the ${kind} transaction in time`, { got: hash, expected: "a receipt", cause: error });
    }
    if (receipt.status !== "success") {
      const reason = /** @type {any} */ (receipt).failureReason ?? "no reason given";
      throw new WorkFailedError(`the chain did not apply the ${kind} transaction: ${reason}`, { got: reason, expected: "status success", receipt, hash });
    }
    return { ...sent, receipt };
  }

  // The work events (receipt logs of the system addresses) of a receipt, or of a block range with filters,
  // decoded with the published ABI; logs of other addresses or unknown topics are left out.
  async function getWorkEvents({ receipt, fromBlock, toBlock, eventName, args } = {}) {
    if (receipt) return parseEventLogs({ abi: WORK_EVENTS_ABI, logs: receipt.logs, eventName, args });
    const logs = await publicClient.getLogs({ events: WORK_EVENTS_ABI, fromBlock, toBlock, strict: true }).catch((error) => {
      const { message, code } = describeViemError(error);
      throw new NodeRefusedError(`eth_getLogs failed: ${message}`, { code, got: { fromBlock, toBlock }, expected: "logs", cause: error });
    });
    return parseEventLogs({ abi: WORK_EVENTS_ABI, logs, eventName, args });
  }

  const readView = (contract, functionName, args = [], { blockNumber } = {}) =>
    publicClient.readContract({ address: contract.address, abi: /** @type {any} */ (contract.abi), functionName, args, blockNumber }).catch((error) => {
      const { message, code } = describeViemError(error);
      throw new NodeRefusedError(`${functionName} failed: ${message}`, { code, got: args, expected: "a value", cause: error });
    });

  return {
    rpcUrl: baseUrl,
    publicClient,
    get account() {
      return account ?? null;
    },
    getWalletClient,
    request,
    p2p_inference,
    streamInference,
    getJob,
    waitForJob,
    sendWork,
    getRecognition: (address, at = {}) => readView(MagicoinPool, "recognitionOf", [address], at),
    getBalance: (address, at = {}) => readView(MagicoinPool, "balanceOf", [address], at),
    getPool: async () => ({ balance: await readView(MagicoinPool, "poolBalance"), issued: await readView(MagicoinPool, "issued") }),
    getWorkEvents,
    getJobView: async (jobId) => {
      const [exists, status, requester, worker, model, maxTokens, outputTokens, scorePpm, createdBlock] = await readView(MagicoinJobs, "getJob", [jobId]);
      return { exists, status, requester, worker, model, maxTokens, outputTokens, scorePpm, createdBlock };
    },
  };
}
