// dtype conversions and the thread pool.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"

namespace dsv3 {
namespace {

// Independent decoding of e4m3fn from its definition: bias 7, 3 mantissa bits, no infinities.
double fp8_by_definition(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -mag : mag;
}

TEST(Fp8, DecodesAll256Codes) {
  for (int c = 0; c < 256; ++c) {
    const double want = fp8_by_definition(c);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(fp8e4m3_to_f32(uint8_t(c)))) << c;
    } else {
      EXPECT_EQ(double(fp8e4m3_to_f32(uint8_t(c))), want) << "code " << c;
    }
  }
  EXPECT_EQ(fp8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0xfe), -448.0f);
  EXPECT_EQ(fp8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(fp8e4m3_to_f32(0x08), std::ldexp(1.0f, -6));  // smallest normal
}

TEST(Fp8, EncodeRoundTripsEveryFiniteCodeAndRoundsToNearestEven) {
  for (int c = 0; c < 256; ++c) {
    if (std::isnan(fp8_by_definition(c))) continue;
    if (c == 0x80) continue;  // -0 encodes as 0x80 too, checked below
    EXPECT_EQ(f32_to_fp8e4m3(fp8e4m3_to_f32(uint8_t(c))), c) << c;
  }
  EXPECT_EQ(f32_to_fp8e4m3(-0.0f), 0x80);
  EXPECT_EQ(f32_to_fp8e4m3(1000.0f), 0x7e);   // saturates
  EXPECT_EQ(f32_to_fp8e4m3(-1000.0f), 0xfe);
  EXPECT_EQ(f32_to_fp8e4m3(1.0625f), 0x38);   // halfway 1 and 1.125: even mantissa (1.0)
  EXPECT_EQ(f32_to_fp8e4m3(1.1875f), 0x3a);   // halfway 1.125 and 1.25: even (1.25)
}

TEST(Bf16, RoundTripAndNearestEven) {
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.5f)), 1.5f);
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), f32_to_bf16(1.0f));  // tie -> even
  EXPECT_EQ(bf16_to_f32(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8))), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(F16, RoundTripAllFiniteHalfValues) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;  // inf/nan
    EXPECT_EQ(f32_to_f16(f16_to_f32(uint16_t(h))), h) << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);
}

TEST(DType, NamesAndSizes) {
  EXPECT_EQ(dtype_from_name("F8_E4M3"), DType::F8_E4M3);
  EXPECT_EQ(dtype_size(DType::BF16), 2u);
  EXPECT_FALSE(dtype_from_name("F8_E5M2").has_value());
}

TEST(ThreadPool, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[size_t(i)].load(), 1);
    }
  }
}

// With a grain, every index still once, and no chunk smaller than the grain unless it is all
// of [0, n) (short ranges run inline as one chunk).
TEST(ThreadPool, ParallelForWithGrainGivesEachChunkAtLeastTheGrain) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 31, 32, 63, 64, 65, 1000})
      for (int64_t grain : {1, 32}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> chunks{0};
        std::atomic<int64_t> smallest{n};
        pool.parallel_for(
            n,
            [&](int64_t b, int64_t e) {
              for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
              ++chunks;
              for (int64_t s = smallest.load(); e - b < s && !smallest.compare_exchange_weak(s, e - b);) {
              }
            },
            grain);
        for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[size_t(i)].load(), 1);
        if (n > 0) {
          EXPECT_GE(smallest.load(), std::min(n, grain)) << threads << " threads, n " << n;
        }
        EXPECT_LE(chunks.load(), std::max<int64_t>(1, std::min<int64_t>(threads, n / grain)));
      }
  }
}

