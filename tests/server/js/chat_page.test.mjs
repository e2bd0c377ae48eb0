// Headless Chromium (Debian's `chromium`, driven by npm `playwright-core`) on the chat page that
// `dsv3 serve --api-key KEY` serves at `/`: the key field, sending a message with Enter, the
// streamed answer (equal to the API's greedy answer for the same conversation), Stop during a
// long answer, the screenshot artifact (WORKDIR/artifacts/chat_page.png), and New chat.
// The browser is /usr/bin/chromium, or $DSV3_CHROMIUM; a missing browser fails the test.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { options, requirePackage, startServer, tinyModel, watchdog } from "./harness.mjs";

watchdog(600_000);
const o = options();
const playwright = await requirePackage("playwright-core");
const chromium = playwright.chromium ?? playwright.default.chromium;
const KEY = `page-test-key-${process.pid}`;
const executablePath = process.env.DSV3_CHROMIUM || "/usr/bin/chromium";
const artifacts = path.join(o.workdir, "artifacts");
const screenshot = path.join(artifacts, "chat_page.png");

let server, browser, page;
const consoleErrors = [];
before(async () => {
  if (!fs.existsSync(executablePath))
    throw new Error(`${executablePath} not found: scripts/setup installs Debian's chromium (or set DSV3_CHROMIUM)`);
  server = await startServer(o, tinyModel(o), ["--api-key", KEY, "--served-model-name", "tiny", "-t", "1",
                                               "-b", "2", "-c", "2048"]);
  browser = await chromium.launch({
    executablePath,
    headless: true,
    timeout: 120_000,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions"],
  });
  page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  page.setDefaultTimeout(120_000);
  page.on("pageerror", (e) => consoleErrors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(`console: ${m.text()}`); });
});
after(async () => {
  if (browser) await browser.close();
  if (server) assert.equal(await server.stop(), 0, `dsv3 serve did not exit 0 on SIGTERM:\n${server.log()}`);
});

