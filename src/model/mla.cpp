#include "model/mla.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/ops.h"

namespace dsv3 {

namespace {

// The heads `w` holds: all of them, or this rank's share (model/partition.h: wq_b, kv_b_proj in
// either layout and wo are cut by head). Counted from wo, the one tensor every layout has.
int64_t held_heads(const ModelConfig& c, const MLAWeights& w) { return w.wo.cols / c.v_head_dim; }

// Positions per attention chunk in the absorb form. Long windows are split into chunks that
// run in parallel and are merged with a safe softmax (flash-decoding), so one decoding sequence
// keeps every thread busy. The split depends only on the window length, never on the thread
// count, so results do not either.
constexpr int64_t kAttnChunk = 256;

// For every head h and block of up to 256 tokens: the tokens' rows in(t, h) (in_width
// floats each) gathered into one matrix, product(h, x, y, nb) run on it, and y's rows
// (out_width floats) scattered to out(t, h). Heads are split across threads; a head's
// weights are decoded once per block instead of once per token. Heads are claimed in chunks
// (parallel_chunks), so a late thread does not hold up the others.
template <class In, class Out, class Product>
void per_head_blocks(int64_t n, int64_t n_heads, int64_t in_width, int64_t out_width, const In& in, const Out& out,
                     const Product& product, ThreadPool& pool) {
  constexpr int64_t kTokenBlock = 256;
  pool.parallel_chunks(n_heads, 1, [&](int64_t h0, int64_t h1) {
    const int64_t nb_max = std::min(n, kTokenBlock);
    std::vector<float> x(static_cast<size_t>(nb_max * in_width)), y(static_cast<size_t>(nb_max * out_width));
    for (int64_t h = h0; h < h1; ++h)
      for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
        const int64_t nb = std::min(kTokenBlock, n - t0);
        for (int64_t t = 0; t < nb; ++t) std::copy_n(in(t0 + t, h), in_width, &x[size_t(t * in_width)]);
        product(h, x.data(), y.data(), nb);
        for (int64_t t = 0; t < nb; ++t) std::copy_n(&y[size_t(t * out_width)], out_width, out(t0 + t, h));
      }
  });
}

// kv_b_proj's parts for head h (model.py: wkv_b viewed as [n_heads, qk_nope + v_head, rank]):
// W_uk[h] [qk_nope_head_dim, rank] and W_uv[h] [v_head_dim, rank]. GGUF files split them per head
// (wk_b holds W_uk[h] transposed, [rank, qk_nope_head_dim]; wv_b holds W_uv[h]); either layout
// is read in place.
//   y[t] = W_uk[h]^T x[t]  (q_abs from q_nope), x [nb, qk_nope_head_dim], y [nb, rank]
void uk_transposed(const ModelConfig& c, const MLAWeights& w, int64_t h, const float* x, float* y, int64_t nb) {
  const int64_t dn = c.qk_nope_head_dim, dv = c.v_head_dim, rank = c.kv_lora_rank;
  if (w.has_split_kv_b()) {
    kernels::linear(w.wk_b.row_slice(h * rank, rank), x, y, nb);
    return;
  }
  std::fill_n(y, nb * rank, 0.0f);
  kernels::linear_transposed_acc(w.wkv_b.row_slice(h * (dn + dv), dn), x, y, nb);
}
Matrix w_uv(const ModelConfig& c, const MLAWeights& w, int64_t h) {
  const int64_t dn = c.qk_nope_head_dim, dv = c.v_head_dim;
  return w.has_split_kv_b() ? w.wv_b.row_slice(h * dv, dv) : w.wkv_b.row_slice(h * (dn + dv) + dn, dv);
}

// Absorb form (model.py attn_impl="absorb", DeepSeek's decode path): per (token, head),
// q_abs = q_nope W_uk[h] (kv_lora_rank values), scores against the latent cache directly,
// o = sum_s p_s c_kv[s], head output = W_uv[h] o. Reads only the cache, and each cached row once
// for a whole group of heads (all heads share the latent, as in FlashMLA): best for decode.
void attend_absorbed(const ModelConfig& c, const MLAWeights& w, int64_t layer, const float* q,
                     std::span<const TokenSlot> slots, float scale, float* heads_out, ThreadPool& pool) {
  const int64_t n = int64_t(slots.size()), n_heads = held_heads(c, w), dn = c.qk_nope_head_dim,
                dr = c.qk_rope_head_dim, dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank;
  // q_abs for every (token, head), head by head: W_uk[h]^T q_nope for all tokens of a block in
  // one product (transposed for wkv_b, plain for the split layout's wk_b), so the head's slice of kv_b_proj is decoded once per block, not
  // once per token (a 256-token prompt chunk).                          [n, n_heads, rank]
  std::vector<float> q_abs(static_cast<size_t>(n * n_heads * rank));
  per_head_blocks(
      n, n_heads, dn, rank, [&](int64_t t, int64_t h) { return &q[size_t((t * n_heads + h) * dqk)]; },
      [&](int64_t t, int64_t h) { return &q_abs[size_t((t * n_heads + h) * rank)]; },
      [&](int64_t h, const float* x, float* y, int64_t nb) { uk_transposed(c, w, h, x, y, nb); },
      pool);
  // Work items (token, chunk, head group); heads are grouped so there are enough items to keep
  // every thread busy (grouping never changes a head's result, chunking is fixed by length).
  int64_t total_chunks = 0;
  for (const TokenSlot& s : slots) total_chunks += (s.pos + kAttnChunk) / kAttnChunk;
  const int64_t want_groups = (4 * pool.size() + total_chunks - 1) / total_chunks;
  // Groups of a multiple of 4 heads: the kernels' register tiles take 4 tokens (here heads)
  // at a time, so 6 heads would read each cache row twice, as 3 + 3.
  int64_t group = (n_heads + std::min(n_heads, want_groups) - 1) / std::min(n_heads, want_groups);
  group = std::min(n_heads, (group + 3) / 4 * 4);
  const int64_t n_groups = (n_heads + group - 1) / group;
  struct Item { int64_t t, chunk, g; };
  std::vector<Item> items;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t ch = 0; ch * kAttnChunk <= slots[size_t(t)].pos; ++ch)
      for (int64_t g = 0; g < n_groups; ++g) items.push_back({t, ch, g});
  // Per (token, head, chunk): running max, sum and unnormalised latent output.
  std::vector<int64_t> first_chunk(static_cast<size_t>(n + 1), 0);
  for (int64_t t = 0; t < n; ++t)
    first_chunk[size_t(t + 1)] = first_chunk[size_t(t)] + (slots[size_t(t)].pos + kAttnChunk) / kAttnChunk;
  auto part = [&](int64_t t, int64_t h, int64_t ch) { return (first_chunk[size_t(t)] + ch) * n_heads + h; };
  const int64_t parts = first_chunk[size_t(n)] * n_heads;
  std::vector<float> part_o(static_cast<size_t>(parts * rank)), part_m(static_cast<size_t>(parts)),
      part_l(static_cast<size_t>(parts));
  // Per item, both steps are matrix products over the chunk's cache rows K = [c_kv | k_pe]
  // (a [S, rank + dr] view of the cache): scores = K [q_abs | q_pe] for the group's heads as
  // the product's tokens, and o = K^T p for all of them in one call (the chunk is read from
  // cache once per column panel), of which the c_kv columns are the latent output.
  const int64_t row = rank + dr;
  pool.parallel_chunks(int64_t(items.size()), 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(static_cast<size_t>(kAttnChunk * group)), q_cat(static_cast<size_t>(group * row)),
        o_rows(static_cast<size_t>(group * row));
    for (int64_t i = begin; i < end; ++i) {
      const Item it = items[size_t(i)];
      const KVCache& cache = *slots[size_t(it.t)].cache;
      const int64_t s0 = it.chunk * kAttnChunk, s1 = std::min(slots[size_t(it.t)].pos + 1, s0 + kAttnChunk);
      const int64_t h0 = it.g * group, h1 = std::min(n_heads, h0 + group), len = s1 - s0;
      const kernels::Matrix kc = cache.rows(layer, s0, len);
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t th = it.t * n_heads + h;
        float* qc = &q_cat[size_t((h - h0) * row)];
        std::copy(&q_abs[size_t(th * rank)], &q_abs[size_t((th + 1) * rank)], qc);
        std::copy(&q[size_t(th * dqk + dn)], &q[size_t(th * dqk + dn + dr)], qc + rank);
      }
      kernels::linear(kc, q_cat.data(), scores.data(), h1 - h0);  // [heads, len]
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t p = part(it.t, h, it.chunk);
        part_l[size_t(p)] = kernels::softmax_partial(&scores[size_t((h - h0) * len)], len, scale, &part_m[size_t(p)]);
      }
      std::fill(o_rows.begin(), o_rows.begin() + (h1 - h0) * row, 0.0f);
      kernels::linear_transposed_acc(kc, scores.data(), o_rows.data(), h1 - h0);  // [heads, rank + dr]
      for (int64_t h = h0; h < h1; ++h)
        std::copy(&o_rows[size_t((h - h0) * row)], &o_rows[size_t((h - h0) * row + rank)],
                  &part_o[size_t(part(it.t, h, it.chunk) * rank)]);
    }
  });
  // Merge the chunks of each (token, head) in order (into the slot of its chunk 0), then apply
  // W_uv[h] head by head to all tokens of a block in one product, to o as float32: the expanded
  // form never rounds o (it sums p_s (W_uv c_kv[s]) in float32), and rounding it to BF16 on a
  // BF16-activation variant was most of the decode path's extra error (docs/kernels.md).
  pool.parallel_for(n * n_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> o(static_cast<size_t>(rank));
    for (int64_t th = begin; th < end; ++th) {
      const int64_t t = th / n_heads, h = th % n_heads;
      const int64_t chunks = first_chunk[size_t(t + 1)] - first_chunk[size_t(t)];
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t k = 0; k < chunks; ++k) m = std::max(m, part_m[size_t(part(t, h, k))]);
      float l = 0.0f;
      std::fill(o.begin(), o.end(), 0.0f);
      for (int64_t k = 0; k < chunks; ++k) {
        const float f = std::exp(part_m[size_t(part(t, h, k))] - m);
        l += f * part_l[size_t(part(t, h, k))];
        kernels::axpy(f, &part_o[size_t(part(t, h, k) * rank)], o.data(), rank);
      }
      for (float& v : o) v /= l;
      std::copy(o.begin(), o.end(), &part_o[size_t(part(t, h, 0) * rank)]);
    }
  });
  per_head_blocks(
      n, n_heads, rank, dv, [&](int64_t t, int64_t h) { return &part_o[size_t(part(t, h, 0) * rank)]; },
      [&](int64_t t, int64_t h) { return &heads_out[size_t((t * n_heads + h) * dv)]; },
      [&](int64_t h, const float* x, float* y, int64_t nb) {
        Matrix uv = w_uv(c, w, h);
        uv.f32_activations = true;
        kernels::linear(uv, x, y, nb);
      },
      pool);
}

