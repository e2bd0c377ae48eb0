// The official OpenAI Node SDK (npm `openai`, pinned in package.json) against `dsv3 serve` on
// loopback with --api-key: model listing, chat completions whole and streamed (with
// stream_options.include_usage), stop strings, completions (text and token-id prompts, whole and
// streamed), and the SDK's typed errors for 400 and 401.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { options, requirePackage, startServer, tinyModel, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
const { default: OpenAI } = await requirePackage("openai");
const KEY = `sdk-test-key-${process.pid}`;
const MODEL = "tiny";

let server, client;
before(async () => {
  server = await startServer(o, tinyModel(o), ["--api-key", KEY, "--served-model-name", MODEL, "-t", "1",
                                               "-b", "4", "-c", "512"]);
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: KEY, maxRetries: 0, timeout: 120_000 });
});
after(async () => {
  if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
});

const greedy = { model: MODEL, temperature: 0, ignore_eos: true };  // ignore_eos: vLLM's extension
const messages = [{ role: "system", content: "You are terse." }, { role: "user", content: "Name three rivers." }];

describe("models", () => {
  test("list has the served model with max_model_len", async () => {
    const ids = [];
    for await (const m of client.models.list()) {
      ids.push(m.id);
      assert.equal(m.object, "model");
      assert.equal(typeof m.created, "number");
      assert.equal(m.max_model_len, 512);
    }
    assert.deepEqual(ids, [MODEL]);
  });
});

