// Forced tool calls through the official OpenAI Node SDK against `dsv3 serve` on the embedded
// dsv3-kjv model, which never calls tools by itself: with tool_choice "required" or a named
// function, generation is constrained to DeepSeek's call syntax with arguments in the tool's
// parameter schema. runTools() calls our functions with the parsed arguments (validated by ajv)
// and replays the results; the streaming helper assembles the calls from the deltas. The model
// would go on calling for ever (it cannot choose to stop), so these requests allow one call
// (parallel_tool_calls false); several calls are the grammar tests' business.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { kjvModel, options, requirePackage, startServer, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
const { default: OpenAI } = await requirePackage("openai");
const { default: Ajv } = await requirePackage("ajv");
const MODEL = "kjv";

const schemas = {
  get_weather: {
    type: "object",
    properties: {
      city: { type: "string", minLength: 1, maxLength: 12 },
      unit: { enum: ["celsius", "fahrenheit"] },
      days: { type: "integer", minimum: 1, maximum: 7 },
    },
    required: ["city", "unit"],
    additionalProperties: false,
  },
  find_verse: {
    type: "object",
    properties: { book: { enum: ["Genesis", "Exodus", "Psalms"] }, chapter: { type: "integer", minimum: 1, maximum: 150 } },
    required: ["book", "chapter"],
    additionalProperties: false,
  },
};
const ajv = new Ajv({ strict: true, allErrors: true });
const validators = Object.fromEntries(Object.entries(schemas).map(([n, s]) => [n, ajv.compile(s)]));
const tools = Object.entries(schemas).map(([name, parameters]) => ({
  type: "function", function: { name, description: `The ${name.replace("_", " ")} tool.`, parameters } }));
const messages = [{ role: "user", content: "What is the weather in Jerusalem?" }];

function checkArgs(name, args) {
  assert.ok(name in validators, `unknown tool ${name}`);
  assert.ok(validators[name](args), `${name}: ${JSON.stringify(validators[name].errors)} in ${JSON.stringify(args)}`);
}

describe("tool_choice on dsv3-kjv", () => {
  let server, client;
  before(async () => {
    server = await startServer(o, kjvModel(), ["--served-model-name", MODEL, "-t", "1", "-b", "2", "-c", "2048"]);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 120_000 });
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
  });

  test("without tool_choice the model answers in text", async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages, tools, max_tokens: 24, temperature: 0 });
    assert.equal(r.choices[0].message.tool_calls, undefined);
    assert.notEqual(r.choices[0].finish_reason, "tool_calls");
  });

  test("runTools with a named function calls it with schema-valid arguments", async () => {
    const seen = [];
    const runner = client.beta.chat.completions.runTools({
      model: MODEL, messages, max_tokens: 200, temperature: 0, parallel_tool_calls: false,
      tools: tools.map((t) => ({ type: "function", function: { ...t.function, parse: JSON.parse,
                                                                function: (args) => { seen.push([t.function.name, args]); return { temperature: 21 }; } } })),
      tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    const completion = await runner.finalChatCompletion();
    const c = completion.choices[0];
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.content, null);
    assert.equal(c.message.tool_calls.length, 1);
    for (const call of c.message.tool_calls) {
      assert.match(call.id, /\S/);
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather");
      checkArgs("get_weather", JSON.parse(call.function.arguments));
    }
    assert.equal(seen.length, 1);  // a named function: runTools stops after calling it
    assert.equal(seen[0][0], "get_weather");
    checkArgs(...seen[0]);
    const toolMsg = runner.messages.find((m) => m.role === "tool");
    assert.equal(toolMsg.tool_call_id, c.message.tool_calls[0].id);
  });

  test("streamed runTools with \"required\": every round calls a tool, results are replayed", async () => {
    const seen = [];
    const runner = client.beta.chat.completions.runTools({
      model: MODEL, messages, max_tokens: 200, temperature: 1, seed: 4, stream: true, parallel_tool_calls: false,
      tools: tools.map((t) => ({ type: "function", function: { ...t.function, parse: JSON.parse,
                                                                function: (args) => { seen.push([t.function.name, args]); return "done"; } } })),
      tool_choice: "required",
    }, { maxChatCompletions: 2 });
    const completions = [];
    runner.on("chatCompletion", (cc) => completions.push(cc));
    await runner.done();
    assert.equal(completions.length, 2);  // the second request carries the first round's call and result
    for (const cc of completions) {
      assert.equal(cc.choices[0].finish_reason, "tool_calls");
      assert.equal(cc.choices[0].message.tool_calls.length, 1);
    }
    assert.equal(seen.length, 2);
    for (const call of seen) checkArgs(...call);
    assert.equal(runner.messages.filter((m) => m.role === "tool").length, 2);
  });

  test("the streaming helper assembles forced calls from the deltas", async () => {
    const stream = client.beta.chat.completions.stream({
      model: MODEL, messages, tools, tool_choice: "required", parallel_tool_calls: false, max_tokens: 300,
      temperature: 1, seed: 9 });
    const deltas = {}, done = [];
    stream.on("tool_calls.function.arguments.delta", (e) => { deltas[e.index] = (deltas[e.index] ?? "") + e.arguments_delta; });
    stream.on("tool_calls.function.arguments.done", (e) => done.push(e));
    const final = await stream.finalChatCompletion();
    const c = final.choices[0];
    assert.equal(c.finish_reason, "tool_calls");
    assert.equal(c.message.tool_calls.length, 1);
    assert.equal(done.length, c.message.tool_calls.length);
    c.message.tool_calls.forEach((call, i) => {
      assert.equal(done[i].name, call.function.name);
      assert.equal(done[i].arguments, call.function.arguments);
      assert.equal(deltas[i], call.function.arguments);
      checkArgs(call.function.name, JSON.parse(call.function.arguments));
    });
  });

  test("a forced call whose schema is outside the subset is a 400 naming the keyword", async () => {
    const bad = [{ type: "function", function: { name: "dated", parameters: {
      type: "object", properties: { day: { type: "string", format: "date" } } } } }];
    await assert.rejects(client.chat.completions.create({ model: MODEL, messages, tools: bad, tool_choice: "required",
                                                          max_tokens: 8 }), (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
      assert.equal(e.code, "unsupported_schema");
      assert.ok(e.message.includes("'format'"), e.message);
      assert.equal(e.param, "tools[0].function.parameters/properties/day/format");
      return true;
    });
    // With tool_choice "auto" the schema is only shown to the model: accepted.
    const r = await client.chat.completions.create({ model: MODEL, messages, tools: bad, max_tokens: 4 });
    assert.equal(r.choices.length, 1);
  });
});
