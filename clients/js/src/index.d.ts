// Types of @magicoin/client (hand-written next to the ESM source; checked by `tsc --noEmit` in `npm test`).
import type { Account, Address, Chain, Hex, PublicClient, TransactionReceipt, WalletClient } from "viem";

export type Routing = "whoever_needs_most";
export type Validation = "annotation_quality";
export type Reward = "muagic_on_recognition";
export type JobStatus = "waiting" | "assigned" | "resulted" | "attesting" | "accepted" | "failed_audit" | "unverified" | "expired" | (string & {});

export declare const ROUTINGS: readonly Routing[];
export declare const VALIDATIONS: readonly Validation[];
export declare const REWARDS: readonly Reward[];
export declare const FINAL_JOB_STATUSES: readonly ["accepted", "failed_audit", "unverified", "expired"];
export declare const DEFAULTS: Readonly<{
  rpcUrl: string; model: string; maxTokens: number; timeoutMs: number; pollIntervalMs: number;
  maxResponseBytes: number; maxStreamBytes: number; maxLineBytes: number;
}>;

export interface ErrorDetails {
  code?: string | number;
  got?: unknown;
  expected?: unknown;
  cause?: unknown;
}

export declare class MagicoinError extends Error {
  constructor(reason: string, details?: ErrorDetails);
  /** The message without got/expected. */
  readonly reason: string;
  readonly code: string | number;
  readonly got: unknown;
  readonly expected: unknown;
}
export declare class PolicyError extends MagicoinError {}
export declare class PayloadError extends MagicoinError {}
export declare class NodeRefusedError extends MagicoinError {
  /** The HTTP status, when the refusal was one. */
  readonly status: number | undefined;
}
export declare class NodeUnreachableError extends MagicoinError {}
export declare class ResponseTooLargeError extends MagicoinError {}
export declare class StreamError extends MagicoinError {}
export declare class TimeoutError extends MagicoinError {}
export declare class WorkFailedError extends MagicoinError {
  readonly receipt: TransactionReceipt & { failureReason?: string | null };
  readonly hash: Hex;
}
export declare function formatExcerpt(value: unknown): string;
export declare function validatePolicy(name: string, value: unknown, allowed: readonly string[]): void;

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}
export type Prompt = string | ChatMessage[];

export interface InferenceOptions {
  routing?: Routing;
  validation?: Validation;
  reward?: Reward;
  /** At most this many generated tokens (default 256). */
  maxTokens?: number;
  /** "default" (the network's embedded model), a model name or a sha256 hex. */
  model?: string;
  /** Wait until the job is final on chain (accepted, failed_audit, unverified or expired). */
  waitForVerification?: boolean;
  timeoutMs?: number;
}

/** One streamed piece of a completion. */
export interface InferenceChunk {
  content: string;
  finishReason: "stop" | "length" | null;
  model: string;
  jobId: Hex;
  worker: Address;
  requestTx: Hex;
}

/** muagic_getJob's record (quantities are hex strings, as eth_ methods give them). */
export interface JobRecord {
  jobId: Hex;
  requester: Address;
  model: Hex;
  maxTokens: Hex;
  status: JobStatus;
  worker: Address | null;
  verified?: boolean;
  final?: boolean;
  score?: Hex | null;
  reward?: Hex | null;
  [field: string]: unknown;
}

export declare class InferenceResult {
  readonly text: string;
  readonly jobId: Hex;
  readonly worker: Address;
  readonly requestTx: Hex;
  readonly model: string;
  readonly finishReason: "stop" | "length" | string;
  /** The job's record once waited for (waitForVerification), else null. */
  readonly job: JobRecord | null;
  readonly verified: boolean;
  toString(): string;
}

export interface WaitForJobOptions {
  timeoutMs?: number;
  pollIntervalMs?: number;
  /** Return once the job has one of these statuses (default: the final ones). */
  statuses?: readonly string[];
}

export interface WorkPayloads {
  register_worker: { model: Hex; capacity: number | bigint; engine?: string };
  inference_request: { messages: ChatMessage[]; model: Hex; maxTokens: number | bigint };
  inference_result: { jobId: Hex; outputTokens: (number | bigint)[] };
  attestation: { jobId: Hex; scorePpm: number | bigint };
  annotation_task: { content: string; labels: string[]; k: number | bigint };
  annotation: { taskId: Hex; labelIndex: number | bigint };
  offering: { purpose?: string; jobId?: Hex };
  evidence: { voteA: Hex; voteB: Hex };
  register_annotator: { operator: string };
  register_model: { sha256: Hex; name: string; chatTemplateSha256: Hex; vocabSha256: Hex; contextTokens: number | bigint };
  declare_models: { models: Hex[] };
}
export type WorkKind = keyof WorkPayloads;