describe("chat completions", () => {
  let whole;
  test("non-streaming: OpenAI's response shape", async () => {
    whole = await client.chat.completions.create({ ...greedy, messages, max_tokens: 16 });
    assert.match(whole.id, /^chatcmpl-/);
    assert.equal(whole.object, "chat.completion");
    assert.equal(whole.model, MODEL);
    assert.equal(typeof whole.created, "number");
    assert.equal(whole.choices.length, 1);
    const c = whole.choices[0];
    assert.equal(c.index, 0);
    assert.equal(c.message.role, "assistant");
    assert.equal(typeof c.message.content, "string");
    assert.ok(c.message.content.length > 0, "empty answer");
    assert.equal(c.finish_reason, "length");
    assert.equal(whole.usage.completion_tokens, 16);
    assert.ok(whole.usage.prompt_tokens > 5);
    assert.equal(whole.usage.total_tokens, whole.usage.prompt_tokens + 16);
  });

  test("streaming with include_usage: chunks add up to the same greedy answer", async () => {
    const stream = await client.chat.completions.create({ ...greedy, messages, max_tokens: 16, stream: true,
                                                          stream_options: { include_usage: true } });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    assert.ok(chunks.length >= 3, `only ${chunks.length} chunks`);
    const ids = new Set(chunks.map((c) => c.id));
    assert.equal(ids.size, 1, "chunks of one stream carry one id");
    for (const c of chunks) {
      assert.equal(c.object, "chat.completion.chunk");
      assert.equal(c.model, MODEL);
    }
    assert.equal(chunks[0].choices[0].delta.role, "assistant");
    const usageChunk = chunks.at(-1);
    assert.deepEqual(usageChunk.choices, [], "the usage chunk has no choices");
    assert.deepEqual(usageChunk.usage, whole.usage);
    const choiceChunks = chunks.slice(0, -1);
    for (const c of choiceChunks) assert.equal(c.usage ?? null, null, "usage only in the last chunk");
    assert.equal(choiceChunks.at(-1).choices[0].finish_reason, "length");
    for (const c of choiceChunks.slice(0, -1)) assert.equal(c.choices[0].finish_reason ?? null, null);
    const text = choiceChunks.map((c) => c.choices[0].delta.content ?? "").join("");
    assert.equal(text, whole.choices[0].message.content);
  });

  test("streaming without include_usage has no usage chunk", async () => {
    const stream = await client.chat.completions.create({ ...greedy, messages, max_tokens: 4, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    for (const c of chunks) assert.equal(c.choices.length, 1);
    assert.equal(chunks.at(-1).choices[0].finish_reason, "length");
  });

  test("a stop string ends the answer before it, finish_reason stop", async () => {
    const full = whole.choices[0].message.content;
    const stop = [...full].slice(4, 7).join("");  // code points, not UTF-16 halves
    assert.ok(stop.length > 0);
    const r = await client.chat.completions.create({ ...greedy, messages, max_tokens: 16, stop: [stop] });
    assert.equal(r.choices[0].message.content, full.slice(0, full.indexOf(stop)));
    assert.equal(r.choices[0].finish_reason, "stop");
  });

  test("max_completion_tokens and content parts", async () => {
    const r = await client.chat.completions.create({
      ...greedy, max_completion_tokens: 16,
      messages: [messages[0], { role: "user", content: [{ type: "text", text: "Name three " }, { type: "text", text: "rivers." }] }],
    });
    assert.equal(r.choices[0].message.content, whole.choices[0].message.content);
  });
});

describe("completions", () => {
  let whole;
  test("non-streaming text prompt", async () => {
    whole = await client.completions.create({ ...greedy, prompt: "Once upon a time", max_tokens: 12 });
    assert.match(whole.id, /^cmpl-/);
    assert.equal(whole.object, "text_completion");
    assert.equal(whole.model, MODEL);
    assert.equal(whole.choices[0].index, 0);
    assert.ok(whole.choices[0].text.length > 0);
    assert.equal(whole.choices[0].finish_reason, "length");
    assert.equal(whole.usage.completion_tokens, 12);
  });

  test("streaming: same text", async () => {
    const stream = await client.completions.create({ ...greedy, prompt: "Once upon a time", max_tokens: 12, stream: true,
                                                     stream_options: { include_usage: true } });
    let text = "", usage = null, finish = null;
    for await (const chunk of stream) {
      assert.equal(chunk.object, "text_completion");
      if (chunk.usage) usage = chunk.usage;
      for (const c of chunk.choices) { text += c.text; finish = c.finish_reason ?? finish; }
    }
    assert.equal(text, whole.choices[0].text);
    assert.equal(finish, "length");
    assert.equal(usage.completion_tokens, 12);
  });

  test("token-id prompt", async () => {
    const r = await client.completions.create({ ...greedy, prompt: [0, 17, 42, 1000], max_tokens: 5 });
    assert.equal(r.usage.prompt_tokens, 4);
    assert.equal(r.usage.completion_tokens, 5);
  });
});

describe("errors", () => {
  test("wrong api key: AuthenticationError 401 invalid_api_key", async () => {
    const bad = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "wrong", maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, `${e}`);
      assert.equal(e.status, 401);
      assert.equal(e.code, "invalid_api_key");
      return true;
    });
    await assert.rejects(bad.chat.completions.create({ ...greedy, messages, max_tokens: 4 }),
                         (e) => e instanceof OpenAI.AuthenticationError);
  });

  for (const [what, body, param] of [
    ["empty messages", { messages: [] }, "messages"],
    ["unknown role", { messages: [{ role: "wizard", content: "hi" }] }, "messages[0].role"],
    ["max_tokens 0", { messages, max_tokens: 0 }, "max_tokens"],
    ["n 0", { messages, n: 0 }, "n"],
    ["malformed tool", { messages, tools: [{ type: "function", function: { name: "bad name!", parameters: {} } }] }, "tools"],
    ["tool_choice without tools", { messages, tool_choice: "required" }, "tool_choice"],
  ]) {
    test(`bad request (${what}): BadRequestError 400 with an error object`, async () => {
      await assert.rejects(client.chat.completions.create({ model: MODEL, ...body }), (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
        assert.equal(e.status, 400);
        assert.equal(e.type, "invalid_request_error");
        assert.ok(e.message.length > 0);
        if (param) assert.equal(e.param, param);
        return true;
      });
    });
  }

  test("prompt beyond the context: 400 context_length_exceeded", async () => {
    await assert.rejects(client.completions.create({ model: MODEL, prompt: "word ".repeat(2000), max_tokens: 4 }), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, "context_length_exceeded");
      return true;
    });
  });

  test("the server still answers after the errors", async () => {
    const r = await client.chat.completions.create({ ...greedy, messages, max_tokens: 16 });
    assert.equal(r.choices[0].finish_reason, "length");
  });
});
