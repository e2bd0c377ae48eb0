// Training data: a UTF-8 text split into train and held-out validation parts, tokenized once
// into token files (int32 ids) that later runs memory-map, and batches drawn from them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/mapped_file.h"
#include "tokenizer/tokenizer.h"

namespace dsv3::train {

// The split: lines are grouped in blocks of kValBlockLines; every kValEvery-th block (the
// last of each run of kValEvery) is validation, so validation text is spread over the corpus.
constexpr int64_t kValBlockLines = 100, kValEvery = 20;

class TokenFile {
 public:
  TokenFile() = default;
  explicit TokenFile(const std::string& path);  // maps a file written by write()
  static void write(const std::string& path, uint64_t key, const std::vector<int32_t>& ids);
  static bool matches(const std::string& path, uint64_t key);  // exists with this key
  const int32_t* ids() const { return ids_; }
  int64_t size() const { return n_; }

 private:
  MappedFile file_;
  const int32_t* ids_ = nullptr;
  int64_t n_ = 0;
};

struct Dataset {
  TokenFile train, val;
  double val_bytes = 0;  // UTF-8 bytes of the validation text (for bits per byte)
};

// Tokenizes `text_path` with `tok` into cache_dir/{train,val}.tok unless files made from the
// same text and tokenizer are already there (`tokenizer_key` identifies the tokenizer).
// Throws dsv3::Error for a missing, empty or non-UTF-8 text, or one too short to hold a
// sequence of `min_tokens` tokens in each part.
Dataset prepare_data(const std::string& text_path, const Tokenizer& tok, uint64_t tokenizer_key,
                     const std::string& cache_dir, int64_t min_tokens);

// Bits per byte of a unigram model with add-one smoothing fitted on the train tokens,
// evaluated on the validation tokens: the baseline a trained model must beat.
double unigram_bits_per_byte(const Dataset& d, int64_t vocab);

uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);

}  // namespace dsv3::train
