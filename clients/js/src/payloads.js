// Work payloads: the kind's system address (the transaction's `to`) and the RLP in `data`,
// encoded with viem's toRlp exactly as chain/payloads.py decodes them. Field bounds mirror that
// module, so a payload the chain would refuse is refused here, before anything is signed.
import { keccak256, stringToHex, toRlp } from "viem";

import { PayloadError } from "./errors.js";

/** @param {number} number */
function systemAddress(number) {
  return /** @type {`0x${string}`} */ (`0x${number.toString(16).padStart(40, "0")}`);
}

export const POOL_ADDRESS = systemAddress(0x1000);

// chain/transactions.py: KIND_BY_ADDRESS.
export const KIND_ADDRESSES = Object.freeze({
  register_worker: systemAddress(0x1001),
  inference_request: systemAddress(0x1002),
  inference_result: systemAddress(0x1003),
  attestation: systemAddress(0x1004),
  annotation_task: systemAddress(0x1005),
  annotation: systemAddress(0x1006),
  offering: systemAddress(0x1007),
  evidence: systemAddress(0x1008),
  register_annotator: systemAddress(0x1009),
  register_model: systemAddress(0x100a),
  declare_models: systemAddress(0x100b),
});

export const WORK_KINDS = Object.freeze(Object.keys(KIND_ADDRESSES));
// Kinds whose id is keccak(rlp([sender, nonce])) (chain/payloads.py: compute_work_id).
export const KINDS_WITH_WORK_ID = Object.freeze(["inference_request", "annotation_task"]);

// chain/payloads.py bounds.
const CHAT_ROLES = ["system", "user", "assistant"];
const MAX_MESSAGES = 64;
const MAX_TOKENS_LIMIT = 8192;
const MAX_TOKEN_ID = 2 ** 32 - 1;
const SCORE_PPM_MAX = 1_000_000;
const MAX_CAPACITY = 10 ** 9;
const MAX_LABELS = 32;
const MAX_LABEL_SIZE = 64;
const MAX_ANNOTATORS = 64;
const MAX_PURPOSE_SIZE = 64;
const MAX_OPERATOR_SIZE = 80;
const MAX_VOTE_SIZE = 1024;
const MAX_MODEL_NAME = 64;
const MAX_MODEL_CONTEXT = 2 ** 20;
const MAX_HELD_MODELS = 16;
const MAX_ENGINE_SIZE = 160;

const encoder = new TextEncoder();

function fail(field, got, expected) {
  throw new PayloadError(`payload field ${field} is out of range`, { got, expected });
}

/** An unsigned integer as RLP wants it: minimal big-endian bytes, 0 as the empty string. */
export function encodeUint(value, field, min = 0, max = Number.MAX_SAFE_INTEGER) {
  const isInteger = typeof value === "bigint" || Number.isSafeInteger(value);
  if (!isInteger || BigInt(value) < BigInt(min) || BigInt(value) > BigInt(max)) fail(field, value, `an integer ${min}..${max}`);
  const hex = BigInt(value).toString(16);
  if (hex === "0") return "0x";
  return /** @type {`0x${string}`} */ (`0x${hex.length % 2 ? "0" : ""}${hex}`);
}

/** A UTF-8 string whose encoding is min..max bytes long. */
function encodeText(value, field, min, max) {
  if (typeof value !== "string") fail(field, value, "a string");
  const size = encoder.encode(value).length;
  if (size < min || size > max) fail(field, size, `${min}..${max} bytes of UTF-8`);
  return stringToHex(value);
}

/** 0x-prefixed hex bytes, of an exact size when `size` is given. */
function encodeBytes(value, field, { size, min = 0, max = Infinity } = {}) {
  if (typeof value !== "string" || !/^0x([0-9a-fA-F]{2})*$/.test(value)) fail(field, value, "0x-prefixed hex bytes");
  const length = (value.length - 2) / 2;
  if (size !== undefined && length !== size) fail(field, length, `${size} bytes`);
  if (length < min || length > max) fail(field, length, `${min}..${max} bytes`);
  return /** @type {`0x${string}`} */ (value.toLowerCase());
}

const hash32 = (value, field) => encodeBytes(value, field, { size: 32 });

function requireList(value, field, min, max) {
  if (!Array.isArray(value)) fail(field, value, "an array");
  if (value.length < min || value.length > max) fail(field, value.length, `${min}..${max} items`);
  return value;
}

