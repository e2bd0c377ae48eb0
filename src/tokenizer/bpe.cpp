// BPE merging with a priority queue over a doubly linked list of symbols, O(n log n) per word.
#include "tokenizer/bpe.h"

#include <queue>

#include "core/error.h"
#include "tokenizer/byte_level.h"

namespace dsv3 {

Bpe::Bpe(const std::unordered_map<std::string, int32_t>& vocab,
         const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges)
    : ignore_merges_(ignore_merges) {
  byte_id_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(byte_level::char_for_byte(static_cast<uint8_t>(b)));
    if (it != vocab.end()) byte_id_[b] = it->second;
  }
  merges_.reserve(merges.size() * 2);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
    DSV3_CHECK(ia != vocab.end() && ib != vocab.end(), "BPE merge ", rank, " (\"", a, " ", b,
               "\") uses a token that is not in the vocabulary");
    DSV3_CHECK(iab != vocab.end(), "BPE merge ", rank, " (\"", a, " ", b,
               "\") makes a token that is not in the vocabulary");
    // A repeated pair keeps its first (best) rank, like the HashMap built by tokenizers.
    merges_.try_emplace(key(ia->second, ib->second),
                        Merge{static_cast<int32_t>(rank), iab->second});
  }
  if (ignore_merges_) {
    for (const auto& [tok, id] : vocab) {
      if (auto bytes = byte_level::token_to_bytes(tok)) whole_.emplace(*bytes, id);
    }
  }
}

void Bpe::encode(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    auto it = whole_.find(std::string(piece));
    if (it != whole_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (piece.size() == 1) {
    const int32_t id = byte_id_[static_cast<uint8_t>(piece[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  const bool cacheable = piece.size() <= kCacheMaxWordBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(std::string(piece));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  merge_word(piece, out);
  if (cacheable) {
    std::vector<int32_t> ids(out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() >= kCacheMaxEntries) cache_.clear();
    cache_.emplace(std::string(piece), std::move(ids));
  }
}

void Bpe::merge_word(std::string_view piece, std::vector<int32_t>& out) const {
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (const char ch : piece) {
    const int32_t id = byte_id_[static_cast<uint8_t>(ch)];
    // A byte missing from the vocabulary is dropped: the model has no unk token.
    if (id < 0) continue;
    const auto n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, n + 1, true});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  // Min-heap on (rank, position): lowest rank first, leftmost among equal ranks.
  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto push_pair = [&](int32_t pos) {
    const int32_t nx = sym[pos].next;
    if (nx < 0) return;
    auto it = merges_.find(key(sym[pos].id, sym[nx].id));
    if (it != merges_.end()) queue.push({it->second.rank, pos, it->second.id});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(sym.size()); ++p) push_pair(p);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = sym[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = sym[left.next];
    // Skip entries made stale by an earlier merge at this position.
    auto it = merges_.find(key(left.id, right.id));
    if (it == merges_.end() || it->second.id != top.id) continue;
    left.id = top.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : sym) {
    if (s.alive) out.push_back(s.id);
  }
}

}  // namespace dsv3
