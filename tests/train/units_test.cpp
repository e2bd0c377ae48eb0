// Unit tests of the trainer's rules: the FP8 quantizer against the inference engine's decode,
// the balance-bias update, MaxVio and the balance loss on hand-made loads, the learning-rate
// schedule, and the BPE tokenizer trainer's output loaded by the inference tokenizer.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/dtype.h"
#include "tokenizer/tokenizer.h"
#include "train/balance.h"
#include "train/bpe_trainer.h"
#include "train/fp8.h"
#include "train/optimizer.h"

namespace dsv3::train {
namespace {

TEST(Fp8, EveryCodeRoundTripsThroughTheEngineDecode) {
  for (int c = 0; c < 256; ++c) {
    const float v = fp8e4m3_to_f32(uint8_t(c));
    if (std::isnan(v)) continue;  // S.1111.111
    EXPECT_EQ(f32_to_fp8e4m3(v), uint8_t(c)) << "code " << c << " value " << v;
    // A block holding this value and the block maximum 448 keeps scale 1 and the exact code.
    float w[2] = {v, 448.0f}, out[2];
    uint8_t codes[2];
    float scale;
    fp8_quant_blocks(w, 1, 2, out, codes, &scale);
    EXPECT_EQ(scale, 1.0f);
    EXPECT_EQ(codes[0], uint8_t(c));
    EXPECT_EQ(out[0], v);
  }
}

TEST(Fp8, BlockScalesAtEdges) {
  const int64_t rows = 130, cols = 200;  // 2 x 2 blocks, the last ones partial
  std::vector<float> w(size_t(rows * cols)), out(w.size()), scale(4);
  std::vector<uint8_t> codes(w.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) w[size_t(r * cols + c)] = std::sin(float(r * 31 + c)) * (1 + r / 128 * 10 + c / 128 * 100);
  fp8_quant_blocks(w.data(), rows, cols, out.data(), codes.data(), scale.data());
  for (int br = 0; br < 2; ++br)
    for (int bc = 0; bc < 2; ++bc) {
      float amax = 0;
      for (int64_t r = br * 128; r < std::min<int64_t>(rows, br * 128 + 128); ++r)
        for (int64_t c = bc * 128; c < std::min<int64_t>(cols, bc * 128 + 128); ++c)
          amax = std::max(amax, std::fabs(w[size_t(r * cols + c)]));
      EXPECT_FLOAT_EQ(scale[size_t(br * 2 + bc)], amax / 448.0f) << br << "," << bc;
    }
  for (size_t i = 0; i < w.size(); ++i) {
    const int64_t r = int64_t(i) / cols, c = int64_t(i) % cols;
    EXPECT_EQ(out[i], fp8e4m3_to_f32(codes[i]) * scale[size_t((r / 128) * 2 + c / 128)]);
    EXPECT_LE(std::fabs(out[i] - w[i]), std::fabs(w[i]) * 0.0625f + scale[size_t((r / 128) * 2 + c / 128)] * 0.002f);
  }
}

TEST(Fp8, TileScalesRowsAndColumns) {
  // 1x128 tiles: a row of 130 with a huge last element must not change the first tile.
  std::vector<float> x(130, 1.0f), out(130);
  x[129] = 1000.0f;
  fp8_fake_quant_rows(x.data(), 1, 130, out.data());
  for (int i = 0; i < 128; ++i) EXPECT_EQ(out[size_t(i)], 1.0f);
  EXPECT_EQ(out[129], 1000.0f);  // the tile's max maps exactly onto 448
  // 128x1 tiles: the same along a column.
  std::vector<float> y(130 * 2, 3.0f), outy(y.size());
  y[129 * 2 + 1] = -500.0f;
  fp8_fake_quant_cols(y.data(), 130, 2, outy.data());
  for (int r = 0; r < 128; ++r) EXPECT_EQ(outy[size_t(r * 2 + 1)], 3.0f);
  EXPECT_EQ(outy[129 * 2 + 1], -500.0f);
  // All-zero tiles stay zero.
  std::vector<float> z(256, 0.0f), outz(256, 1.0f);
  fp8_fake_quant_rows(z.data(), 2, 128, outz.data());
  for (float v : outz) EXPECT_EQ(v, 0.0f);
}

TEST(Balance, BiasUpdateMovesTowardsTheMeanLoad) {
  std::vector<float> bias = {0.0f, 0.0f, 0.0f, 0.5f};
  update_balance_bias({10, 2, 4, 4}, 0.01, bias.data());  // mean 5
  EXPECT_FLOAT_EQ(bias[0], -0.01f);
  EXPECT_FLOAT_EQ(bias[1], 0.01f);
  EXPECT_FLOAT_EQ(bias[2], 0.01f);
  EXPECT_FLOAT_EQ(bias[3], 0.51f);
  std::vector<float> same = {0.1f, 0.2f};
  update_balance_bias({3, 3}, 0.5, same.data());  // exactly balanced: unchanged
  EXPECT_FLOAT_EQ(same[0], 0.1f);
  EXPECT_FLOAT_EQ(same[1], 0.2f);
}

TEST(Balance, MaxVio) {
  EXPECT_DOUBLE_EQ(max_violation({10, 2, 4, 4}), 10.0 / 5.0 - 1.0);
  EXPECT_DOUBLE_EQ(max_violation({5, 5, 5, 5}), 0.0);
  EXPECT_DOUBLE_EQ(max_violation({0, 0, 8, 0}), 3.0);
  EXPECT_DOUBLE_EQ(max_violation({0, 0}), 0.0);
}

TEST(Balance, SequenceLossOnHandMadeRouting) {
  // 2 tokens, 4 experts, top-1. Both tokens -> expert 0: f_0 = E / (K T) * 2 = 4.
  const double s[8] = {0.5, 0.5, 0.5, 0.5, 0.8, 0.2, 0.2, 0.8};
  const int32_t sel[2] = {0, 0};
  // s' rows: (.25 .25 .25 .25), (.4 .1 .1 .4); P_0 = (.25 + .4) / 2 = .325; L = a * 4 * .325.
  EXPECT_NEAR(sequence_balance_loss<double>(s, sel, 2, 4, 1, 0.1, 0, nullptr), 0.1 * 4 * 0.325, 1e-12);
  // Perfectly balanced routing with uniform scores gives alpha * 1.
  const double u[8] = {0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5};
  const int32_t sel2[4] = {0, 1, 2, 3};
  EXPECT_NEAR(sequence_balance_loss<double>(u, sel2, 2, 4, 2, 0.1, 0, nullptr), 0.1, 1e-12);
  EXPECT_EQ(parse_balance("aux-free"), Balance::AuxFree);
  EXPECT_THROW(parse_balance("sometimes"), Error);
}

TEST(Schedule, WarmupThenCosineToFloor) {
  OptimConfig o;
  o.lr = 1.0;
  o.warmup = 10;
  o.steps = 110;
  o.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(lr_at(o, 0), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(o, 9), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(o, 10), 1.0);
  EXPECT_NEAR(lr_at(o, 60), 0.55, 1e-12);
  EXPECT_NEAR(lr_at(o, 110), 0.1, 1e-12);
  o.lr = -1;
  EXPECT_THROW(validate(o), Error);
}

TEST(BpeTrainer, WritesATokenizerTheEngineLoads) {
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "In the beginning God created the heaven and the earth " + std::to_string(i * 7919) + " times.\n";
  const BpeResult r = train_bpe(text, min_vocab_size() + 40);
  EXPECT_EQ(r.vocab_size, min_vocab_size() + 40);
  EXPECT_EQ(r.merges, 40);
  const auto dir = std::filesystem::temp_directory_path() / "dsv3_bpe_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << r.tokenizer_json;
  std::ofstream(dir / "tokenizer_config.json") << r.tokenizer_config_json;
  const Tokenizer tok = Tokenizer::from_dir(dir);
  EXPECT_EQ(tok.vocab_size(), r.vocab_size);
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.token_to_id("<｜User｜>"), min_vocab_size() + 40 - trailing_special_count() + 3);
  const std::string s = "In the beginning God created the heaven. Ünïcode 42!";
  const auto ids = tok.encode(s);
  EXPECT_EQ(tok.decode(ids), s);
  EXPECT_LT(ids.size(), s.size());  // merges were used
  // Byte-level only: every byte is one token.
  const BpeResult b = train_bpe("x", min_vocab_size());
  EXPECT_EQ(b.merges, 0);
  EXPECT_THROW(train_bpe(text, min_vocab_size() - 1), Error);
  EXPECT_THROW(train_bpe("", 1000), Error);
  EXPECT_THROW(train_bpe("\xff\xfe", 1000), Error);
}

}  // namespace
}  // namespace dsv3::train
