// An unmodified ethers v6 client against a magicoin node: the plain `wallet.sendTransaction({to, data})`
// then `wait()` for each send in the plan, then optional eth_call reads through the published ABI.
// Input (argv[2]): JSON {rpc, key, sends: [{name, to, data, value?, key?}], reads: [{name, to, abi, fn, args}],
//   eventsAbi?: [event ABI entries], queries?: [{name, to, abi, event, fromBlock}]}
// (a send's own `key` signs it instead of the plan's). With `eventsAbi`, each send reports its receipt's logs
// parsed by `Interface.parseLog`; each query runs `Contract.queryFilter(event, fromBlock)` (eth_getLogs).
// Output (stdout): one JSON object with a result per send and per read; errors are reported, not thrown.
import { readFileSync } from "node:fs";
import { Contract, Interface, JsonRpcProvider, Wallet } from "ethers";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const provider = new JsonRpcProvider(plan.rpc, undefined, { staticNetwork: true, pollingInterval: 100 });
const wallet = new Wallet(plan.key, provider);
const events = plan.eventsAbi ? new Interface(plan.eventsAbi) : null;
const plain = (value) => JSON.parse(JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v));

function parseLogs(logs) {
  return logs.map((log) => {
    const parsed = events.parseLog(log);
    return parsed && { name: parsed.name, address: log.address, args: plain(parsed.args.toObject()) };
  });
}

function describe(error) {
  return { code: error.code ?? null, message: error.shortMessage ?? error.message,
           rpc: error.info?.error?.message ?? error.error?.message ?? null };
}

async function send(step) {
  try {
    const signer = step.key ? new Wallet(step.key, provider) : wallet;
    const tx = await signer.sendTransaction({ to: step.to, data: step.data, value: step.value ?? 0 });
    const receipt = await tx.wait(1, 30000);
    return { name: step.name, type: tx.type, maxFeePerGas: String(tx.maxFeePerGas),
             maxPriorityFeePerGas: String(tx.maxPriorityFeePerGas), status: receipt.status, hash: tx.hash,
             events: events ? parseLogs(receipt.logs) : null };
  } catch (error) {
    return { name: step.name, error: describe(error) };
  }
}

async function read(step) {
  try {
    const contract = new Contract(step.to, step.abi, provider);
    const value = await contract[step.fn](...step.args);
    return { name: step.name, value: JSON.parse(JSON.stringify(value, (_k, v) => typeof v === "bigint" ? v.toString() : v)) };
  } catch (error) {
    return { name: step.name, error: { ...describe(error), reason: error.reason ?? null } };
  }
}

async function query(step) {
  try {
    const contract = new Contract(step.to, step.abi, provider);
    const found = await contract.queryFilter(step.event, step.fromBlock);
    return { name: step.name, events: found.map((e) => ({ name: e.eventName, args: plain(e.args.toObject()),
                                                          transactionHash: e.transactionHash })) };
  } catch (error) {
    return { name: step.name, error: describe(error) };
  }
}

const feeData = await provider.getFeeData();
const results = { feeData: { gasPrice: String(feeData.gasPrice), maxFeePerGas: String(feeData.maxFeePerGas),
                             maxPriorityFeePerGas: String(feeData.maxPriorityFeePerGas) }, sends: [], reads: [],
                 queries: [] };
for (const step of plan.sends ?? []) results.sends.push(await send(step));
for (const step of plan.reads ?? []) results.reads.push(await read(step));
for (const step of plan.queries ?? []) results.queries.push(await query(step));
console.log(JSON.stringify(results));
provider.destroy();
