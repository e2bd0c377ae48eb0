#include "train/data.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "io/atomic_file.h"
#include "tokenizer/utf8.h"

namespace dsv3::train {

namespace fs = std::filesystem;

namespace {
constexpr char kMagic[8] = {'D', 'S', 'V', '3', 'T', 'O', 'K', '1'};
struct Header {
  char magic[8];
  uint64_t key;
  uint64_t count;
  uint64_t reserved;
};
}  // namespace

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

TokenFile::TokenFile(const std::string& path) : file_(path) {
  DSV3_CHECK(file_.size() >= sizeof(Header), path, ": not a token file (too short)");
  Header h;
  std::memcpy(&h, file_.data(), sizeof h);
  DSV3_CHECK(std::memcmp(h.magic, kMagic, 8) == 0, path, ": not a token file (bad magic)");
  DSV3_CHECK(file_.size() == sizeof(Header) + h.count * 4, path, ": truncated token file");
  ids_ = reinterpret_cast<const int32_t*>(file_.data() + sizeof(Header));
  n_ = int64_t(h.count);
}

void TokenFile::write(const std::string& path, uint64_t key, const std::vector<int32_t>& ids) {
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.key = key;
  h.count = ids.size();
  write_file_atomic(path, [&](std::FILE* f) {
    write_all(f, &h, sizeof h, path);
    write_all(f, ids.data(), ids.size() * 4, path);
  });
}

bool TokenFile::matches(const std::string& path, uint64_t key) {
  std::ifstream in(path, std::ios::binary);
  Header h{};
  if (!in.read(reinterpret_cast<char*>(&h), sizeof h)) return false;
  return std::memcmp(h.magic, kMagic, 8) == 0 && h.key == key;
}

Dataset prepare_data(const std::string& text_path, const Tokenizer& tok, uint64_t tokenizer_key,
                     const std::string& cache_dir, int64_t min_tokens) {
  std::ifstream in(text_path, std::ios::binary);
  DSV3_CHECK(in, text_path, ": cannot open the training text");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  DSV3_CHECK(!text.empty(), text_path, ": the training text is empty");
  DSV3_CHECK(utf8::first_invalid(text) == text.size(), text_path, ": not valid UTF-8 at byte ",
             utf8::first_invalid(text));

  std::string train_text, val_text;
  int64_t line = 0;
  for (size_t pos = 0; pos < text.size(); ++line) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    const bool val = (line / kValBlockLines) % kValEvery == kValEvery - 1;
    (val ? val_text : train_text).append(text, pos, end - pos);
    pos = end;
  }
  const uint64_t key = fnv1a(text.data(), text.size(), tokenizer_key);
  fs::create_directories(cache_dir);
  const std::string tp = (fs::path(cache_dir) / "train.tok").string(), vp = (fs::path(cache_dir) / "val.tok").string();
  if (!TokenFile::matches(tp, key) || !TokenFile::matches(vp, key)) {
    TokenFile::write(tp, key, tok.encode(train_text));
    TokenFile::write(vp, key, tok.encode(val_text));
  }
  Dataset d;
  d.train = TokenFile(tp);
  d.val = TokenFile(vp);
  d.val_bytes = double(val_text.size());
  DSV3_CHECK(d.train.size() >= min_tokens, text_path, ": the training part holds ", d.train.size(),
             " tokens, fewer than one batch row needs (", min_tokens, " = seq_len + 2); use a longer text or a shorter --seq-len");
  DSV3_CHECK(d.val.size() >= min_tokens, text_path, ": the validation part (every ", kValEvery, "th block of ",
             kValBlockLines, " lines) holds ", d.val.size(), " tokens, fewer than ", min_tokens,
             "; use a longer text (at least ", kValEvery * kValBlockLines, " lines) or a shorter --seq-len");
  return d;
}

double unigram_bits_per_byte(const Dataset& d, int64_t vocab) {
  std::vector<double> count(size_t(vocab), 1.0);
  for (int64_t i = 0; i < d.train.size(); ++i) count[size_t(d.train.ids()[i])] += 1;
  const double total = double(d.train.size() + vocab);
  double nats = 0;
  for (int64_t i = 0; i < d.val.size(); ++i) nats -= std::log(count[size_t(d.val.ids()[i])] / total);
  return nats / std::log(2.0) / d.val_bytes;
}

}  // namespace dsv3::train