// Expanded form (model.py attn_impl="naive"): k_nope and v of every cached position are
// expanded from c_kv once (kv_b_proj as one batched linear), then ordinary attention with
// qk_head_dim-sized keys. Fewer operations when many queries share one sequence (prefill):
// per (query, key) pair it costs qk_head_dim + v_head_dim instead of 2 kv_lora_rank + rope.
// Per head, both products are plain matrix products over activations (kernels::matmul):
// scores S = Q_h K_h^T, masked causally, and O_h = P V_h read in place from the expansion.
void attend_expanded(const ModelConfig& c, const MLAWeights& w, int64_t layer, const float* q,
                     std::span<const TokenSlot> slots, float scale, float* heads_out, ThreadPool& pool) {
  const int64_t n = int64_t(slots.size()), n_heads = held_heads(c, w), dn = c.qk_nope_head_dim,
                dr = c.qk_rope_head_dim, dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank;
  const KVCache& cache = *slots[0].cache;
  int64_t len = 0;
  for (const TokenSlot& sl : slots) len = std::max(len, sl.pos + 1);
  // The window as float32: c_kv [len, rank] and k_pe [len, dr].
  std::vector<float> c_kv(static_cast<size_t>(len * rank)), k_pe(static_cast<size_t>(len * dr));
  pool.parallel_for(len, [&](int64_t b, int64_t e) {
    std::vector<float> scratch(static_cast<size_t>(rank + dr));
    for (int64_t s = b; s < e; ++s) {
      const float* row = cache.row(layer, s, scratch.data());
      std::copy(row, row + rank, &c_kv[size_t(s * rank)]);
      std::copy(row + rank, row + rank + dr, &k_pe[size_t(s * dr)]);
    }
  });
  // kv[s] = wkv_b c_kv[s]: [len, n_heads, dn + dv]; one product, or head by head from the
  // split layout (k_nope = W_uk[h] c_kv through wk_b = W_uk[h]^T).
  std::vector<float> kv(static_cast<size_t>(len * n_heads * (dn + dv)));
  if (w.has_wkv_b()) {
    kernels::linear(w.wkv_b, c_kv.data(), kv.data(), len, pool);
  } else {
    per_head_blocks(
        len, n_heads, rank, dn + dv, [&](int64_t s, int64_t) { return &c_kv[size_t(s * rank)]; },
        [&](int64_t s, int64_t h) { return &kv[size_t((s * n_heads + h) * (dn + dv))]; },
        [&](int64_t h, const float* x, float* y, int64_t nb) {
          std::vector<float> k(static_cast<size_t>(nb * dn)), v(static_cast<size_t>(nb * dv));
          kernels::linear_transposed_acc(w.wk_b.row_slice(h * rank, rank), x, k.data(), nb);  // W_uk[h] c_kv
          kernels::linear(w_uv(c, w, h), x, v.data(), nb);
          for (int64_t t = 0; t < nb; ++t) {
            std::copy_n(&k[size_t(t * dn)], dn, &y[size_t(t * (dn + dv))]);
            std::copy_n(&v[size_t(t * dv)], dv, &y[size_t(t * (dn + dv) + dn)]);
          }
        },
        pool);
  }
  const int64_t stride = n_heads * (dn + dv);
  // Queries go in blocks of kQueryBlock, each against the keys up to its last query's position
  // only (causal: a 512-token prompt in blocks of 128 computes 5/8 of the full window's scores).
  constexpr int64_t kQueryBlock = 128;
  pool.parallel_for(n_heads, [&](int64_t h0, int64_t h1) {
    std::vector<float> k_h(static_cast<size_t>(len * dqk));
    std::vector<float> p(static_cast<size_t>(std::min(n, kQueryBlock) * len));
    for (int64_t h = h0; h < h1; ++h) {
      for (int64_t s = 0; s < len; ++s) {  // K_h = [k_nope | k_pe] rows
        const float* kv_s = &kv[size_t(s * stride + h * (dn + dv))];
        std::copy(kv_s, kv_s + dn, &k_h[size_t(s * dqk)]);
        std::copy(&k_pe[size_t(s * dr)], &k_pe[size_t((s + 1) * dr)], &k_h[size_t(s * dqk + dn)]);
      }
      for (int64_t t0 = 0; t0 < n; t0 += kQueryBlock) {
        const int64_t nb = std::min(kQueryBlock, n - t0);
        int64_t window = 0;  // keys [0, window) are visible to some query of the block
        for (int64_t t = 0; t < nb; ++t) window = std::max(window, slots[size_t(t0 + t)].pos + 1);
        // scores [nb, window] = Q_h K_h^T, the block's queries read in place from q
        kernels::matmul(nb, window, dqk, &q[size_t((t0 * n_heads + h) * dqk)], n_heads * dqk, k_h.data(), dqk, true,
                        p.data(), window);
        for (int64_t t = 0; t < nb; ++t) {
          float* row = &p[size_t(t * window)];
          const int64_t n_keys = slots[size_t(t0 + t)].pos + 1;
          for (int64_t s = 0; s < n_keys; ++s) row[s] *= scale;
          kernels::softmax(row, n_keys);
          std::fill(row + n_keys, row + window, 0.0f);  // causal: later positions get no weight
        }
        // heads_out [nb, dv] = P V_h, V_h = the v part of kv, written in place
        kernels::matmul(nb, dv, window, p.data(), window, &kv[size_t(h * (dn + dv) + dn)], stride, false,
                        &heads_out[size_t((t0 * n_heads + h) * dv)], n_heads * dv);
      }
    }
  });
}