// What /v1/chat/completions answers for `messages` (greedy), straight from the API.
async function apiAnswer(messages, maxTokens) {
  const r = await fetch(`${server.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ model: "tiny", messages, temperature: 0, max_tokens: maxTokens }),
  });
  assert.equal(r.status, 200);
  const j = await r.json();
  return { content: j.choices[0].message.content, finish: j.choices[0].finish_reason, tokens: j.usage.completion_tokens };
}

// Polls /metrics until `dsv3_requests_running 0` (the server has freed every slot).
async function waitIdle(ms = 60_000) {
  const end = Date.now() + ms;
  for (;;) {
    const m = await (await fetch(`${server.url}/metrics`, { headers: { Authorization: `Bearer ${KEY}` } })).text();
    if (/^dsv3_requests_running 0$/m.test(m)) return;
    if (Date.now() > end) assert.fail(`requests still running after ${ms} ms:\n${m}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const assistantText = (i) => page.locator(".msg.assistant").nth(i).locator(":scope > div").first();
const assistantMeta = (i) => page.locator(".msg.assistant").nth(i).locator(".meta");

test("the page loads without the key, then lists the model once the key is entered", async () => {
  await page.goto(server.url + "/");
  assert.equal(await page.title(), "dsv3 chat");
  for (const id of ["input", "send", "stop", "new", "key", "temp", "maxtok", "log"])
    assert.equal(await page.locator(`#${id}`).count(), 1, `#${id} missing`);
  // Without the key the model request is refused and the page says so.
  await page.waitForFunction(() => document.getElementById("model").textContent.length > 0);
  assert.doesNotMatch(await page.locator("#model").textContent(), /^model:/);
  await page.fill("#key", KEY);
  await page.press("#key", "Tab");  // "change" stores the key and reloads the model name
  await page.waitForFunction(() => document.getElementById("model").textContent === "model: tiny");
  assert.equal(await page.evaluate(() => localStorage.getItem("dsv3.apiKey")), KEY);
});

test("a message sent with Enter gets the streamed greedy answer", async () => {
  await page.fill("#temp", "0");
  await page.fill("#maxtok", "24");
  // Count the changes to the conversation (one per streamed delta, whatever the network's chunking).
  await page.evaluate(() => {
    window.__updates = 0;
    new MutationObserver((records) => { window.__updates += records.length; }).observe(document.getElementById("log"),
                                                           { childList: true, subtree: true, characterData: true });
  });
  await page.fill("#input", "Hello, who are you?");
  const response = page.waitForResponse((r) => r.url().endsWith("/v1/chat/completions"));
  await page.press("#input", "Enter");
  await page.locator(".msg.user").first().waitFor();
  assert.equal(await page.locator(".msg.user").first().textContent(), "Hello, who are you?");
  assert.equal(await page.inputValue("#input"), "", "the input is cleared after sending");
  await assistantMeta(0).filter({ hasText: "finish:" }).waitFor();
  const shown = await assistantText(0).textContent();
  const api = await apiAnswer([{ role: "user", content: "Hello, who are you?" }], 24);
  assert.ok(shown.length > 0, "empty answer on the page");
  assert.equal(shown, api.content, "the page shows the API's greedy answer");
  const meta = await assistantMeta(0).textContent();
  assert.ok(meta.includes(`finish: ${api.finish}`) && meta.includes(`${api.tokens} tokens`), meta);
  // Every streamed content delta the page received changed the page (how many tokens a delta
  // carries depends on how fast the server's steps outrun its writes, so count the deltas).
  const deltas = (await (await response).text()).split("\n\n").filter((e) => {
    if (!e.startsWith("data: ") || e === "data: [DONE]") return false;
    const c = JSON.parse(e.slice(6)).choices?.[0];
    return Boolean(c && c.delta && c.delta.content);
  }).length;
  assert.ok(deltas > 0, "no content delta in the stream");
  const updates = await page.evaluate(() => window.__updates);
  assert.ok(updates >= deltas, `the answer was not shown delta by delta (${updates} DOM changes, ${deltas} deltas)`);
  assert.ok(await page.isEnabled("#send"));
  assert.ok(await page.isDisabled("#stop"));
});

test("Stop ends a long answer; the conversation goes on", async () => {
  await page.fill("#maxtok", "1900");
  await page.fill("#input", "Tell me a long story.");
  await page.click("#send");
  await page.waitForFunction(() => !document.getElementById("stop").disabled);
  assert.ok(await page.isDisabled("#send"), "Send is disabled while an answer streams");
  await page.waitForFunction(() => document.querySelectorAll(".msg.assistant")[1]?.querySelector(":scope > div")?.textContent.length > 0);
  await page.click("#stop");
  await assistantMeta(1).filter({ hasText: "finish: stopped" }).waitFor();
  assert.ok(await page.isEnabled("#send"));
  assert.ok(await page.isDisabled("#stop"));
  assert.ok(!/\d+ tokens/.test(await assistantMeta(1).textContent()), "a stopped answer has no usage");
  await waitIdle();
  // The server freed the slot: a third message is answered in full, with the whole history.
  const history = [{ role: "user", content: "Hello, who are you?" },
                   { role: "assistant", content: await assistantText(0).textContent() },
                   { role: "user", content: "Tell me a long story." },
                   { role: "assistant", content: await assistantText(1).textContent() },
                   { role: "user", content: "Thanks." }];
  await page.fill("#maxtok", "12");
  await page.fill("#input", "Thanks.");
  await page.press("#input", "Enter");
  await assistantMeta(2).filter({ hasText: "finish:" }).waitFor();
  assert.equal(await assistantText(2).textContent(), (await apiAnswer(history, 12)).content);
  assert.equal(await page.locator(".msg.user").count(), 3);
});

test("screenshot artifact is a non-empty PNG", async () => {
  fs.mkdirSync(artifacts, { recursive: true });
  fs.rmSync(screenshot, { force: true });
  await page.screenshot({ path: screenshot, fullPage: true });
  const png = fs.readFileSync(screenshot);
  assert.ok(png.length > 2000, `${png.length} bytes`);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "PNG signature");
  assert.equal(png.subarray(12, 16).toString("latin1"), "IHDR");
  const width = png.readUInt32BE(16), height = png.readUInt32BE(20);
  assert.equal(width, 1000);
  assert.ok(height >= 700, `height ${height}`);
  console.log(`screenshot: ${screenshot} (${png.length} bytes, ${width}x${height})`);
});

test("New chat clears the conversation", async () => {
  await page.click("#new");
  assert.equal(await page.locator(".msg").count(), 0);
  await page.fill("#maxtok", "24");
  await page.fill("#input", "Hello, who are you?");
  await page.press("#input", "Enter");
  await assistantMeta(0).filter({ hasText: "finish:" }).waitFor();
  // No history is sent after New chat: the same answer as the first conversation's.
  const api = await apiAnswer([{ role: "user", content: "Hello, who are you?" }], 24);
  assert.equal(await assistantText(0).textContent(), api.content);
  assert.deepEqual(consoleErrors.filter((e) => !/401|Unauthorized/.test(e)), []);
});
