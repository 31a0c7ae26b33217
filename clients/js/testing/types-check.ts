// Compiled by `tsc --noEmit` (npm test), never run: the published types accept the founding sketch's
// call and the documented uses, and refuse a policy the protocol does not have.
import { createMagicoin, type InferenceChunk, type InferenceResult, type SentWork, WorkFailedError } from "@magicoin/client";

export async function sketch(prompt: string): Promise<string> {
  const magicoin = createMagicoin({ rpcUrl: "http://127.0.0.1:8545" });
  const result: InferenceResult = await magicoin.p2p_inference(prompt, {routing: "whoever_needs_most", validation: "annotation_quality", reward: "muagic_on_recognition"});
  const job = await magicoin.waitForJob(result.jobId);
  const chunks: InferenceChunk[] = [];
  for await (const chunk of magicoin.streamInference(prompt, { maxTokens: 8 })) chunks.push(chunk);
  // @ts-expect-error: the network routes only to whoever needs most
  await magicoin.p2p_inference(prompt, { routing: "round_robin" });
  return `${result.text} ${job.status} ${chunks.length}`;
}

export async function work(key: `0x${string}`): Promise<bigint> {
  const magicoin = createMagicoin({ account: key });
  const sent: SentWork = await magicoin.sendWork("annotation_task", { content: "is the sky blue?", labels: ["yes", "no"], k: 1 });
  // @ts-expect-error: an annotation names its task
  await magicoin.sendWork("annotation", { labelIndex: 0 });
  try {
    await magicoin.sendWork("annotation", { taskId: sent.workId!, labelIndex: 0 });
  } catch (error) {
    if (error instanceof WorkFailedError) return error.receipt.blockNumber;
  }
  return magicoin.getRecognition(sent.from);
}
