#!/usr/bin/env python3
"""Load test for `dsv3 serve`: C concurrent streaming clients x R requests each (standard library only).

Checks that every request completes with the expected number of tokens, that each stream's chunks
carry one id of its own (no chunk of another request), and that each greedy answer equals the same
request's answer when run alone (nothing lost or mixed), then reports total decode throughput and
p50/p99 time to first token and inter-token latency. Exit status 1 if any check fails; timings are
only reported. ctest runs it (tests/server/js/load.mjs starts the server).

  dsv3 serve --model DIR --port 8080 -b 32 &
  tests/server/load.py --url http://127.0.0.1:8080 --clients 1 8 32 --requests 3 --max-tokens 64
"""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse


def stream_chat(url, prompt, max_tokens, key=None):
    """One streaming chat request; returns (text, token_times, t_start, completion_tokens, chunk_ids)."""
    u = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=600)
    body = json.dumps({"model": "x", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
                       "temperature": 0, "ignore_eos": True, "stream": True,
                       "stream_options": {"include_usage": True}})
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    text, times, usage, done, ids = [], [], None, False, set()
    for raw in resp:
        line = raw.decode().rstrip("\n")
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        j = json.loads(data)
        if "error" in j:
            raise RuntimeError(j["error"]["message"])
        ids.add(j.get("id"))
        if j.get("usage"):
            usage = j["usage"]
        for c in j.get("choices", []):
            piece = c["delta"].get("content") or ""
            if piece:
                text.append(piece)
                times.append(time.perf_counter())
    conn.close()
    if not done or usage is None:
        raise RuntimeError("stream ended without usage and [DONE]")
    return "".join(text), times, t0, usage["completion_tokens"], ids


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def run_level(args, clients, reference):
    results, errors = [], []

    def client(ci):
        for r in range(args.requests):
            prompt = f"Client {ci} request {r}: tell me something."
            try:
                results.append((prompt, *stream_chat(args.url, prompt, args.max_tokens, args.api_key)))
            except Exception as e:  # noqa: BLE001 -- reported below
                errors.append(f"{prompt}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttft, itl, tokens, mismatches, seen_ids = [], [], 0, 0, set()
    if len(results) != clients * args.requests:
        errors.append(f"{clients * args.requests - len(results)} of {clients * args.requests} requests failed")
    for prompt, text, times, start, n, ids in results:
        tokens += n
        if n != args.max_tokens:
            errors.append(f"{prompt}: {n} tokens, expected {args.max_tokens}")
        if len(ids) != 1 or ids & seen_ids:
            errors.append(f"{prompt}: chunk ids {sorted(map(str, ids))} (expected one id not used by another stream)")
        seen_ids |= ids
        if times:
            ttft.append(times[0] - start)
            itl += [b - a for a, b in zip(times, times[1:])]
        if prompt not in reference:
            reference[prompt] = stream_chat(args.url, prompt, args.max_tokens, args.api_key)[0]
        if reference[prompt] != text:
            mismatches += 1
            print(f"MISMATCH {prompt!r}:\n  alone:   {reference[prompt]!r}\n  batched: {text!r}", file=sys.stderr)
    print(f"clients {clients:3d}: {len(results)}/{clients * args.requests} ok, {tokens / wall:8.1f} tok/s, "
          f"{len(results) / wall:6.2f} req/s | TTFT p50 {pct(ttft, 50) * 1e3:7.1f} ms p99 {pct(ttft, 99) * 1e3:7.1f} ms"
          f" | ITL p50 {pct(itl, 50) * 1e3:6.1f} ms p99 {pct(itl, 99) * 1e3:6.1f} ms | greedy mismatches {mismatches}"
          f" | {len({reference[r[0]] for r in results})} distinct answers", flush=True)
    return tokens / wall, errors + [f"{mismatches} answers differ from the single-request answer"] * (mismatches > 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--requests", type=int, default=3, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--api-key")
    args = ap.parse_args()
    reference, rates, failed = {}, {}, []
    for c in args.clients:
        rates[c], errs = run_level(args, c, reference)
        failed += errs
    if 1 in rates and 8 in rates:
        print(f"throughput 8 clients / 1 client: {rates[8] / rates[1]:.2f}x")
    for e in failed:
        print("FAIL:", e, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