function requireDistinct(items, field) {
  if (new Set(items.map((item) => item.toLowerCase())).size !== items.length) fail(field, items, "distinct items");
}

const ENCODERS = {
  register_worker: ({ model, capacity, engine = "" }) =>
    [hash32(model, "model"), encodeUint(capacity, "capacity", 1, MAX_CAPACITY), encodeText(engine, "engine", 0, MAX_ENGINE_SIZE)],
  inference_request: ({ messages, model, maxTokens }) => [
    requireList(messages, "messages", 1, MAX_MESSAGES).map(({ role, content } = {}) => {
      if (!CHAT_ROLES.includes(role)) fail("messages.role", role, CHAT_ROLES);
      return [stringToHex(role), encodeText(content, "messages.content", 0, Infinity)];
    }),
    hash32(model, "model"),
    encodeUint(maxTokens, "maxTokens", 1, MAX_TOKENS_LIMIT),
  ],
  inference_result: ({ jobId, outputTokens }) => [
    hash32(jobId, "jobId"),
    requireList(outputTokens, "outputTokens", 0, MAX_TOKENS_LIMIT).map((token) => encodeUint(token, "outputTokens", 0, MAX_TOKEN_ID)),
  ],
  attestation: ({ jobId, scorePpm }) => [hash32(jobId, "jobId"), encodeUint(scorePpm, "scorePpm", 0, SCORE_PPM_MAX)],
  annotation_task: ({ content, labels, k }) => {
    const encoded = requireList(labels, "labels", 2, MAX_LABELS).map((label) => encodeText(label, "labels", 1, MAX_LABEL_SIZE));
    requireDistinct(encoded, "labels");
    return [encodeText(content, "content", 0, Infinity), encoded, encodeUint(k, "k", 1, MAX_ANNOTATORS)];
  },
  annotation: ({ taskId, labelIndex }) => [hash32(taskId, "taskId"), encodeUint(labelIndex, "labelIndex", 0, MAX_LABELS - 1)],
  offering: ({ purpose = "", jobId = "0x" } = {}) => {
    const job = encodeBytes(jobId, "jobId");
    if (job.length !== 2 && job.length !== 66) fail("jobId", jobId, "0x (none) or 32 bytes");
    return [encodeText(purpose, "purpose", 0, MAX_PURPOSE_SIZE), job];
  },
  evidence: ({ voteA, voteB }) => {
    const a = encodeBytes(voteA, "voteA", { min: 1, max: MAX_VOTE_SIZE });
    const b = encodeBytes(voteB, "voteB", { min: 1, max: MAX_VOTE_SIZE });
    if (a === b) fail("voteB", voteB, "a vote different from voteA");
    return [a, b];
  },
  register_annotator: ({ operator }) => [encodeText(operator, "operator", 1, MAX_OPERATOR_SIZE)],
  register_model: ({ sha256, name, chatTemplateSha256, vocabSha256, contextTokens }) => [
    hash32(sha256, "sha256"), encodeText(name, "name", 1, MAX_MODEL_NAME), hash32(chatTemplateSha256, "chatTemplateSha256"),
    hash32(vocabSha256, "vocabSha256"), encodeUint(contextTokens, "contextTokens", 1, MAX_MODEL_CONTEXT),
  ],
  declare_models: ({ models }) => {
    const encoded = requireList(models, "models", 0, MAX_HELD_MODELS).map((model) => hash32(model, "models"));
    requireDistinct(encoded, "models");
    return [encoded];
  },
};

/** Refuse anything but a known work kind. */
export function validateKind(kind) {
  if (!Object.hasOwn(KIND_ADDRESSES, kind)) {
    throw new PayloadError("unknown work kind", { got: kind, expected: WORK_KINDS });
  }
}

/**
 * The RLP `data` of a work transaction of `kind`.
 * @param {string} kind
 * @param {Record<string, unknown>} payload
 * @returns {`0x${string}`}
 */
export function encodePayload(kind, payload) {
  validateKind(kind);
  if (payload === null || typeof payload !== "object") throw new PayloadError(`a ${kind} payload is an object`, { got: payload, expected: "an object" });
  return toRlp(ENCODERS[kind](payload));
}

/** The id of a job or annotation task: keccak(rlp([sender, nonce])). */
export function computeWorkId(sender, nonce) {
  return keccak256(toRlp([encodeBytes(sender, "sender", { size: 20 }), encodeUint(nonce, "nonce")]));
}
