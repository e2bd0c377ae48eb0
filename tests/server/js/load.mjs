// The bounded load test in the suite: starts `dsv3 serve` (32 slots) on the tiny test model and
// runs tests/server/load.py against it: 32 concurrent streaming clients x 2 requests of 24
// greedy tokens. Fails unless load.py passes (every request complete, one chunk id per stream,
// every answer equal to the same prompt's answer alone) and the server exits 0 on SIGTERM.
// Throughput and TTFT/ITL percentiles are printed, never checked.
// Extra arguments after `--` replace load.py's load arguments (default below).
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { options, startServer, tinyModel, watchdog } from "./harness.mjs";

watchdog(840_000);
const sep = process.argv.indexOf("--");
const loadArgs = sep >= 0 ? process.argv.splice(sep).slice(1)
                          : ["--clients", "32", "--requests", "2", "--max-tokens", "24"];
const o = options();
const loadPy = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "load.py");
const key = `load-test-key-${process.pid}`;

const server = await startServer(o, tinyModel(o), ["--api-key", key, "-t", "1", "-b", "32", "-c", "256"]);
let rc = 1;
try {
  console.log(`load.py ${loadArgs.join(" ")} against ${server.url}`);
  rc = await new Promise((resolve, reject) => {
    const p = spawn(process.env.PYTHON || "python3", [loadPy, "--url", server.url, "--api-key", key, ...loadArgs],
                    { stdio: "inherit" });
    p.on("error", reject);
    p.on("exit", (code, sig) => resolve(code ?? (sig ? 1 : 0)));
  });
} catch (e) {
  console.error(`load test: ${e.message}`);
} finally {
  const code = await server.stop();
  if (code !== 0) {
    console.error(`dsv3 serve exited ${code} on SIGTERM:\n${server.log()}`);
    rc = 1;
  }
}
console.log(rc === 0 ? "load test passed" : "load test FAILED");
process.exit(rc);
