// The annotation page: the node's JSON-RPC (same origin, POST /), ethers v6 to decrypt the keystore, and the
// magicoin JS client (clients/js, bundled as vendor/magicoin-client.js) to encode and sign every work transaction
// with viem's default send. The key lives only in this module's memory; nothing is stored and no key or
// passphrase is sent.
import { createMagicoin } from "./vendor/magicoin-client.js";

const ethers = window.ethers;

const REFRESH_MS = 2000;
const RECEIPT_TIMEOUT_MS = 120000;
const MAX_LOGGED_TXS = 50;
const ANSWERED_VISIBLE_MS = 15000;  // an answered task stays on screen this long after its block

const state = {
  wallet: null,        // ethers.Wallet, only after a successful unlock
  client: null,        // the magicoin client signing with the wallet's key, only while signed in
  chainId: null,       // bigint, from eth_chainId
  head: null,          // bigint
  answered: new Map(), // taskId -> {label, hash, status, at}
  sending: Promise.resolve(),  // one signed transaction at a time, so nonces never collide
  refreshing: false,
  refreshAgain: false,  // a refresh asked for while one was running (e.g. after a receipt)
};

const $ = (id) => document.getElementById(id);

// --- JSON-RPC --------------------------------------------------------------------------------

class RPCError extends Error {
  // The node's refusals carry {got, expected} in `data`: show what was expected.
  constructor(method, error) {
    const expected = error.data && typeof error.data === "object" ? error.data.expected : null;
    super(`${error.message}${expected !== null && expected !== undefined ? ` (expected ${expected})` : ""}`);
    this.method = method;
    this.code = error.code;
    this.data = error.data;
  }
}

let rpcId = 0;

async function rpc(method, params = []) {
  const response = await fetch("/", {
    method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({jsonrpc: "2.0", id: ++rpcId, method, params}),
  });
  let body;
  try {
    body = await response.json();
  } catch (error) {
    throw new Error(`${method}: the node answered HTTP ${response.status} without JSON`);
  }
  if (body.error) throw new RPCError(method, body.error);
  return body.result;
}

const isMissingMethod = (error) => error instanceof RPCError && error.code === -32601;

// --- formatting ------------------------------------------------------------------------------

const toBig = (value) => (value === null || value === undefined ? null : BigInt(value));

function formatMuagic(wei) {
  const value = toBig(wei);
  if (value === null) return "–";
  const [whole, fraction = ""] = ethers.formatUnits(value, 18).split(".");
  const digits = fraction.slice(0, 6).replace(/0+$/, "");
  const shown = `${Number(whole).toLocaleString("en-US")}${digits ? "." + digits : ""}`;
  return value > 0n && shown === "0" ? "< 0.000001 MUAGIC" : `${shown} MUAGIC`;
}

function formatPpm(ppm) {
  const value = toBig(ppm);
  return value === null ? "–" : `${(Number(value) / 10000).toFixed(1)} %`;
}

const formatCount = (value) => (toBig(value) === null ? "–" : toBig(value).toLocaleString("en-US"));

function show(id, text) {
  const element = $(id);
  if (element.textContent !== text) element.textContent = text;
}

function setStatus(id, text, kind = "") {
  const element = $(id);
  element.textContent = text;
  element.dataset.kind = kind;
}

// --- signing in ------------------------------------------------------------------------------

async function readKeystoreText() {
  const file = $("keystore-file").files[0];
  if (file) return await file.text();
  return $("keystore-text").value.trim();
}

