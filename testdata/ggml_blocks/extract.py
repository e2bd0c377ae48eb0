#!/usr/bin/env python3
"""Cuts the test cases of tests/core/ggml_blocks_test.cpp out of llama.cpp-quantized GGUF files.

Usage: extract.py GGUF_DIR  (the directory holding kjv-BF16.gguf, kjv-Q8_0.gguf, kjv-Q6_K.gguf
and kjv-Q4_K_M.gguf, quantized by llama-quantize without an importance matrix)

For each case it writes the first ROWS rows of a tensor as llama.cpp quantized it
(<TYPE>.<tensor>.blocks) and the same rows of the BF16 file it was quantized from
(<TYPE>.<tensor>.bf16), next to this script. Plain struct parsing: no gguf package needed.
"""
import os
import struct
import sys

ROWS = 32
# (type name, ggml type id, block values, block bytes, quantized file, tensor)
CASES = [
    ("Q8_0", 8, 32, 34, "kjv-Q8_0.gguf", "blk.0.ffn_gate.weight"),
    ("Q6_K", 14, 256, 210, "kjv-Q6_K.gguf", "blk.0.ffn_gate.weight"),
    ("Q4_K", 12, 256, 144, "kjv-Q4_K_M.gguf", "blk.0.ffn_gate.weight"),
    ("Q5_0", 6, 32, 22, "kjv-Q4_K_M.gguf", "blk.0.attn_output.weight"),
]


def read_gguf(path):
    with open(path, "rb") as f:
        d = f.read()
    pos = 0

    def u(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, d, pos)[0]
        pos += struct.calcsize("<" + fmt)
        return v

    def s():
        nonlocal pos
        n = u("Q")
        v = d[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return v

    scalars = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def val(t):
        if t == 8:
            return s()
        if t == 9:
            et, n = u("I"), u("Q")
            return [val(et) for _ in range(n)]
        return u(scalars[t])

    if d[:4] != b"GGUF":
        sys.exit(f"{path}: not a GGUF file")
    pos = 4
    u("I")
    n_tensors, n_kv = u("Q"), u("Q")
    kv = {}
    for _ in range(n_kv):
        k = s()
        kv[k] = val(u("I"))
    tensors = {}
    for _ in range(n_tensors):
        name = s()
        dims = [u("Q") for _ in range(u("I"))]
        tensors[name] = (dims, u("I"), u("Q"))
    align = kv.get("general.alignment", 32)
    return d, tensors, (pos + align - 1) // align * align


def main():
    src_dir = sys.argv[1]
    out_dir = os.path.dirname(os.path.abspath(__file__))
    bf16, bf16_tensors, bf16_start = read_gguf(os.path.join(src_dir, "kjv-BF16.gguf"))
    for type_name, type_id, elems, block_bytes, file, tensor in CASES:
        q, q_tensors, q_start = read_gguf(os.path.join(src_dir, file))
        dims, t, off = q_tensors[tensor]
        assert t == type_id, (file, tensor, t)
        cols = dims[0]
        row_bytes = cols // elems * block_bytes
        blocks = q[q_start + off:q_start + off + ROWS * row_bytes]
        bdims, bt, boff = bf16_tensors[tensor]
        assert bt == 30 and bdims == dims, (tensor, bt, bdims)
        src = bf16[bf16_start + boff:bf16_start + boff + ROWS * cols * 2]
        stem = os.path.join(out_dir, f"{type_name}.{tensor[:-len('.weight')]}")
        with open(stem + ".blocks", "wb") as f:
            f.write(blocks)
        with open(stem + ".bf16", "wb") as f:
            f.write(src)
        print(f"{stem}: {ROWS} rows x {cols}")


if __name__ == "__main__":
    main()
