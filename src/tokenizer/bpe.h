// Byte-level BPE model: turns one pre-tokenized piece (raw bytes) into vocabulary ids by
// applying merges lowest rank first, as Word::merge_all in Hugging Face `tokenizers` (bpe/word.rs).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dsv3 {

class Bpe {
 public:
  // `vocab` maps byte-level vocabulary strings (e.g. "Ġworld") to ids; `merges` are pairs of
  // such strings, highest priority first. Throws dsv3::Error if a merge names a string that is
  // not in the vocabulary. With `ignore_merges`, a piece found whole in the vocabulary is
  // taken as one token without merging.
  Bpe(const std::unordered_map<std::string, int32_t>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges);

  // Appends the ids of `piece` (raw bytes, not byte-level characters) to `out`.
  // Thread-safe: the word cache is guarded by a mutex.
  void encode(std::string_view piece, std::vector<int32_t>& out) const;

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void merge_word(std::string_view piece, std::vector<int32_t>& out) const;

  std::array<int32_t, 256> byte_id_{};  // id of each single-byte token, -1 when absent
  std::unordered_map<uint64_t, Merge> merges_;
  std::unordered_map<std::string, int32_t> whole_;  // raw bytes -> id, only for ignore_merges
  bool ignore_merges_ = false;

  // Words repeat a lot in real text; caching them skips most merging. Bounded by clearing.
  static constexpr size_t kCacheMaxEntries = 1 << 16;
  static constexpr size_t kCacheMaxWordBytes = 256;  // long runs (spaces, digits) are rare
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace dsv3
