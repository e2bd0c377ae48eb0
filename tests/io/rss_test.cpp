// Loading must not copy the weights: after load_model on a ~0.8 GB synthetic checkpoint the
// process's resident memory grows by a small fraction of the file size; reading one expert's
// weights then makes about that many bytes resident (pages come in on first touch).
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "io/atomic_file.h"
#include "io/mapped_file.h"
#include "io/safetensors_writer.h"
#include "io_test_util.h"
#include "model/synth.h"
#include "model/transformer.h"

namespace dsv3 {
namespace {

using testing::TempDir;

// Reads every byte of a tensor (summing, so the reads cannot be optimised away).
uint64_t touch(const TensorView& v) {
  const auto* p = static_cast<const volatile uint8_t*>(v.data);
  uint64_t sum = 0;
  for (size_t i = 0; i < v.nbytes(); ++i) sum += p[i];
  return sum;
}

TEST(LoadRss, OpeningDoesNotCopyWeights) {
  TempDir dir("rss");
  SynthOptions opt;
  opt.out_dir = (dir.path() / "small").string();
  opt.progress = false;
  opt.shard_bytes = 256ull << 20;  // several shards, as real checkpoints have
  write_synthetic_checkpoint(synth_preset("small"), opt);

  uint64_t file_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(opt.out_dir))
    if (e.path().extension() == ".safetensors") file_bytes += e.file_size();
  ASSERT_GT(file_bytes, 500ull << 20) << "the preset no longer makes a large checkpoint";

  const int64_t before = int64_t(current_rss_bytes());
  const LoadedModel m = load_model(opt.out_dir);
  const int64_t after_load = int64_t(current_rss_bytes());
  const int64_t load_growth = after_load - before;
  RecordProperty("file_bytes", std::to_string(file_bytes));
  RecordProperty("load_rss_growth", std::to_string(load_growth));
  EXPECT_LT(load_growth, int64_t(file_bytes / 10))
      << "RSS grew by " << load_growth << " bytes opening a " << file_bytes << "-byte checkpoint";

  // The bound weights are the mapped bytes themselves, not copies.
  const std::string down = "model.layers.1.mlp.experts.0.down_proj.weight";
  EXPECT_EQ(m.model->weights().layers[1].moe.experts[0].w2.data, m.checkpoint->get(down).data);

