#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/): small valid and invalid safetensors files
in safetensors/ and config.json variants in config/. Deterministic; rerun after editing.
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
