// `curl` against `dsv3 serve` (with --api-key): the raw server-sent-event framing of streamed
// chat and completion answers (`data: {json}` events, each a single line followed by a blank
// line, then `data: [DONE]`), the headers, and raw error answers with OpenAI's error object.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { options, startServer, tinyModel, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
const KEY = `curl-test-key-${process.pid}`;

// Runs curl; returns { status, headers (lower-case names), body }. Fails the test if curl fails.
function curl(path, { body, key = KEY, method, extra = [] } = {}) {
  const args = ["-sS", "-N", "--max-time", "120", "-D", "-", "-o", "-"];
  if (key) args.push("-H", `Authorization: Bearer ${key}`);
  if (body !== undefined) args.push("-H", "Content-Type: application/json", "--data-binary",
                                    typeof body === "string" ? body : JSON.stringify(body));
  if (method) args.push("-X", method);
  args.push(...extra, `${server.url}${path}`);
  const r = spawnSync("curl", args, { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`curl could not run (${r.error.message}): scripts/setup installs it`);
  assert.equal(r.status, 0, `curl failed: ${r.stderr}`);
  const split = r.stdout.indexOf("\r\n\r\n");
  const head = r.stdout.slice(0, split).split("\r\n");
  const headers = {};
  for (const line of head.slice(1)) {
    const i = line.indexOf(":");
    headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(head[0].split(" ")[1]), headers, body: r.stdout.slice(split + 4) };
}

// Checks the SSE framing strictly and returns the parsed JSON events (without [DONE]).
function sseEvents(body) {
  assert.ok(body.endsWith("data: [DONE]\n\n"), `stream does not end with 'data: [DONE]\\n\\n': ${JSON.stringify(body.slice(-80))}`);
  const events = body.slice(0, -2).split("\n\n");
  const out = [];
  events.forEach((e, i) => {
    if (e.startsWith(":")) return;  // a comment (keep-alive)
    assert.ok(!e.includes("\n"), `event ${i} spans several lines: ${JSON.stringify(e)}`);
    assert.ok(e.startsWith("data: "), `event ${i} is not a data line: ${JSON.stringify(e)}`);
    const data = e.slice(6);
    if (i === events.length - 1) assert.equal(data, "[DONE]");
    else out.push(JSON.parse(data));
  });
  return out;
}

let server;
before(async () => {
  server = await startServer(o, tinyModel(o), ["--api-key", KEY, "--served-model-name", "tiny", "-t", "1",
                                               "-b", "2", "-c", "512"]);
});
after(async () => {
  if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
});

const chat = { model: "tiny", messages: [{ role: "user", content: "Hello there!" }], temperature: 0,
               ignore_eos: true, max_tokens: 10 };

describe("server-sent events", () => {
  test("chat stream with include_usage: framing, chunk order, text equals the whole answer", () => {
    const whole = curl("/v1/chat/completions", { body: chat });
    assert.equal(whole.status, 200);
    assert.match(whole.headers["content-type"], /^application\/json/);
    const answer = JSON.parse(whole.body);

    const r = curl("/v1/chat/completions", { body: { ...chat, stream: true, stream_options: { include_usage: true } } });
    assert.equal(r.status, 200);
    assert.match(r.headers["content-type"], /^text\/event-stream/);
    assert.match(r.headers["cache-control"] ?? "", /no-cache/);
    const ev = sseEvents(r.body);
    assert.equal(ev[0].choices[0].delta.role, "assistant");
    assert.equal(new Set(ev.map((e) => e.id)).size, 1);
    const usage = ev.at(-1);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, answer.usage);
    assert.equal(ev.at(-2).choices[0].finish_reason, "length");
    const text = ev.slice(0, -1).map((e) => e.choices[0].delta.content ?? "").join("");
    assert.equal(text, answer.choices[0].message.content);
  });

  test("completion stream without usage: text chunks, finish_reason, [DONE]", () => {
    const r = curl("/v1/completions", { body: { model: "tiny", prompt: "Once upon a time", max_tokens: 6,
                                               temperature: 0, ignore_eos: true, stream: true } });
    assert.equal(r.status, 200);
    const ev = sseEvents(r.body);
    for (const e of ev) {
      assert.equal(e.object, "text_completion");
      assert.equal(e.choices.length, 1);
      assert.equal(e.usage ?? null, null);
    }
    assert.equal(ev.at(-1).choices[0].finish_reason, "length");
  });
});

describe("error answers", () => {
  const errorObject = (r, status, code) => {
    assert.equal(r.status, status, r.body);
    assert.match(r.headers["content-type"], /^application\/json/);
    const j = JSON.parse(r.body);
    assert.deepEqual(Object.keys(j), ["error"]);
    assert.deepEqual(Object.keys(j.error).sort(), ["code", "message", "param", "type"]);
    assert.ok(j.error.message.length > 0);
    if (code !== undefined) assert.equal(j.error.code, code);
    return j.error;
  };

  test("malformed JSON: 400", () => {
    const e = errorObject(curl("/v1/chat/completions", { body: '{"messages": [' }), 400);
    assert.equal(e.type, "invalid_request_error");
  });
  test("wrong type: 400 naming the parameter", () => {
    const e = errorObject(curl("/v1/chat/completions", { body: { ...chat, max_tokens: "ten" } }), 400);
    assert.equal(e.param, "max_tokens");
  });
  test("a bad streamed request is answered 400 before any event", () => {
    const r = curl("/v1/chat/completions", { body: { ...chat, messages: [], stream: true } });
    errorObject(r, 400);
    assert.ok(!r.body.includes("data:"));
  });
  test("no key: 401 invalid_api_key; wrong key: 401", () => {
    errorObject(curl("/v1/chat/completions", { body: chat, key: null }), 401, "invalid_api_key");
    errorObject(curl("/v1/models", { key: "nope" }), 401, "invalid_api_key");
  });
  test("unknown path: 404", () => {
    errorObject(curl("/v1/nothing-here"), 404);
  });
  test("/health needs no key; /metrics counts the requests", () => {
    const h = curl("/health", { key: null });
    assert.equal(h.status, 200);
    assert.deepEqual(JSON.parse(h.body), { status: "ok" });
    const m = curl("/metrics");
    assert.equal(m.status, 200);
    assert.match(m.headers["content-type"], /^text\/plain/);
    assert.match(m.body, /^dsv3_requests_total\{endpoint="[^"]+",status="400"\} [1-9]/m);
    assert.match(m.body, /^dsv3_generation_tokens_total [1-9]/m);
  });
});
