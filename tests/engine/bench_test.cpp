// The FLOP count `dsv3 bench` quotes prefill against, on DeepSeek-V3's own config.
#include <gtest/gtest.h>

#include "engine/bench.h"
#include "io/config.h"

namespace dsv3 {
namespace {

TEST(PrefillFlops, DeepSeekV3PerTokenAndCausalAttention) {
  const ModelConfig c = ModelConfig::from_file(std::string(DSV3_TESTDATA_DIR) + "/configs/deepseek-v3-671b/config.json");
  // 37,552,297,472 active parameters (inspect), of which the embedding and lm_head are
  // 129,280 x 7,168 each: 2 x (37,552,297,472 - 2 x 926,679,040) FLOPs per token in the
  // layers, 2 x 926,679,040 for the head on the last token.
  const double layers = 2.0 * (37552297472.0 - 2 * 926679040.0), head = 2.0 * 926679040.0;
  // Attention: 61 layers x 128 heads x (192 + 128) x 2 FLOPs per causal (query, key) pair.
  const double pair = 2.0 * 61 * 128 * 320;
  EXPECT_DOUBLE_EQ(prefill_flops(c, 1), layers + head + pair);
  EXPECT_DOUBLE_EQ(prefill_flops(c, 512), 512 * layers + head + pair * 512 * 513 / 2);
}

}  // namespace
}  // namespace dsv3
