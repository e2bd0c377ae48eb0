// Parameter and memory accounting from config.json alone (no weights needed), for inspect.
#pragma once
#include <cstdint>

#include "io/config.h"

namespace dsv3 {

struct ParamCounts {
  int64_t total = 0;   // main model (embedding, layers, final norm, head), without MTP modules
  int64_t active = 0;  // used per token: everything but the routed experts not selected
  int64_t mtp = 0;     // MTP modules (excluding the embedding/head copies they share with the main model)
  int64_t mtp_total = 0;  // MTP modules as stored, copies included
  int64_t routed_expert = 0;  // one routed expert
  int64_t kv_bytes_per_token_bf16 = 0;  // latent cache (c_kv + k_pe) of all main layers in BF16
};

ParamCounts count_params(const ModelConfig& c);

}  // namespace dsv3
