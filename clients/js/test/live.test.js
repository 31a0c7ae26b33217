// The client against a real devnet (testing/devnet.js: `python -m node.devnet`, 3 validators on
// 127.0.0.1 serving the embedded default model): the founding sketch's call verbatim, streaming,
// job status, unmodified viem sends of each zero-balance work kind, and the refusals.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { createPublicClient, createWalletClient, defineChain, http, parseEventLogs } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";

import { KIND_ADDRESSES, MagicoinAnnotations, PolicyError, WORK_EVENTS_ABI, WorkFailedError, computeWorkId, createMagicoin, encodePayload } from "../src/index.js";
import { startDevnet } from "../testing/devnet.js";

const HEX32 = /^0x[0-9a-f]{64}$/;
let devnet;
let magicoin;

before(async () => {
  devnet = await startDevnet({ nodes: 3 });
  magicoin = createMagicoin({ rpcUrl: devnet.rpcUrls[0] });
}, { timeout: 300_000 });

after(async () => {
  await devnet?.stop();
});

test("the founding sketch's call verbatim: a completion with its job id, then the job accepted by its audit", { timeout: 150_000 }, async () => {
  const prompt = "Say hello.";
  const result = await magicoin.p2p_inference(prompt, {routing: "whoever_needs_most", validation: "annotation_quality", reward: "muagic_on_recognition"});
  assert.ok(result.text.trim().length > 0, "the network generated text");
  assert.equal(String(result), result.text);
  assert.match(result.jobId, HEX32);
  assert.ok(["stop", "length"].includes(result.finishReason));

  const job = await magicoin.waitForJob(result.jobId, { timeoutMs: 120_000 });
  assert.equal(job.status, "accepted", JSON.stringify(job));
  assert.equal(job.verified, true);
  assert.equal(job.worker, result.worker);
  assert.equal(job.requestTx, result.requestTx);
  assert.deepEqual(job.messages, [{ role: "user", content: prompt }]);
  assert.ok(job.audited && job.attestations.length >= 1, "audited by a committee");
  assert.ok(Number(job.score) >= 980_000, `scored at or above the acceptance threshold: ${job.score}`);
});

