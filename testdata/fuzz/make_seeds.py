#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/): small valid and invalid safetensors files
in safetensors/, config.json variants in config/ and GGUF files in gguf/. Deterministic; rerun after editing.
Each seed stays under 4 KB so the fuzzers start from inputs they can mutate quickly."""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden", "tiny-v3")


def st_bytes(header, data=b"", header_text=None, length=None):
    text = header_text if header_text is not None else json.dumps(header, separators=(",", ":"))
    raw = text.encode()
    raw += b" " * (-len(raw) % 8)
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def tensor(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def safetensors_seeds():
    s = {}
    s["valid_two_tensors"] = st_bytes(
        {"__metadata__": {"format": "pt"}, "a": tensor("F32", [2, 2], 0, 16), "b": tensor("BF16", [3], 16, 22)},
        bytes(range(22)))
    s["valid_fp8_with_scale"] = st_bytes(
        {"w": tensor("F8_E4M3", [4, 4], 4, 20), "w_scale_inv": tensor("F32", [1, 1], 0, 4)}, bytes(range(20)))
    sizes = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2,
             "F8_E4M3": 1, "I8": 1, "U8": 1, "BOOL": 1}
    h, off = {}, 0
    for name, size in sizes.items():
        h["t_" + name] = tensor(name, [2], off, off + 2 * size)
        off += 2 * size
    s["valid_every_dtype"] = st_bytes(h, bytes(off))
    s["valid_scalar_and_empty"] = st_bytes({"s": tensor("F32", [], 0, 4), "e": tensor("F16", [0, 7], 4, 4)}, bytes(4))
    s["valid_empty_header"] = st_bytes({})
    s["short_file"] = b"\x10\x00\x00"
    s["header_len_beyond_file"] = st_bytes({"a": tensor("F32", [1], 0, 4)}, bytes(4), length=4096)
    s["header_len_huge"] = st_bytes({}, length=(1 << 63) + 5)
    s["malformed_json"] = st_bytes(None, header_text='{"a": {"dtype": "F32", "shape": [1], ')
    s["not_an_object"] = st_bytes([1, 2, 3])
    s["unknown_dtype"] = st_bytes({"a": tensor("F7", [1], 0, 1)}, bytes(1))
    s["size_mismatch"] = st_bytes({"a": tensor("F32", [3], 0, 8)}, bytes(8))
    s["overlap"] = st_bytes({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [2], 4, 12)}, bytes(12))
    s["out_of_range"] = st_bytes({"a": tensor("F32", [4], 0, 16)}, bytes(8))
    s["reversed"] = st_bytes({"a": tensor("F32", [1], 8, 4)}, bytes(8))
    s["negative_dim"] = st_bytes({"a": tensor("F32", [-1], 0, 4)}, bytes(4))
    s["big_dims"] = st_bytes({"a": tensor("F32", [1 << 40, 1 << 20], 0, 0)})
    with open(os.path.join(GOLDEN, "model.safetensors"), "rb") as f:
        s["golden_prefix"] = f.read(2048)  # header length points far beyond these bytes
    return s


def config_seeds():
    with open(os.path.join(GOLDEN, "config.json")) as f:
        golden = json.load(f)
    c = {"golden_tiny_v3.json": golden}

    v2 = dict(golden)
    v2.update(model_type="deepseek_v2", architectures=["DeepseekV2ForCausalLM"], scoring_func="softmax",
              topk_method="greedy", n_group=1, topk_group=1, norm_topk_prob=False, routed_scaling_factor=1.0,
              q_lora_rank=None, quantization_config=None)
    c["v2_lite_style.json"] = v2

    v2g = dict(v2)
    v2g.update(topk_method="group_limited_greedy", n_group=4, topk_group=2, q_lora_rank=96)
    c["v2_group_limited.json"] = v2g

    yarn = dict(golden)
    yarn.update(q_lora_rank=None, max_position_embeddings=163840,
                rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                              "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    c["v3_yarn_no_q_lora.json"] = yarn

    dense = {k: golden[k] for k in ("model_type", "vocab_size", "hidden_size", "intermediate_size",
                                     "num_hidden_layers", "num_attention_heads", "kv_lora_rank",
                                     "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
                                     "max_position_embeddings")}
    c["minimal_dense.json"] = dense

    v3 = dict(golden)  # the shape of DeepSeek-V3's own config.json
    v3.update(hidden_size=7168, intermediate_size=18432, moe_intermediate_size=2048, num_hidden_layers=61,
              num_attention_heads=128, n_routed_experts=256, num_experts_per_tok=8, n_group=8, topk_group=4,
              first_k_dense_replace=3, q_lora_rank=1536, kv_lora_rank=512, qk_nope_head_dim=128,
              qk_rope_head_dim=64, v_head_dim=128, vocab_size=129280, num_nextn_predict_layers=1,
              max_position_embeddings=163840, eos_token_id=[1, 2],
              rope_scaling={"type": "yarn", "factor": 40, "original_max_position_embeddings": 4096,
                            "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0})
    c["v3_671b_shape.json"] = v3

    bad = dict(golden)
    bad.update(num_attention_heads=0, topk_group=9)
    c["bad_values.json"] = bad
    return {k: json.dumps(v, indent=1).encode() for k, v in c.items()}


def gguf_bytes(kv, tensors, version=3, alignment=32):
    """kv: [(key, type id, payload bytes)]; tensors: [(name, ggml type, ne, data)] laid out aligned."""
    gstr = lambda b: struct.pack("<Q", len(b)) + b
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, t, payload in kv:
        out += gstr(key.encode()) + struct.pack("<I", t) + payload
    off, blobs = 0, b""
    for name, t, ne, data in tensors:
        out += gstr(name.encode()) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, off)
        pad = -len(data) % alignment
        blobs += data + bytes(pad)
        off += len(data) + pad
    out += bytes(-len(out) % alignment)
    return out + blobs


def gguf_seeds():
    u32 = lambda k, v: (k, 4, struct.pack("<I", v))
    f32 = lambda k, v: (k, 6, struct.pack("<f", v))
    gs = lambda s: struct.pack("<Q", len(s)) + s.encode()
    string = lambda k, v: (k, 8, gs(v))
    boolean = lambda k, v: (k, 7, bytes([v]))
    strings = lambda k, v: (k, 9, struct.pack("<IQ", 8, len(v)) + b"".join(gs(x) for x in v))
    d = "deepseek2."
    meta = [string("general.architecture", "deepseek2"), u32(d + "block_count", 2), u32(d + "context_length", 64),
            u32(d + "embedding_length", 32), u32(d + "feed_forward_length", 64), u32(d + "attention.head_count", 2),
            u32(d + "attention.head_count_kv", 1), f32(d + "rope.freq_base", 10000.0),
            f32(d + "attention.layer_norm_rms_epsilon", 1e-6), u32(d + "expert_count", 4),
            u32(d + "expert_used_count", 2), u32(d + "expert_group_count", 2), u32(d + "expert_group_used_count", 1),
            u32(d + "expert_gating_func", 2), u32(d + "leading_dense_block_count", 1), u32(d + "vocab_size", 8),
            u32(d + "attention.q_lora_rank", 16), u32(d + "attention.kv_lora_rank", 16),
            u32(d + "attention.key_length", 24), u32(d + "attention.value_length", 16),
            u32(d + "attention.key_length_mla", 16), u32(d + "attention.value_length_mla", 8),
            u32(d + "expert_feed_forward_length", 16), u32(d + "expert_shared_count", 1),
            f32(d + "expert_weights_scale", 2.5), boolean(d + "expert_weights_norm", 1),
            u32(d + "rope.dimension_count", 8), string(d + "rope.scaling.type", "yarn"),
            f32(d + "rope.scaling.factor", 4.0), u32(d + "rope.scaling.original_context_length", 16),
            f32(d + "rope.scaling.yarn_log_multiplier", 0.1),
            strings("tokenizer.ggml.tokens", ["a", "b", "ab", "<s>"])]
    tensors = [("output_norm.weight", 0, [32], bytes(128)), ("token_embd.weight", 30, [32, 8], bytes(512)),
               ("blk.0.attn_k_b.weight", 8, [32, 16, 2], bytes(32 * 34)), ("blk.1.ffn_up_exps.weight", 12, [256, 1, 1],
               bytes(144))]
    s = {"valid_deepseek2": gguf_bytes(meta, tensors),
         "valid_empty": gguf_bytes([], []),
         "valid_split_part": gguf_bytes([(("split.no"), 2, struct.pack("<H", 0)), ("split.count", 2, struct.pack("<H", 2)),
                                         ("split.tensors.count", 5, struct.pack("<i", 2))],
                                        [("t", 0, [2], bytes(8))]),
         "version1": gguf_bytes([], [], version=1),
         "nested_array": gguf_bytes([("a", 9, struct.pack("<IQ", 9, 1) + struct.pack("<IQ", 4, 0))], []),
         "huge_array": gguf_bytes([("a", 9, struct.pack("<IQ", 4, 1 << 60))], []),
         "bad_block": gguf_bytes([], [("t", 8, [48], bytes(68))]),
         "misaligned": gguf_bytes([u32("general.alignment", 64)], [("a", 0, [3], bytes(12)), ("b", 0, [3], bytes(12))]),
         "old_key_lengths": gguf_bytes([m for m in meta if "_mla" not in m[0]], [])}
    with open(os.path.join(HERE, "..", "gguf", "kjv", "kjv-Q4_K_M.gguf"), "rb") as f:
        s["kjv_prefix"] = f.read(4000)  # a real header, cut inside the token list
    return s


def write(dirname, seeds):
    d = os.path.join(HERE, dirname)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        assert len(data) < 4096, (name, len(data))
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    write("safetensors", safetensors_seeds())
    write("config", config_seeds())
    write("gguf", gguf_seeds())
