// The tiny synthetic checkpoint the engine tests run on, written once per test process (into
// its private TMPDIR, removed when the process ends: tests/test_main.cpp).
#pragma once
#include <filesystem>
#include <string>

#include "model/synth.h"

namespace dsv3 {

// FP8 linears with 128x128 block scales (synth's default), or BF16 ones.
inline const LoadedModel& tiny_model(bool fp8 = true) {
  auto make = [](bool f) {
    const std::filesystem::path dir =
        std::filesystem::temp_directory_path() / (f ? "dsv3_engine_test_tiny_fp8" : "dsv3_engine_test_tiny_bf16");
    SynthOptions o;
    o.out_dir = dir.string();
    o.fp8 = f;
    o.progress = false;
    o.force = true;
    write_synthetic_checkpoint(synth_preset("tiny"), o);
    return load_model(dir.string());
  };
  if (fp8) {
    static const LoadedModel m = make(true);
    return m;
  }
  static const LoadedModel m = make(false);
  return m;
}

}  // namespace dsv3