test("streaming gives the same greedy text as a plain completion, chunk by chunk, under one job", { timeout: 120_000 }, async () => {
  const prompt = "Name three colours.";
  const stream = await magicoin.p2p_inference(prompt, { maxTokens: 24, stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 2, `several chunks: ${chunks.length}`);
  assert.equal(new Set(chunks.map((c) => c.jobId)).size, 1);
  assert.ok(["stop", "length"].includes(chunks.at(-1).finishReason));
  const streamed = chunks.map((c) => c.content).join("");
  assert.ok(streamed.trim().length > 0);

  const plain = await magicoin.p2p_inference(prompt, { maxTokens: 24 });
  assert.notEqual(plain.jobId, chunks[0].jobId, "a second job");
  assert.equal(streamed, plain.text, "greedy decoding: the same prompt gives the same text");
});

test("job status: muagic_getJob and the eth_call view agree on a job; unknown ids read as absent", { timeout: 60_000 }, async () => {
  const result = await magicoin.p2p_inference("Say yes.", { maxTokens: 4 });
  const record = await magicoin.waitForJob(result.jobId, { statuses: ["resulted", "attesting", "accepted", "failed_audit", "unverified", "expired"], timeoutMs: 30_000 });
  assert.equal(record.jobId, result.jobId);
  assert.equal(Number(record.maxTokens), 4);
  const view = await magicoin.getJobView(result.jobId);
  assert.equal(view.exists, true);
  assert.equal(view.maxTokens, 4n);
  assert.equal(view.requester.toLowerCase(), record.requester);
  assert.equal(view.model, record.model);

  const unknown = `0x${"ab".repeat(32)}`;
  assert.equal(await magicoin.getJob(unknown), null);
  assert.equal((await magicoin.getJobView(unknown)).exists, false);
});

test("recognition through eth_call and the published ABI equals muagic_getRecognition", { timeout: 30_000 }, async () => {
  const validator = devnet.genesis.validators[0].address;
  const block = await magicoin.publicClient.getBlockNumber();
  const viaCall = await magicoin.getRecognition(validator, { blockNumber: block });
  const viaRpc = BigInt(await magicoin.request("muagic_getRecognition", [validator, `0x${block.toString(16)}`]));
  assert.equal(viaCall, viaRpc);
  assert.ok(viaCall >= BigInt(devnet.genesis.validators[0].recognition), "at least its genesis recognition");
  assert.equal(await magicoin.getRecognition(privateKeyToAccount(generatePrivateKey()).address), 0n);
});

test("an unknown routing option is refused with a clear error", async () => {
  await assert.rejects(
    magicoin.p2p_inference("Say hello.", { routing: "round_robin", validation: "annotation_quality", reward: "muagic_on_recognition" }),
    (error) => error instanceof PolicyError && /unsupported routing/.test(error.message) && /whoever_needs_most/.test(error.message));
});

test("unmodified viem: the default sendTransaction({to, data}) completes for each zero-balance work kind; a transfer is refused in words", { timeout: 120_000 }, async () => {
  const rpcUrl = devnet.rpcUrls[1];
  const publicClient = createPublicClient({ transport: http(rpcUrl), pollingInterval: 250 });
  const chain = defineChain({ id: await publicClient.getChainId(), name: "magicoin devnet",
    nativeCurrency: { name: "MUAGIC", symbol: "MUAGIC", decimals: 18 }, rpcUrls: { default: { http: [rpcUrl] } } });
  const send = async (account, to, data) => {
    const wallet = createWalletClient({ account, chain, transport: http(rpcUrl) });
    const hash = await wallet.sendTransaction({ to, data });
    const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 250, timeout: 30_000 });
    assert.equal(receipt.status, "success", `${to}: ${receipt.failureReason}`);
    assert.equal(receipt.type, "eip1559");
    return publicClient.getTransaction({ hash });
  };

  // A person registers as an annotator through the client's own signer (sendWork, viem underneath).
  const annotatorKey = generatePrivateKey();
  const annotator = createMagicoin({ rpcUrl, account: annotatorKey });
  const registered = await annotator.sendWork("register_annotator", { operator: "person" });
  assert.equal(registered.receipt.status, "success");

  // A fresh account with nothing in its balance: each kind by plain viem.
  const fresh = privateKeyToAccount(generatePrivateKey());
  const model = (await publicClient.request({ method: "muagic_getWorkers", params: [] }))[0].model;
  await send(fresh, KIND_ADDRESSES.register_annotator, encodePayload("register_annotator", { operator: `model:${model.slice(2)}` }));
  // k above the eligible count: every eligible annotator is drawn, the person above among them.
  const task = await send(fresh, KIND_ADDRESSES.annotation_task, encodePayload("annotation_task", { content: "Is the sky blue?", labels: ["yes", "no"], k: 64 }));
  const taskId = computeWorkId(fresh.address, task.nonce);
  // Its logs, as viem reads events: from the receipt, through eth_getLogs, and through filters.
  const taskReceipt = await publicClient.getTransactionReceipt({ hash: task.hash });
  const [posted] = parseEventLogs({ abi: WORK_EVENTS_ABI, logs: taskReceipt.logs, eventName: "AnnotationTaskPosted" });
  assert.equal(posted.args.taskId, taskId);
  assert.equal(posted.args.requester.toLowerCase(), fresh.address.toLowerCase());
  assert.equal(posted.address, MagicoinAnnotations.address);
  const postedEvent = WORK_EVENTS_ABI.find((e) => e.name === "AnnotationTaskPosted");
  const found = await publicClient.getLogs({ address: MagicoinAnnotations.address, event: postedEvent,
    args: { taskId }, fromBlock: taskReceipt.blockNumber, toBlock: taskReceipt.blockNumber });
  assert.deepEqual(found.map((log) => log.transactionHash), [task.hash]);
  const viaClient = await magicoin.getWorkEvents({ fromBlock: taskReceipt.blockNumber, toBlock: taskReceipt.blockNumber, eventName: "AnnotationTaskPosted" });
  assert.ok(viaClient.some((e) => e.args.taskId === taskId));
  const blockFilter = await publicClient.createBlockFilter();
  const eventFilter = await publicClient.createEventFilter({ address: MagicoinAnnotations.address, events: WORK_EVENTS_ABI });
  const drawn = await annotator.request("muagic_getAnnotationTask", [taskId]);
  assert.ok(drawn.annotators.includes(annotator.account.address.toLowerCase()), JSON.stringify(drawn.annotators));
  // Someone the chain did not draw: included, not applied, and the client says why. (Sent while the person
  // has not answered, so the task cannot have closed: it closes once every drawn annotator has answered.)
  const outsider = createMagicoin({ rpcUrl, account: generatePrivateKey() });
  await assert.rejects(outsider.sendWork("annotation", { taskId, labelIndex: 1 }),
    (error) => error instanceof WorkFailedError && error.receipt.status === "reverted" && /not drawn for this task/.test(error.message));
  const answered = await annotator.sendWork("annotation", { taskId, labelIndex: 0 });
  assert.equal(answered.receipt.status, "success");
  const annotated = await magicoin.getWorkEvents({ receipt: answered.receipt, eventName: "Annotated" });
  assert.deepEqual(annotated.map((e) => [e.args.taskId, e.args.labelIndex]), [[taskId, 0n]]);
  const newBlocks = await publicClient.getFilterChanges({ filter: blockFilter });
  assert.ok(newBlocks.includes(answered.receipt.blockHash), "the block filter saw the annotation's block");
  const changes = await publicClient.getFilterChanges({ filter: eventFilter });
  assert.ok(changes.some((log) => log.eventName === "Annotated" && log.args.taskId === taskId), JSON.stringify(changes.map((l) => l.eventName)));
  assert.equal(await publicClient.uninstallFilter({ filter: blockFilter }), true);
  assert.equal(await publicClient.uninstallFilter({ filter: eventFilter }), true);
  const after = await annotator.request("muagic_getAnnotationTask", [taskId]);
  assert.ok(after.annotations.some((a) => a.address === annotator.account.address.toLowerCase() && Number(a.label) === 0));

  // Last: a worker that will never serve would be routed jobs, so the inference tests come first.
  const worker = privateKeyToAccount(generatePrivateKey());
  await send(worker, KIND_ADDRESSES.register_worker, encodePayload("register_worker", { model, capacity: 10, engine: "backend=viem-test" }));
  // Zero-balance senders were charged nothing. (The person is left out: once the task closes, the
  // recognised label earns them MUAGIC, and when that block lands is a race this test does not run.)
  for (const address of [fresh.address, worker.address, outsider.account.address]) {
    assert.equal(await magicoin.getBalance(address), 0n, "nothing was charged");
  }

  const wallet = createWalletClient({ account: fresh, chain, transport: http(rpcUrl) });
  await assert.rejects(wallet.sendTransaction({ to: privateKeyToAccount(generatePrivateKey()).address, value: 1n }),
    (error) => /MUAGIC never moves between accounts/.test(error.message));
});