// Auto: the expanded form for prefill-like batches (one sequence, many queries), where its
// one-off expansion of len positions is paid back; the absorb form otherwise.
bool use_expanded_form(const ModelConfig& c, std::span<const TokenSlot> slots, MLAForm form) {
  if (form == MLAForm::Absorb) return false;
  for (const TokenSlot& s : slots)
    if (s.cache != slots[0].cache) return false;  // several sequences: absorb reads only their caches
  if (form == MLAForm::Expanded) return true;
  int64_t len = 0;
  for (const TokenSlot& s : slots) len = std::max(len, s.pos + 1);
  // The expanded window (len x n_heads x (dn + dv) floats: 13 GB for V3 at 100K positions)
  // must stay modest; beyond, the absorb form reads the latent cache directly.
  constexpr double kMaxExpandedBytes = 1 << 30;
  if (4.0 * double(len) * double(c.num_attention_heads) * double(c.qk_nope_head_dim + c.v_head_dim) > kMaxExpandedBytes)
    return false;
  const double n = double(slots.size()), h = double(c.num_attention_heads), rank = double(c.kv_lora_rank);
  const double dn = double(c.qk_nope_head_dim), dr = double(c.qk_rope_head_dim), dv = double(c.v_head_dim);
  const double absorb = n * h * (dn * rank + dv * rank) + n * double(len) * h * (2 * rank + dr);
  const double expanded = double(len) * h * (dn + dv) * rank + n * double(len) * h * (dn + dr + dv);
  return expanded < absorb;
}

}  // namespace

