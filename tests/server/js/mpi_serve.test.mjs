// Continuous batching through `dsv3 serve` under `mpirun -np 2` (rank 0 serves HTTP and
// schedules, rank 1 follows its step records), driven by the official OpenAI Node SDK: several
// concurrent streaming greedy requests, more than the server's slots and of different lengths
// (so requests join and leave a running batch, and prompts are prefilled in chunks between decode
// steps), give the same text as the same requests to one process; so do the two choices of an
// n = 2 request, which share the prompt's rows by a cache copy. The model is the trained
// models/dsv3-kjv with the float32 kernels and an F32 latent cache: its logits move by ~5e-6
// between rank counts (tests/mpi: MpiInference.TrainedKjvSameAnswerOnOneTwoAndThreeRanks), far
// below the top-2 gaps of greedy text; the default BF16 kernels can flip a near-tie (docs/distributed.md).
// ctest runs it only in a build with MPI (tests/mpi/CMakeLists.txt passes --mpirun).
import { test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { options, requirePackage, startServer, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
if (!o.mpirun) throw new Error("missing --mpirun CMD (the mpirun command line)");
const { default: OpenAI } = await requirePackage("openai");
const model = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "models", "dsv3-kjv");
// 3 slots for 6 requests; prompts prefilled 8 tokens per step between decode steps.
const serveArgs = ["--kernels", "f32", "--kv-cache", "f32", "-t", "1", "-b", "3", "-c", "256", "--prefill-chunk", "8",
                   "--served-model-name", "kjv"];
const prompts = [
  "In the beginning God created the heaven and the earth. And the earth was without form, and void;",
  "The LORD is my shepherd; I shall not want.",
  "And Jesus answered and said unto them, Verily I say unto you,",
  "Blessed are the poor in spirit: for theirs is the kingdom of heaven. Blessed are they that mourn:",
  "And the LORD spake unto Moses, saying,",
  "For God so loved the world,",
];

// Streams every prompt at once (max_tokens 20, 26, ...); returns the texts and the server's
// counts of generated tokens and batched decode steps.
async function answers(server) {
  const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 300_000 });
  const texts = await Promise.all(prompts.map(async (prompt, i) => {
    const maxTokens = 20 + 6 * i;
    const stream = await client.completions.create({ model: "kjv", prompt, max_tokens: maxTokens, temperature: 0,
                                                     ignore_eos: true, stream: true,
                                                     stream_options: { include_usage: true } });
    let text = "", usage = null, finish = null;
    const ids = new Set();
    for await (const chunk of stream) {
      ids.add(chunk.id);
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) { text += c.text; finish = c.finish_reason ?? finish; }
    }
    assert.equal(ids.size, 1, `prompt ${i}: chunks of one stream carry one id`);
    assert.equal(finish, "length", `prompt ${i}`);
    assert.equal(usage?.completion_tokens, maxTokens, `prompt ${i}`);
    return text;
  }));
  // n = 2 on a prompt of several prefill chunks: one choice prefills, the other copies its rows
  // (under mpirun a copy record, which rank 1 must repeat on its mirrors or its attention reads
  // garbage).
  const multi = await client.completions.create({ model: "kjv", prompt: prompts[3], max_tokens: 12, temperature: 0,
                                                  ignore_eos: true, n: 2 });
  const choices = multi.choices.map((c) => c.text);
  const metrics = await (await fetch(`${server.url}/metrics`)).text();
  const counter = (name) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(metrics)?.[1]);
  return { texts, choices, tokens: counter("dsv3_generation_tokens_total"), steps: counter("dsv3_decode_steps_total") };
}

test("six concurrent streams on 3 slots: mpirun -np 2 gives one process's text", async () => {
  const one = await startServer(o, model, serveArgs);
  let alone;
  try {
    alone = await answers(one);
  } finally {
    assert.equal(await one.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${one.log()}`);
  }
  const mpi = await startServer(o, model, serveArgs, { launcher: [...o.mpirun.split(/\s+/).filter(Boolean), "-np", "2"] });
  let split;
  try {
    split = await answers(mpi);
    assert.equal(await mpi.stopRank0(), 0, `the job did not exit 0 on SIGTERM to rank 0:\n${mpi.log()}`);
  } finally {
    await mpi.stop();
  }
  console.log(`one process: ${alone.tokens} tokens in ${alone.steps} decode steps; ` +
              `np 2: ${split.tokens} tokens in ${split.steps} steps`);
  for (let i = 0; i < prompts.length; i++) {
    assert.ok(alone.texts[i].length > 0, `prompt ${i}: empty answer`);
    assert.equal(split.texts[i], alone.texts[i], `prompt ${i}: np 2 and one process differ`);
  }
  assert.equal(alone.choices.length, 2);
  assert.equal(alone.choices[0], alone.choices[1], "greedy choices differ");
  assert.deepEqual(split.choices, alone.choices, "n = 2: np 2 and one process differ");
  // The requests were batched: fewer decode steps than tokens, on both servers.
  assert.ok(split.steps < split.tokens, `np 2: ${split.steps} decode steps for ${split.tokens} tokens`);
  assert.ok(alone.steps < alone.tokens, `one process: ${alone.steps} decode steps for ${alone.tokens} tokens`);
});