async function onUnlock(event) {
  event.preventDefault();
  const text = await readKeystoreText();
  const passphrase = $("passphrase").value;
  if (!text) return setStatus("signin-status", "Choose a keystore file or paste its JSON.", "error");
  let keystore;
  try {
    keystore = JSON.parse(text);
  } catch (error) {
    return setStatus("signin-status", "That is not JSON: a keystore is a JSON file (version 3).", "error");
  }
  if (!keystore || typeof keystore !== "object" || !(keystore.crypto || keystore.Crypto)) {
    return setStatus("signin-status", "That JSON is not a keystore: it has no \"crypto\" section.", "error");
  }
  const progress = $("unlock-progress");
  progress.hidden = false;
  progress.value = 0;
  $("unlock").disabled = true;
  setStatus("signin-status", "Decrypting in this browser (scrypt)…");
  const started = performance.now();
  try {
    const wallet = await ethers.Wallet.fromEncryptedJson(text, passphrase, (fraction) => {
      progress.value = fraction;
    });
    signIn(wallet, performance.now() - started);
  } catch (error) {
    const wrong = /password|invalid/i.test(String(error && error.message));
    setStatus("signin-status", wrong ? "Wrong passphrase for this keystore." : `Could not decrypt: ${error.message}`,
      "error");
  } finally {
    progress.hidden = true;
    $("unlock").disabled = false;
    $("passphrase").value = "";
  }
}

function signIn(wallet, elapsedMs) {
  state.wallet = wallet;
  state.client = createMagicoin({rpcUrl: location.origin, account: wallet.privateKey});
  state.answered.clear();
  $("register").disabled = false;
  $("keystore-file").value = "";
  $("keystore-text").value = "";
  setStatus("signin-status", `Unlocked in ${(elapsedMs / 1000).toFixed(1)} s.`, "ok");
  $("signin").hidden = true;
  $("account").hidden = false;
  $("tasks").hidden = false;
  $("activity").hidden = false;
  show("address", wallet.address);
  document.body.dataset.signedIn = "true";
  refresh();
}

function signOut() {
  state.wallet = null;
  state.client = null;
  state.answered.clear();
  $("signin").hidden = false;
  $("account").hidden = true;
  $("tasks").hidden = true;
  $("activity").hidden = true;
  $("task-list").replaceChildren();
  $("tx-log").replaceChildren();
  setStatus("signin-status", "Signed out: the key is gone from this page.");
  document.body.dataset.signedIn = "false";
}

// --- transactions ----------------------------------------------------------------------------

function sendWork(kind, payload, description) {
  // Chained so that each transaction takes the nonce after the previous one's.
  const sent = state.sending.then(() => signAndSend(kind, payload, description));
  state.sending = sent.catch(() => {});
  return sent;
}

async function signAndSend(kind, payload, description) {
  const client = state.client;
  if (!client) throw new Error("sign in first");
  // The client checks the payload, encodes it (RLP), signs and sends; the receipt is followed below, on the page.
  const {hash} = await client.sendWork(kind, payload, {wait: false});
  const entry = logTransaction(hash, description);
  return {hash, receipt: waitForReceipt(hash, entry)};
}

function logTransaction(hash, description) {
  const item = document.createElement("li");
  item.className = "tx";
  item.dataset.hash = hash;
  item.dataset.status = "pending";
  const what = document.createElement("span");
  what.textContent = description;
  const code = document.createElement("code");
  code.textContent = `${hash.slice(0, 10)}…${hash.slice(-6)}`;
  code.title = hash;
  const status = document.createElement("span");
  status.className = "tx-status";
  status.textContent = "pending";
  item.append(what, " ", code, " ", status);
  const log = $("tx-log");
  log.prepend(item);
  while (log.children.length > MAX_LOGGED_TXS) log.lastElementChild.remove();
  return item;
}

