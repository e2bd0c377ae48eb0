#include "model/lockstep.h"

#include <csignal>
#include <cstring>
#include <map>

#include "core/error.h"
#include "model/transformer.h"

namespace dsv3 {

namespace {

struct CacheDesc {  // a cache as the followers make their mirror of it
  uint64_t id;
  int64_t n_layers, max_seq;
  int32_t dtype, pad;
};

template <class T>
void put(std::vector<uint8_t>& buf, const T* p, size_t n) {
  const size_t at = buf.size();
  buf.resize(at + n * sizeof(T));
  if (n) std::memcpy(&buf[at], p, n * sizeof(T));
}

template <class T>
std::vector<T> take(const std::vector<uint8_t>& buf, size_t& at, int64_t n) {
  DSV3_CHECK(n >= 0 && at + size_t(n) * sizeof(T) <= buf.size(), "step record: payload too short");
  std::vector<T> v(static_cast<size_t>(n));
  if (n) std::memcpy(v.data(), &buf[at], size_t(n) * sizeof(T));
  at += size_t(n) * sizeof(T);
  return v;
}

// Payload bytes of a record with header h (for a model of hidden size dim).
size_t payload_bytes(const StepHeader& h, int64_t dim) {
  size_t b = size_t(h.rows) * (sizeof(int32_t) * 2 + sizeof(int64_t)) + size_t(h.logit_rows) * sizeof(int64_t) +
             size_t(h.caches) * sizeof(CacheDesc) + size_t(h.released) * sizeof(uint64_t);
  if (h.kind == StepHeader::Mtp) b += size_t(h.rows * dim) * sizeof(float);
  return b;
}

}  // namespace

StepDriver::StepDriver(Collectives& comm) : comm_(comm) {}

StepDriver::~StepDriver() {
  if (in_step_) {  // an exception inside a step: the followers wait in its collectives
    std::fprintf(stderr, "dsv3: %s: error: step %llu failed; ending the job\n", comm_.describe().c_str(),
                 static_cast<unsigned long long>(step_));
    comm_.abort(1);
  }
  finish();
}

void StepDriver::adopt(KVCache& cache) {
  std::weak_ptr<Released> log = released_;
  cache.set_identity(next_id_++, [log](uint64_t id) {
    if (auto l = log.lock()) {
      std::lock_guard lock(l->mu);
      l->ids.push_back(id);
    }
  });
}

void StepDriver::finish() {
  if (finished_) return;
  finished_ = true;
  StepHeader h;
  h.kind = StepHeader::Exit;
  h.step = step_++;
  comm_.broadcast(&h, sizeof h, 0);
}

void StepDriver::send(StepHeader& h, std::vector<uint8_t>& payload, std::span<const TokenSlot> slots,
                      std::span<const int32_t> tokens) {
  DSV3_ASSERT(!finished_);
  // Caches in order of first use, and the rows' indices into that list.
  std::vector<CacheDesc> caches;
  std::vector<int32_t> index(slots.size());
  std::vector<int64_t> pos(slots.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    const KVCache& c = *slots[i].cache;
    DSV3_ASSERT(c.id() != 0);  // made by Transformer::make_cache
    size_t k = 0;
    while (k < caches.size() && caches[k].id != c.id()) ++k;
    if (k == caches.size()) caches.push_back({c.id(), c.n_layers(), c.max_seq(), int32_t(c.dtype()), 0});
    index[i] = int32_t(k);
    pos[i] = slots[i].pos;
  }
  std::vector<uint64_t> released;
  {
    std::lock_guard lock(released_->mu);
    released.swap(released_->ids);
  }
  h.rows = int64_t(tokens.size());
  h.caches = int64_t(caches.size());
  h.released = int64_t(released.size());
  h.step = step_++;
  std::vector<uint8_t> buf;
  put(buf, tokens.data(), tokens.size());
  put(buf, index.data(), index.size());
  put(buf, pos.data(), pos.size());
  buf.insert(buf.end(), payload.begin(), payload.end());  // logit rows, or the MTP hidden states
  put(buf, caches.data(), caches.size());
  put(buf, released.data(), released.size());
  comm_.broadcast(&h, sizeof h, 0);
  comm_.broadcast(buf.data(), buf.size(), 0);
  in_step_ = true;
}

void StepDriver::announce_forward(std::span<const int32_t> tokens, std::span<const TokenSlot> slots,
                                  std::span<const int64_t> logit_rows, MLAForm form) {
  StepHeader h;
  h.kind = StepHeader::Forward;
  h.logit_rows = int64_t(logit_rows.size());
  h.form = int32_t(form);
  std::vector<uint8_t> extra;
  put(extra, logit_rows.data(), logit_rows.size());
  send(h, extra, slots, tokens);
}

void StepDriver::announce_mtp(int64_t depth, std::span<const int32_t> next_tokens, const float* hidden, int64_t dim,
                              int64_t start_pos, const KVCache& cache, bool all_logits) {
  StepHeader h;
  h.kind = StepHeader::Mtp;
  h.depth = int32_t(depth);
  h.start_pos = start_pos;
  h.all_logits = all_logits;
  std::vector<TokenSlot> slots;
  for (size_t i = 0; i < next_tokens.size(); ++i) slots.push_back({const_cast<KVCache*>(&cache), start_pos + int64_t(i)});
  std::vector<uint8_t> extra;
  put(extra, hidden, next_tokens.size() * size_t(dim));
  send(h, extra, slots, next_tokens);
}

void StepDriver::announce_copy(const KVCache& src, const KVCache& dst, int64_t n) {
  StepHeader h;
  h.kind = StepHeader::Copy;
  h.start_pos = n;
  const TokenSlot slots[] = {{const_cast<KVCache*>(&src), 0}, {const_cast<KVCache*>(&dst), 0}};
  const int32_t tokens[] = {0, 0};
  std::vector<uint8_t> none;
  send(h, none, slots, tokens);
}

void follow(const Transformer& model, Collectives& comm, ThreadPool& pool) {
  const ModelConfig& c = model.config();
  const int64_t dim = c.hidden_size;
  std::map<uint64_t, std::unique_ptr<KVCache>> mirrors;
  std::vector<uint8_t> buf;
  for (uint64_t step = 0;; ++step) {
    StepHeader h;
    comm.broadcast_idle(&h, sizeof h, 0);
    DSV3_CHECK(h.magic == StepHeader::kMagic && h.step == step, "step record ", step, " from rank 0 is malformed (magic ",
               h.magic, ", step ", h.step, ")");
    if (h.kind == StepHeader::Exit) return;
    DSV3_CHECK((h.kind == StepHeader::Forward || h.kind == StepHeader::Mtp || h.kind == StepHeader::Copy) &&
                   h.rows > 0 && h.caches > 0,
               "step record ", step, ": unknown kind ", h.kind);
    buf.resize(payload_bytes(h, dim));
    comm.broadcast(buf.data(), buf.size(), 0);
    size_t at = 0;
    const auto tokens = take<int32_t>(buf, at, h.rows);
    const auto index = take<int32_t>(buf, at, h.rows);
    const auto pos = take<int64_t>(buf, at, h.rows);
    const auto logit_rows = take<int64_t>(buf, at, h.kind == StepHeader::Forward ? h.logit_rows : 0);
    const auto hidden = take<float>(buf, at, h.kind == StepHeader::Mtp ? h.rows * dim : 0);
    const auto caches = take<CacheDesc>(buf, at, h.caches);
    const auto released = take<uint64_t>(buf, at, h.released);
    for (uint64_t id : released) mirrors.erase(id);
    std::vector<KVCache*> cache_of;
    for (const CacheDesc& d : caches) {
      auto& m = mirrors[d.id];
      if (!m || m->max_seq() != d.max_seq || m->n_layers() != d.n_layers || int32_t(m->dtype()) != d.dtype)
        m = std::make_unique<KVCache>(c, d.n_layers, d.max_seq, DType(d.dtype));
      cache_of.push_back(m.get());
    }
    std::vector<TokenSlot> slots;
    for (int64_t i = 0; i < h.rows; ++i) {
      DSV3_CHECK(index[size_t(i)] >= 0 && index[size_t(i)] < h.caches, "step record ", step, ": bad cache index");
      slots.push_back({cache_of[size_t(index[size_t(i)])], pos[size_t(i)]});
    }
    if (h.kind == StepHeader::Copy) {
      DSV3_CHECK(h.rows == 2, "step record ", step, ": a copy names two caches");
      slots[1].cache->copy_rows(*slots[0].cache, h.start_pos);
    } else if (h.kind == StepHeader::Forward)
      model.forward_batch(tokens, slots, logit_rows, nullptr, pool, nullptr, nullptr, MLAForm(h.form));
    else
      model.mtp_forward(h.depth, tokens, hidden.data(), h.start_pos, *cache_of[0], nullptr, h.all_logits != 0, pool);
  }
}

}  // namespace dsv3
