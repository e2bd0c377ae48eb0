// Structured output through the official OpenAI Node SDK against `dsv3 serve` on the tiny
// random-weight model (its sampled text is noise, so only the constraint shapes it): every
// response_format json_schema answer is validated by ajv, a JSON-schema validator independent
// of the server's; json_object answers parse as objects; the SDK's parse() helper reads
// message.parsed; the same holds with MTP speculation (drafts are checked against the mask).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { options, requirePackage, startServer, tinyModel, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
const { default: OpenAI } = await requirePackage("openai");
const { default: Ajv } = await requirePackage("ajv");
const MODEL = "tiny";

// Bounded strings and arrays keep the noise short; the rest of the subset is exercised too.
const schema = {
  type: "object",
  properties: {
    name: { type: "string", minLength: 1, maxLength: 10 },
    kind: { enum: ["fruit", "vegetable", 3, null] },
    count: { type: "integer", minimum: -5, maximum: 120 },
    price: { type: "number" },
    tags: { type: "array", items: { type: "string", maxLength: 4 }, minItems: 1, maxItems: 3 },
    ok: { type: ["boolean", "null"] },
    size: { anyOf: [{ type: "integer", minimum: 0, maximum: 9 }, { const: "big" }] },
    meta: { type: "object", properties: { id: { type: "integer" } }, required: ["id"], additionalProperties: false },
  },
  required: ["name", "kind", "count", "tags", "meta"],
  additionalProperties: false,
};
const validate = new Ajv({ strict: true, allErrors: true }).compile(schema);
const responseFormat = { type: "json_schema", json_schema: { name: "item", schema, strict: true } };
const messages = [{ role: "user", content: "Describe an item as JSON." }];

function checkValid(text, why) {
  let value;
  assert.doesNotThrow(() => { value = JSON.parse(text); }, `${why}: not JSON: ${text}`);
  assert.ok(validate(value), `${why}: ${JSON.stringify(validate.errors)} in ${text}`);
  return value;
}

// The speculative server runs fewer requests: on random weights no draft is accepted, so
// speculation is pure overhead there.
for (const [label, extra, seeds] of [["plain decoding", [], [0, 1, 2, 3]], ["--speculative mtp:2", ["--speculative", "mtp:2"], [0]]]) {
  describe(`response_format (${label})`, () => {
    let server, client;
    before(async () => {
      server = await startServer(o, tinyModel(o), ["--served-model-name", MODEL, "-t", "1", "-b", "4", "-c", "1024",
                                                   ...extra]);
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 120_000 });
    });
    after(async () => {
      if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
    });

    test("json_schema answers validate against the schema (ajv), sampled and greedy", async () => {
      const runs = seeds.map((seed) => client.chat.completions.create({
        model: MODEL, messages, response_format: responseFormat, max_tokens: 600, temperature: 1, seed }));
      runs.push(client.chat.completions.create({ model: MODEL, messages, response_format: responseFormat,
                                                 max_tokens: 600, temperature: 0 }));
      for (const r of await Promise.all(runs)) {
        assert.equal(r.choices[0].finish_reason, "stop", r.choices[0].message.content);
        checkValid(r.choices[0].message.content, "json_schema");
      }
    });

    test("streamed json_schema: the joined deltas validate", async () => {
      const stream = await client.chat.completions.create({
        model: MODEL, messages, response_format: responseFormat, max_tokens: 600, temperature: 1, seed: 7,
        stream: true });
      let text = "", finish = null;
      for await (const chunk of stream) {
        const c = chunk.choices[0];
        if (c?.delta?.content) text += c.delta.content;
        if (c?.finish_reason) finish = c.finish_reason;
      }
      assert.equal(finish, "stop", text);
      checkValid(text, "streamed");
    });

    if (extra.length === 0) test("the SDK's parse() helper fills message.parsed", async () => {
      const r = await client.beta.chat.completions.parse({
        model: MODEL, messages, response_format: responseFormat, max_tokens: 600, temperature: 1, seed: 11 });
      const m = r.choices[0].message;
      assert.deepEqual(m.parsed, checkValid(m.content, "parse()"));
    });

    if (extra.length === 0) test("json_object answers are JSON objects", async () => {
      const r = await client.chat.completions.create({
        model: MODEL, messages, response_format: { type: "json_object" }, max_tokens: 80, temperature: 0.7, seed: 5 });
      const c = r.choices[0];
      // Free-form JSON may still be inside a string at max_tokens; a stopped answer is complete.
      if (c.finish_reason === "stop") assert.equal(typeof JSON.parse(c.message.content), "object");
      else assert.equal(c.finish_reason, "length");
      assert.match(c.message.content, /^\s*\{/);
    });
  });
}

describe("schemas outside the subset", () => {
  let server, client;
  before(async () => {
    server = await startServer(o, tinyModel(o), ["--served-model-name", MODEL, "-t", "1", "-c", "512"]);
    client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: "none", maxRetries: 0, timeout: 60_000 });
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
  });
  for (const [keyword, bad] of [
    ["pattern", { type: "string", pattern: "^a" }],
    ["$ref", { $ref: "#/$defs/x" }],
    ["format", { type: "object", properties: { d: { type: "string", format: "date" } } }],
  ]) {
    test(`'${keyword}': 400 naming the keyword`, async () => {
      await assert.rejects(client.chat.completions.create({
        model: MODEL, messages, max_tokens: 4,
        response_format: { type: "json_schema", json_schema: { name: "x", schema: bad } } }), (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, `${e}`);
        assert.equal(e.code, "unsupported_schema");
        assert.ok(e.message.includes(`'${keyword}'`), e.message);
        return true;
      });
    });
  }
});