async function waitForReceipt(hash, entry) {
  const deadline = Date.now() + RECEIPT_TIMEOUT_MS;
  while (Date.now() < deadline) {
    let receipt = null;
    try {
      receipt = await rpc("eth_getTransactionReceipt", [hash]);
    } catch (error) {
      // a transient failure: try again
    }
    if (receipt) {
      const ok = BigInt(receipt.status) === 1n;
      entry.dataset.status = ok ? "success" : "failed";
      entry.querySelector(".tx-status").textContent = ok
        ? `included in block ${BigInt(receipt.blockNumber)}`
        : `refused in block ${BigInt(receipt.blockNumber)}: ${receipt.failureReason || "status 0"}`;
      refresh();
      return receipt;
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  entry.dataset.status = "timeout";
  entry.querySelector(".tx-status").textContent = "not included yet: check again later";
  return null;
}

async function onRegister() {
  const button = $("register");
  button.disabled = true;
  setStatus("annotator-status", "Signing the registration…");
  try {
    const {receipt} = await sendWork("register_annotator", {operator: "person"}, "register as annotator");
    setStatus("annotator-status", "Registration sent; waiting for a block…");
    const result = await receipt;
    if (!result || BigInt(result.status) !== 1n) {
      setStatus("annotator-status", `Registration not recorded: ${result ? result.failureReason : "timeout"}`,
        "error");
      button.disabled = false;
    }
  } catch (error) {
    setStatus("annotator-status", `Could not register: ${error.message}`, "error");
    button.disabled = false;
  }
}

async function onLabel(task, labelIndex, item) {
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  const note = item.querySelector(".task-status");
  note.textContent = `Signing “${task.labels[labelIndex]}”…`;
  try {
    const {hash, receipt} = await sendWork("annotation", {taskId: task.taskId, labelIndex},
      `label “${task.labels[labelIndex]}”`);
    state.answered.set(task.taskId, {label: labelIndex, hash, status: "pending"});
    note.textContent = `“${task.labels[labelIndex]}” sent; waiting for a block…`;
    const result = await receipt;
    const ok = result && BigInt(result.status) === 1n;
    state.answered.set(task.taskId, {label: labelIndex, hash, status: ok ? "success" : "failed", at: Date.now()});
    item.dataset.answered = ok ? "success" : "failed";
    note.textContent = ok
      ? `You answered “${task.labels[labelIndex]}” (block ${BigInt(result.blockNumber)}).`
      : `Not recorded: ${result ? result.failureReason || "status 0" : "not included yet"}`;
    if (!ok) {
      state.answered.delete(task.taskId);
      for (const button of item.querySelectorAll("button")) button.disabled = false;
    }
  } catch (error) {
    note.textContent = `Could not send: ${error.message}`;
    for (const button of item.querySelectorAll("button")) button.disabled = false;
  }
}

// --- reading the chain -----------------------------------------------------------------------

function renderAnnotator(record) {
  const registered = record !== null && record !== undefined;
  $("annotator-record").hidden = !registered;
  $("register-row").hidden = registered;
  document.body.dataset.annotator = registered ? "registered" : "unregistered";
  if (!registered) {
    const pending = $("register").disabled;
    if (!pending) setStatus("annotator-status", "Not registered yet: register to be drawn for tasks.");
    return;
  }
  setStatus("annotator-status", "Registered: the chain can draw you for tasks.", "ok");
  show("operator", String(record.operator));
  show("registered-at", formatCount(record.registeredAt));
  const seen = toBig(record.goldSeen) || 0n;
  show("accuracy", seen > 0n ? formatPpm(record.accuracyPpm) : `${formatPpm(record.accuracyPpm)} (prior)`);
  show("gold", `${formatCount(record.goldCorrect)} correct of ${formatCount(record.goldSeen)}`);
  const weight = toBig(record.weightPpm) || 0n;
  show("weight", weight > 0n ? formatPpm(weight) : "0 % (still being measured)");
  show("tasks-answered", `${formatCount(record.tasksAnswered)} of ${formatCount(record.tasksAssigned)} drawn`);
}

function renderTasks(tasks) {
  const list = $("task-list");
  const seen = new Set();
  for (const task of tasks) {
    seen.add(task.taskId);
    let item = list.querySelector(`li[data-task-id="${CSS.escape(task.taskId)}"]`);
    if (!item) list.append(item = buildTask(task));
    const left = state.head === null ? null : toBig(task.deadlineBlock) - state.head;
    item.querySelector(".deadline").textContent = left === null ? ""
      : left >= 0n ? `${left} blocks left (deadline ${toBig(task.deadlineBlock)})` : "deadline passed";
  }
  for (const item of [...list.children]) {
    // A task leaves the list once the chain no longer has it open for us; our answers stay in view a while.
    if (seen.has(item.dataset.taskId)) continue;
    const answered = state.answered.get(item.dataset.taskId);
    if (answered && (answered.at === undefined || Date.now() - answered.at < ANSWERED_VISIBLE_MS)) continue;
    state.answered.delete(item.dataset.taskId);
    item.remove();
  }
  setStatus("tasks-status", list.children.length ? ""
    : document.body.dataset.annotator === "registered"
      ? "No task is drawn for you right now. New tasks appear here as blocks are made."
      : "Register as an annotator to be drawn for tasks.");
}

function buildTask(task) {
  const item = document.createElement("li");
  item.className = "task";
  item.dataset.taskId = task.taskId;
  const content = document.createElement("p");
  content.className = "content";
  content.textContent = task.content === null || task.content === undefined ? "(content unavailable)" : task.content;
  const labels = document.createElement("div");
  labels.className = "labels";
  (task.labels || []).forEach((label, index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "label";
    button.dataset.labelIndex = String(index);
    button.textContent = label;
    button.addEventListener("click", () => onLabel(task, index, item));
    labels.append(button);
  });
  const meta = document.createElement("p");
  meta.className = "meta muted";
  const id = document.createElement("code");
  id.textContent = `${task.taskId.slice(0, 10)}…`;
  id.title = task.taskId;
  const deadline = document.createElement("span");
  deadline.className = "deadline";
  const k = toBig(task.k);
  meta.append("task ", id, ` · ${formatCount(k)} annotator${k === 1n ? "" : "s"} · `, deadline);
  const note = document.createElement("p");
  note.className = "task-status";
  item.append(content, labels, meta, note);
  const answered = state.answered.get(task.taskId);
  if (answered) {
    for (const button of labels.children) button.disabled = true;
    note.textContent = `You answered “${task.labels[answered.label]}”.`;
  }
  return item;
}

async function refresh() {
  if (state.refreshing) {
    state.refreshAgain = true;
    return;
  }
  state.refreshing = true;
  state.refreshAgain = false;
  try {
    if (state.chainId === null) state.chainId = BigInt(await rpc("eth_chainId"));
    state.head = BigInt(await rpc("eth_blockNumber"));
    show("network", `chain id ${state.chainId} · block ${state.head} · ${location.host}`);
    show("head", state.head.toLocaleString("en-US"));
    const address = state.wallet ? state.wallet.address : null;
    const [pool, account, annotator, tasks] = await Promise.allSettled([
      rpc("muagic_getPool", ["latest"]),
      address ? rpc("muagic_getAccount", [address, "latest"]) : null,
      address ? rpc("muagic_getAnnotator", [address]) : null,
      address ? rpc("muagic_getAssignedTasks", [address]) : null,
    ]);
    if (pool.status === "fulfilled") {
      show("pool-balance", formatMuagic(pool.value.balance));
      show("pool-issued", formatMuagic(pool.value.issued));
    }
    if (!address || state.wallet === null || state.wallet.address !== address) return;
    if (account.status === "fulfilled") {
      show("recognition", formatMuagic(account.value.recognition));
      show("balance", formatMuagic(account.value.balance));
      show("nonce", formatCount(account.value.nonce));
    }
    if (annotator.status === "fulfilled") renderAnnotator(annotator.value);
    else {
      // Without the record we cannot tell whether this account is registered: offer the registration anyway.
      $("register-row").hidden = false;
      setStatus("annotator-status", isMissingMethod(annotator.reason)
        ? "This node does not serve annotator records (muagic_getAnnotator)." : annotator.reason.message, "error");
    }
    if (tasks.status === "fulfilled") renderTasks(tasks.value || []);
    else setStatus("tasks-status", isMissingMethod(tasks.reason)
      ? "This node does not serve drawn tasks (muagic_getAssignedTasks)." : tasks.reason.message, "error");
  } catch (error) {
    show("network", `the node does not answer: ${error.message}`);
  } finally {
    state.refreshing = false;
    if (state.refreshAgain) refresh();
  }
}

function start() {
  if (!ethers) {
    setStatus("signin-status", "The keystore library did not load (vendor/ethers.umd.min.js).", "error");
    return;
  }
  $("signin-form").addEventListener("submit", onUnlock);
  $("signout").addEventListener("click", signOut);
  $("register").addEventListener("click", onRegister);
  $("keystore-file").addEventListener("change", () => { $("keystore-text").value = ""; });
  document.body.dataset.ready = "true";
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