export declare const WORK_KINDS: readonly WorkKind[];
export declare const KIND_ADDRESSES: Readonly<Record<WorkKind, Address>>;
export declare const POOL_ADDRESS: Address;
export declare function encodePayload<K extends WorkKind>(kind: K, payload: WorkPayloads[K]): Hex;
export declare function computeWorkId(sender: Address, nonce: number | bigint): Hex;

export interface SendWorkOptions {
  /** Wei offered into the pool; only an offering may carry value. */
  value?: bigint | number;
  /** Wait for the receipt and require status success (default true). */
  wait?: boolean;
  timeoutMs?: number;
}

export interface SentWork {
  kind: WorkKind;
  hash: Hex;
  nonce: number;
  from: Address;
  /** The job or task id, for inference_request and annotation_task; else null. */
  workId: Hex | null;
  receipt: (TransactionReceipt & { failureReason?: string | null }) | null;
}

export interface MagicoinOptions {
  /** The node's HTTP server, JSON-RPC and /v1 (default http://127.0.0.1:8545). */
  rpcUrl?: string;
  /** Signs work transactions: a viem account or a 0x private key. */
  account?: Account | Hex;
  /** The chain, if known; otherwise it is built from eth_chainId on first use. */
  chain?: Chain;
  model?: string;
  maxTokens?: number;
  timeoutMs?: number;
  pollIntervalMs?: number;
  maxResponseBytes?: number;
  maxStreamBytes?: number;
  maxLineBytes?: number;
  fetch?: typeof globalThis.fetch;
}

export interface Magicoin {
  readonly rpcUrl: string;
  readonly publicClient: PublicClient;
  readonly account: Account | null;
  getWalletClient(): Promise<WalletClient>;
  /** Any JSON-RPC method (muagic_*, eth_*), through the bounded viem transport. */
  request<T = unknown>(method: string, params?: unknown[]): Promise<T>;
  /** The founding sketch's call: a completion served by the network, with its job id. */
  p2p_inference(prompt: Prompt, options?: InferenceOptions & { stream?: false }): Promise<InferenceResult>;
  p2p_inference(prompt: Prompt, options: InferenceOptions & { stream: true }): Promise<AsyncGenerator<InferenceChunk, void, undefined>>;
  streamInference(prompt: Prompt, options?: InferenceOptions): AsyncGenerator<InferenceChunk, void, undefined>;
  /** muagic_getJob: null while the request is not yet in a block. */
  getJob(jobId: Hex): Promise<JobRecord | null>;
  waitForJob(jobId: Hex, options?: WaitForJobOptions): Promise<JobRecord>;
  /** Sign a work transaction with viem's walletClient.sendTransaction({to, data}) and wait for its receipt. */
  sendWork<K extends WorkKind>(kind: K, payload: WorkPayloads[K], options?: SendWorkOptions): Promise<SentWork>;
  /** recognitionOf(address) through eth_call and the published ABI. */
  getRecognition(address: Address, at?: { blockNumber?: bigint }): Promise<bigint>;
  getBalance(address: Address, at?: { blockNumber?: bigint }): Promise<bigint>;
  getPool(): Promise<{ balance: bigint; issued: bigint }>;
  /** Work events (receipt logs of the system addresses) decoded with the published ABI: of one receipt,
   *  or of a block range through eth_getLogs; optionally one event name and indexed-argument filter. */
  getWorkEvents(options: {
    receipt?: TransactionReceipt; fromBlock?: bigint; toBlock?: bigint; eventName?: string | string[];
    args?: Record<string, unknown>;
  }): Promise<Array<{ eventName: string; args: Record<string, unknown>; address: Address; blockNumber: bigint | null;
    transactionHash: Hex | null; logIndex: number | null }>>;
  /** MagicoinJobs.getJob(jobId) through eth_call; an unknown id reads as exists false. */
  getJobView(jobId: Hex): Promise<{
    exists: boolean; status: number; requester: Address; worker: Address; model: Hex;
    maxTokens: bigint; outputTokens: bigint; scorePpm: bigint; createdBlock: bigint;
  }>;
}

export declare function createMagicoin(options?: MagicoinOptions): Magicoin;

export declare const MagicoinPool: { readonly address: Address; readonly abi: readonly unknown[] };
export declare const MagicoinJobs: { readonly address: Address; readonly abi: readonly unknown[] };
export declare const MagicoinWorkers: { readonly address: Address; readonly abi: readonly unknown[] };
export declare const MagicoinAnnotations: { readonly address: Address; readonly abi: readonly unknown[] };
/** Every event entry of the four system contracts' published ABI. */
export declare const WORK_EVENTS_ABI: readonly unknown[];
