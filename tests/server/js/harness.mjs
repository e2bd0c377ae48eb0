// Shared pieces of the client-side server tests (run by ctest, see tests/server/CMakeLists.txt):
// command-line options, the tiny test checkpoint (written once with `dsv3 synth`), and a
// `dsv3 serve` child process on a free loopback port that is always stopped, even when a test
// fails or this process is killed.
//
// Options (after the script name): --dsv3 BIN --tokenizer DIR --workdir DIR [--mpirun CMD]
//   BIN: the dsv3 binary; DIR (tokenizer): third_party/npm/deepseek_v3; workdir: the test's
//   binary folder (build/tests/server), where the model and the artifacts go; CMD: the mpirun
//   command line (with its options, split at spaces) for tests of a server under mpirun.
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

export function options() {
  const o = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const m = /^--(dsv3|tokenizer|workdir|mpirun)$/.exec(argv[i]);
    if (!m || i + 1 >= argv.length)
      throw new Error(`usage: ${process.argv[1]} --dsv3 BIN --tokenizer DIR --workdir DIR [--mpirun CMD] (at '${argv[i]}')`);
    o[m[1]] = argv[++i];
  }
  for (const k of ["dsv3", "tokenizer", "workdir"])
    if (!o[k]) throw new Error(`missing --${k}`);
  if (!fs.existsSync(o.dsv3)) throw new Error(`dsv3 binary not found: ${o.dsv3}`);
  if (!fs.existsSync(path.join(o.tokenizer, "tokenizer.json")))
    throw new Error(`tokenizer not found in ${o.tokenizer}: run scripts/setup (scripts/fetch-tokenizer)`);
  fs.mkdirSync(o.workdir, { recursive: true });
  return o;
}

// Imports an npm package from tests/server/js/node_modules, failing (never skipping) with the
// fix when scripts/setup has not installed it.
export async function requirePackage(name) {
  const require = createRequire(path.join(here, "package.json"));
  let resolved;
  try {
    resolved = require.resolve(name);
  } catch {
    throw new Error(`npm package '${name}' is not installed in ${here}/node_modules: run scripts/setup ` +
                    `(it runs 'npm ci' there)`);
  }
  return import(resolved);
}

// The tiny random-weight checkpoint with DeepSeek-V3's real tokenizer, written once into
// WORKDIR/tiny_model_js (atomically renamed in, so parallel tests share one copy).
export function tinyModel(o) {
  const dir = path.join(o.workdir, "tiny_model_js");
  if (fs.existsSync(path.join(dir, "config.json"))) return dir;
  const tmp = `${dir}.tmp${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const r = spawnSync(o.dsv3, ["synth", "--preset", "tiny", "--out", tmp, "--tokenizer", o.tokenizer],
                      { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`dsv3 synth failed (${r.status}): ${r.stderr}`);
  try {
    fs.renameSync(tmp, dir);
  } catch {
    fs.rmSync(tmp, { recursive: true, force: true });  // another test won the race: use its copy
  }
  return dir;
}

// The trained model embedded in the repository (models/dsv3-kjv, a 2048-token vocabulary).
export function kjvModel() {
  return path.resolve(here, "../../../models/dsv3-kjv");
}

// Starts `dsv3 serve --model MODEL --port 0 ARGS...` and resolves to { url, port, log(), stop() }
// once it prints its port; `launcher` goes before it (e.g. ["mpirun", ..., "-np", "2"]).
// stop() sends SIGTERM and resolves to the exit code (SIGKILL and -1 after `graceMs`); under
// mpirun, the SIGTERM goes to mpirun, which passes it on to the ranks, SIGKILLs them a second
// later and exits 1 by its own rule: stop a served job cleanly with stopRank0() instead. The server runs under a small sh guard that holds a pipe from this process:
// when the pipe closes (stop(), or this process exits or is killed, even by SIGKILL) the guard
// sends the server SIGTERM, so no server outlives its test.
export async function startServer(o, model, args = [], { startMs = 120000, launcher = [] } = {}) {
  // fd 3 of the guard is the read end of our stdin pipe; `read` returns at EOF.
  const guard = 'exec 3<&0 </dev/null; "$@" 3<&- & pid=$!; ' +
                '(read -r _ <&3; kill -TERM "$pid" 2>/dev/null) & reader=$!; exec 3<&-; ' +
                'wait "$pid"; rc=$?; kill "$reader" 2>/dev/null; exit "$rc"';
  const child = spawn("sh", ["-c", guard, "sh", ...launcher, o.dsv3, "serve", "--model", model,
                             "--host", "127.0.0.1", "--port", "0", ...args],
                      { stdio: ["pipe", "inherit", "pipe"] });
  let log = "";
  const exited = new Promise((resolve) => child.on("exit", (code, sig) => resolve(code ?? (sig ? -1 : 0))));
  const killOnExit = () => { try { child.kill("SIGKILL"); } catch {} };
  process.on("exit", killOnExit);
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dsv3 serve printed no port in ${startMs} ms:\n${log}`)), startMs);
    child.stderr.on("data", (d) => {
      log += d.toString();
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    exited.then((code) => { clearTimeout(timer); reject(new Error(`dsv3 serve exited (${code}) before listening:\n${log}`)); });
  });
  let stopped = null;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    log: () => log,
    // Under an mpirun launcher: SIGTERM to rank 0 alone, as docs/distributed.md tells users to
    // stop a served job (rank 0 drains and tells the followers to leave); resolves to mpirun's
    // exit code (-1 after `graceMs`).
    stopRank0(graceMs = 60000) {
      const pid = descendants(child.pid).find((p) => environ(p).includes("OMPI_COMM_WORLD_RANK=0"));
      if (pid === undefined) throw new Error(`no rank 0 under the launcher (pid ${child.pid}):\n${log}`);
      process.kill(pid, "SIGTERM");
      let timer;
      const late = new Promise((resolve) => { timer = setTimeout(() => resolve(-1), graceMs); });
      return Promise.race([exited, late]).finally(() => clearTimeout(timer));
    },
    // Stops the server (SIGTERM through the guard: its pipe is closed) and returns its exit code.
    stop(graceMs = 60000) {
      if (stopped) return stopped;
      child.stdin.end();
      stopped = new Promise((resolve) => {
        const timer = setTimeout(() => { killOnExit(); resolve(-1); }, graceMs);
        exited.then((code) => { clearTimeout(timer); process.off("exit", killOnExit); resolve(code); });
      });
      return stopped;
    },
  };
}

// The processes below `pid` (from /proc's parent links) and one's environment (NUL-separated).
function descendants(pid) {
  const parent = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}  // gone meanwhile
  }
  const out = [];
  for (let frontier = [pid]; frontier.length;) {
    const next = [...parent].filter(([, pp]) => frontier.includes(pp)).map(([p]) => p);
    out.push(...next);
    frontier = next;
  }
  return out;
}
function environ(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/environ`, "latin1").split("\0");
  } catch {
    return [];
  }
}

// Ends this process with a failure after `ms` (a hung test must not wait for ctest's timeout;
// the "exit" handlers above still kill the servers).
export function watchdog(ms) {
  setTimeout(() => {
    console.error(`watchdog: test still running after ${ms / 1000} s, giving up`);
    process.exit(1);
  }, ms).unref();
}

// Small helpers.
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
