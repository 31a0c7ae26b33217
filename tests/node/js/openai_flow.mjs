// The unmodified `openai` npm package against a magicoin node's /v1: list and retrieve models, a streamed chat
// completion (with usage), and a legacy text completion, streamed and not.
// Input (argv[2]): JSON {baseURL, prompt, maxTokens}. Output (stdout): one JSON object with what each call returned;
// errors are reported, not thrown (run by tests/node/test_openai_live_node.py).
import { readFileSync } from "node:fs";
import OpenAI from "openai";

const plan = JSON.parse(readFileSync(process.argv[2], "utf8"));
const client = new OpenAI({ baseURL: plan.baseURL, apiKey: "unused", maxRetries: 0, timeout: 60000 });

function describe(error) {
  return { status: error.status ?? null, code: error.code ?? null, message: error.message };
}

async function step(name, run) {
  try {
    return await run();
  } catch (error) {
    return { error: describe(error), step: name };
  }
}

const results = {};
results.models = await step("models", async () => {
  const page = await client.models.list();
  return page.data.map((model) => ({ id: model.id, sha256: model.sha256 ?? null }));
});
results.retrieved = await step("retrieve", async () => {
  const named = results.models[1] ?? results.models[0];
  const bySha = named.sha256 ? await client.models.retrieve(named.sha256) : null;
  return { byId: await client.models.retrieve(named.id), bySha };
});
results.missing = await step("missing", async () => client.models.retrieve("no-such-model"));

results.chat = await step("chat", async () => {
  const stream = await client.chat.completions.create({
    model: "default", messages: [{ role: "user", content: plan.prompt }], max_tokens: plan.maxTokens,
    stream: true, stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  const withChoices = chunks.filter((chunk) => chunk.choices.length);
  return {
    text: withChoices.map((chunk) => chunk.choices[0].delta.content ?? "").join(""),
    contentChunks: withChoices.filter((chunk) => chunk.choices[0].delta.content).length,
    finishReasons: withChoices.map((chunk) => chunk.choices[0].finish_reason).filter((reason) => reason),
    usage: chunks[chunks.length - 1].usage ?? null,
    magicoin: chunks[0].magicoin,
    id: chunks[0].id,
  };
});

results.completion = await step("completion", async () => {
  const completion = await client.completions.create({ model: "default", prompt: plan.prompt,
                                                       max_tokens: plan.maxTokens });
  return { text: completion.choices[0].text, finishReason: completion.choices[0].finish_reason,
           usage: completion.usage, magicoin: completion.magicoin, id: completion.id, object: completion.object };
});

results.completionStream = await step("completionStream", async () => {
  const stream = await client.completions.create({ model: "default", prompt: plan.prompt, max_tokens: plan.maxTokens,
                                                   stream: true });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return { text: chunks.map((chunk) => chunk.choices[0]?.text ?? "").join(""),
           finishReasons: chunks.map((chunk) => chunk.choices[0]?.finish_reason).filter((reason) => reason) };
});

console.log(JSON.stringify(results));