void mla_forward(const ModelConfig& c, const MLAWeights& w, const Rope& rope, int64_t layer, const float* x, int64_t n,
                 std::span<const TokenSlot> slots, float* out, ThreadPool& pool, MLAForm form) {
  const int64_t n_heads = held_heads(c, w), dn = c.qk_nope_head_dim, dr = c.qk_rope_head_dim,
                dv = c.v_head_dim, dqk = c.qk_head_dim(), rank = c.kv_lora_rank;

  // q = wq(x) or wq_b(q_norm(wq_a(x)))                                       [n, n_heads, dqk]
  std::vector<float> q(static_cast<size_t>(n * n_heads * dqk));
  if (c.q_lora_rank == 0) {
    kernels::linear(w.wq, x, q.data(), n, pool);
  } else {
    std::vector<float> q_a(static_cast<size_t>(n * c.q_lora_rank));
    kernels::linear(w.wq_a, x, q_a.data(), n, pool);
    pool.parallel_for(
        n,
        [&](int64_t t0, int64_t t1) {
          for (int64_t t = t0; t < t1; ++t)
            kernels::rmsnorm(&q_a[size_t(t * c.q_lora_rank)], w.q_norm, float(c.rms_norm_eps),
                             &q_a[size_t(t * c.q_lora_rank)]);
        },
        ThreadPool::kTokenGrain);
    kernels::linear(w.wq_b, q_a.data(), q.data(), n, pool);
  }

  // kv = wkv_a(x) -> [c_kv | k_pe]; c_kv = kv_norm(c_kv); k_pe rotated; both cached.  [n, rank + dr]
  std::vector<float> kv(static_cast<size_t>(n * (rank + dr)));
  kernels::linear(w.wkv_a, x, kv.data(), n, pool);
  // Per token (tokens split over threads; each writes only its own cache row).
  pool.parallel_for(
      n,
      [&](int64_t t0, int64_t t1) {
        std::vector<float> cos(static_cast<size_t>(dr / 2)), sin(static_cast<size_t>(dr / 2));
        for (int64_t t = t0; t < t1; ++t) {
          KVCache& cache = *slots[size_t(t)].cache;
          const int64_t pos = slots[size_t(t)].pos;
          float* kv_t = &kv[size_t(t * (rank + dr))];
          kernels::rmsnorm(kv_t, w.kv_norm, float(c.rms_norm_eps), kv_t);  // c_kv, in place
          rope.cos_sin(pos, cos.data(), sin.data());
          kernels::rope_interleaved(kv_t + rank, cos.data(), sin.data(), dr);  // k_pe
          cache.store(layer, pos, kv_t, kv_t + rank);
          for (int64_t h = 0; h < n_heads; ++h)  // q_pe
            kernels::rope_interleaved(&q[size_t((t * n_heads + h) * dqk + dn)], cos.data(), sin.data(), dr);
        }
      },
      ThreadPool::kTokenGrain);

  std::vector<float> heads_out(static_cast<size_t>(n * n_heads * dv));
  if (use_expanded_form(c, slots, form))
    attend_expanded(c, w, layer, q.data(), slots, rope.softmax_scale(), heads_out.data(), pool);
  else
    attend_absorbed(c, w, layer, q.data(), slots, rope.softmax_scale(), heads_out.data(), pool);
  kernels::linear(w.wo, heads_out.data(), out, n, pool);
}

}  // namespace dsv3