  // Touch all of expert 0 of layer 1 (three FP8 matrices and their scales).
  uint64_t expert_bytes = 0, sink = 0;
  for (const char* part : {"gate_proj", "up_proj", "down_proj"})
    for (const char* suffix : {"", "_scale_inv"}) {
      const TensorView v =
          m.checkpoint->get(std::string("model.layers.1.mlp.experts.0.") + part + ".weight" + suffix);
      expert_bytes += v.nbytes();
      sink += touch(v);
    }
  const int64_t touch_growth = int64_t(current_rss_bytes()) - after_load;
  RecordProperty("expert_bytes", std::to_string(expert_bytes));
  RecordProperty("touch_rss_growth", std::to_string(touch_growth));
  EXPECT_GT(sink, 0u);
  // Loose: the kernel may map a few neighbouring pages around each fault (fault-around).
  EXPECT_GE(touch_growth, int64_t(expert_bytes) / 2)
      << "touching " << expert_bytes << " bytes of weights grew RSS by only " << touch_growth;
  EXPECT_LE(touch_growth, int64_t(expert_bytes) * 2 + (8 << 20))
      << "touching " << expert_bytes << " bytes of weights grew RSS by " << touch_growth;
}

// A file of `bytes` bytes (a multiple of 1 MiB), every byte `c`, written as dsv3 writes files.
void write_filled(const std::string& path, size_t bytes, char c) {
  write_file_atomic(path, [&](std::FILE* f) {
    const std::vector<char> chunk(size_t(1) << 20, c);
    for (size_t i = 0; i < bytes; i += chunk.size()) write_all(f, chunk.data(), chunk.size(), path);
  });
}

// populate() maps every page of a mapped file up front (bench's warm-up): the resident set
// grows by the file's size at once, not page by page on first touch.
TEST(LoadRss, PopulateMapsEveryPage) {
  TempDir dir("populate");
  const std::string path = (dir.path() / "blob.bin").string();
  const size_t bytes = size_t(64) << 20;
  write_filled(path, bytes, 'x');
  const MappedFile mapped(path);
  ASSERT_TRUE(mapped.is_mapped());
  const int64_t before = int64_t(current_rss_bytes());
  mapped.populate();
  const int64_t growth = int64_t(current_rss_bytes()) - before;
  EXPECT_GE(growth, int64_t(bytes) * 9 / 10) << "populate() of a " << bytes << "-byte mapping grew RSS by " << growth;
  EXPECT_LE(growth, int64_t(bytes) + (8 << 20));
}

// Share of a mapped file's pages held in the page cache (mincore).
double cached_share(const MappedFile& f) {
  const size_t page = size_t(::sysconf(_SC_PAGESIZE)), pages = (f.size() + page - 1) / page;
  std::vector<unsigned char> in(pages);
  EXPECT_EQ(::mincore(const_cast<uint8_t*>(f.data()), f.size(), in.data()), 0);
  size_t cached = 0;
  for (unsigned char c : in) cached += c & 1;
  return double(cached) / double(pages);
}

// SafetensorsWriter drops what it wrote from the page cache (so that the first mapping reads it
// back in huge folios); a plain atomic write leaves it cached (the control: this filesystem
// keeps written pages, so the drop is what made the difference).
TEST(LoadRss, WrittenSafetensorsLeaveThePageCache) {
  TempDir dir("dropcache");
  const size_t bytes = size_t(16) << 20;
  const std::string plain = (dir.path() / "plain.bin").string(), st = (dir.path() / "w.safetensors").string();
  write_filled(plain, bytes, 'x');
  SafetensorsWriter w;
  w.add("t", DType::U8, Shape{int64_t(bytes)});
  w.write(st, [](size_t, std::span<uint8_t> dst) { std::fill(dst.begin(), dst.end(), uint8_t(7)); });
  const MappedFile a(plain), b(st);
  EXPECT_GE(cached_share(a), 0.9) << "this filesystem does not keep written pages cached";
  EXPECT_LE(cached_share(b), 0.1) << "the safetensors file stayed in the page cache";
  EXPECT_EQ(b.data()[b.size() - 1], 7);  // and reads back
}

// --recache: opening drops the file's cached pages first, so the mapping reads them back.
TEST(LoadRss, RecacheDropsTheFileFromThePageCache) {
  TempDir dir("recache");
  const std::string path = (dir.path() / "plain.bin").string();
  const size_t bytes = size_t(16) << 20;
  write_filled(path, bytes, 'z');
  EXPECT_GE(cached_share(MappedFile(path)), 0.9) << "this filesystem does not keep written pages cached";
  LoadOptions opt;
  opt.recache = true;
  const MappedFile m(path, opt);
  EXPECT_LE(cached_share(m), 0.1) << "--recache left the file in the page cache";
  m.populate();
  EXPECT_GE(cached_share(m), 0.9);
  EXPECT_EQ(m.data()[bytes / 2], 'z');
}

// residency counts only memory inside the ranges: none for no ranges, no huge pages for a small
// heap buffer, never more than the ranges hold (a --no-mmap copy's anonymous mapping).
TEST(LoadRss, ResidencyStaysWithinTheRanges) {
  ASSERT_TRUE(residency({}).has_value()) << "/proc/self/smaps unreadable";
  EXPECT_EQ(residency({})->resident, 0u);
  EXPECT_EQ(residency({})->huge, 0u);
  std::vector<uint8_t> small(4096, 1);
  const std::span<const uint8_t> one[] = {small};
  EXPECT_EQ(residency(one)->huge, 0u);
  EXPECT_LE(residency(one)->resident, small.size());
  TempDir dir("huge");
  const std::string path = (dir.path() / "blob.bin").string();
  write_filled(path, size_t(6) << 20, 'y');
  LoadOptions copy;
  copy.mmap = false;
  const MappedFile m(path, copy);
  const std::span<const uint8_t> r[] = {m.bytes()};
  EXPECT_LE(residency(r)->huge, m.size());
  EXPECT_EQ(residency(r)->resident, m.size());  // read into it
}

// A file mapping's resident bytes are the pages this process touched, not what the page cache
// holds: a cached 4 MiB file maps nothing until read; populating its second MiB maps that MiB
// (and at most the kernel's fault-around, 64 KiB windows, beyond it: none, the MiB being
// aligned); the whole file then maps it all.
TEST(LoadRss, ResidencyOfAFileMappingIsWhatThisProcessTouched) {
  TempDir dir("touched");
  const std::string path = (dir.path() / "blob.bin").string();
  const size_t mib = size_t(1) << 20;
  write_filled(path, 4 * mib, 'x');
  const MappedFile m(path);
  ASSERT_GE(cached_share(m), 0.9) << "this filesystem does not keep written pages cached";
  const std::span<const uint8_t> r[] = {m.bytes()};
  EXPECT_EQ(residency(r)->resident, 0u);
  populate_range(m.bytes().subspan(mib, mib));
  EXPECT_GE(residency(r)->resident, mib);
  EXPECT_LE(residency(r)->resident, mib + 2 * 65536);
  m.populate();
  EXPECT_EQ(residency(r)->resident, 4 * mib);
}

}  // namespace
}  // namespace dsv3