// Dynamic chunks: every index once, every chunk boundary a multiple of align (the kernels rely
// on it for whole register tiles), more chunks than threads where n allows.
TEST(ThreadPool, ParallelChunksCoverEveryIndexOnceOnAlignedBoundaries) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 31, 32, 33, 1000, 4097})
      for (int64_t align : {1, 4, 32}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int> chunks{0};
        pool.parallel_chunks(n, align, [&](int64_t b, int64_t e) {
          EXPECT_LT(b, e);
          EXPECT_EQ(b % align, 0) << n << " " << align;
          EXPECT_TRUE(e == n || e % align == 0) << n << " " << align;
          chunks++;
          for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << threads << " " << n << " " << align;
        const int64_t units = (n + align - 1) / align;
        if (threads > 1 && units >= int64_t(threads) * ThreadPool::kOversplit) {
          EXPECT_EQ(chunks.load(), threads * ThreadPool::kOversplit) << threads << " " << n << " " << align;
        }
      }
  }
}

// Guided shares: from 0 to units, never decreasing, at least one unit each when there are enough
// units, and shrinking: the last round of shares is smaller than the first (here by 8x: four
// rounds, each half the one before).
TEST(ThreadPool, GuidedSharesShrinkTowardsTheEnd) {
  for (int threads : {1, 2, 3, 8})
    for (int64_t units : {0, 1, 5, 32, 33, 1000, 100000}) {
      const int nth = threads * ThreadPool::kOversplit;
      EXPECT_EQ(ThreadPool::guided_start(units, 0, nth, threads), 0);
      EXPECT_EQ(ThreadPool::guided_start(units, nth, nth, threads), units);
      for (int i = 0; i < nth; ++i) {
        const int64_t a = ThreadPool::guided_start(units, i, nth, threads),
                      b = ThreadPool::guided_start(units, i + 1, nth, threads);
        EXPECT_LE(a, b);
        if (units >= nth) {
          EXPECT_GE(b - a, 1) << threads << " " << units << " " << i;
        }
      }
      if (units >= 100000) {
        const int64_t first = ThreadPool::guided_start(units, 1, nth, threads),
                      last = units - ThreadPool::guided_start(units, nth - 1, nth, threads);
        EXPECT_NEAR(double(first) / double(last), 8.0, 0.1) << threads << " " << units;
      }
    }
}

TEST(ThreadPool, RunWithMoreSharesThanThreadsRunsEachShareOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> seen(13);
    for (int rep = 0; rep < 200; ++rep) pool.run([&](int ith, int nth) {
      EXPECT_EQ(nth, 13);
      seen[size_t(ith)]++;
    }, 13);
    for (auto& s : seen) EXPECT_EQ(s.load(), 200);
    pool.run([&](int, int nth) { EXPECT_EQ(nth, threads); });  // the default is one share per thread again
  }
}

TEST(ThreadPool, RunGivesEachParticipantItsIndexAndPropagatesErrors) {
  ThreadPool pool(4);
  std::vector<std::atomic<int>> seen(4);
  for (int rep = 0; rep < 100; ++rep) pool.run([&](int ith, int nth) {
    EXPECT_EQ(nth, 4);
    seen[size_t(ith)]++;
  });
  for (auto& s : seen) EXPECT_EQ(s.load(), 100);
  EXPECT_THROW(pool.run([](int ith, int) {
    if (ith == 2) fail("boom");
  }), Error);
  pool.run([](int, int) {});  // still usable
}

// More threads than cores: workers are often not running when a region starts, and the
// threads that are claim their shares. Every share still runs exactly once per region, and a
// late worker never runs a share of a region that has ended (the counts would be off).
TEST(ThreadPool, SharesRunOnceEachWhenThreadsOutnumberCores) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> seen(8);
  std::atomic<int> total{0};
  for (int rep = 0; rep < 3000; ++rep) {
    pool.run([&](int ith, int) {
      seen[size_t(ith)]++;
      total++;
    });
    ASSERT_EQ(total.load(), 8 * (rep + 1)) << "region " << rep;
  }
  for (auto& s : seen) EXPECT_EQ(s.load(), 3000);
}

}  // namespace
}  // namespace dsv3
