#include "train/linear.h"

#include <vector>

#include "train/fp8.h"
#include "train/gemm.h"

namespace dsv3::train {

namespace {
template <typename T>
bool fp8(const Exec& e, bool quantizable) {
  return std::is_same_v<T, float> && quantizable && e.precision == Precision::FP8;
}
}  // namespace

template <typename T>
void linear_fwd(const Exec& e, const T* W, int64_t out, int64_t in, const T* x, int64_t n, T* y, bool quantizable) {
  if constexpr (std::is_same_v<T, float>) {
    if (fp8<T>(e, quantizable)) {
      std::vector<float> xq(size_t(n * in)), wq(size_t(out * in));
      fp8_fake_quant_rows(x, n, in, xq.data());
      fp8_quant_blocks(W, out, in, wq.data(), nullptr, nullptr);
      gemm_nt(y, xq.data(), wq.data(), n, out, in, false, e.pool);
      return;
    }
  }
  gemm_nt(y, x, W, n, out, in, false, e.pool);
}

template <typename T>
void linear_bwd(const Exec& e, const T* W, T* dW, int64_t out, int64_t in, const T* x, const T* dy, int64_t n, T* dx,
                bool accumulate_dx, bool quantizable) {
  if constexpr (std::is_same_v<T, float>) {
    if (fp8<T>(e, quantizable)) {
      // Dgrad: dy in 1x128 tiles along `out` (its reduction dimension), W in 128x128 blocks.
      if (dx) {
        std::vector<float> dyq(size_t(n * out)), wq(size_t(out * in));
        fp8_fake_quant_rows(dy, n, out, dyq.data());
        fp8_quant_blocks(W, out, in, wq.data(), nullptr, nullptr);
        gemm_nn(dx, dyq.data(), wq.data(), n, in, out, accumulate_dx, e.pool);
      }
      // Wgrad: both operands in 128x1 tiles along the token dimension.
      std::vector<float> dyq(size_t(n * out)), xq(size_t(n * in));
      fp8_fake_quant_cols(dy, n, out, dyq.data());
      fp8_fake_quant_cols(x, n, in, xq.data());
      gemm_tn(dW, dyq.data(), xq.data(), out, in, n, true, e.pool);
      return;
    }
  }
  if (dx) gemm_nn(dx, dy, W, n, in, out, accumulate_dx, e.pool);
  gemm_tn(dW, dy, x, out, in, n, true, e.pool);
}

template void linear_fwd<float>(const Exec&, const float*, int64_t, int64_t, const float*, int64_t, float*, bool);
template void linear_fwd<double>(const Exec&, const double*, int64_t, int64_t, const double*, int64_t, double*, bool);
template void linear_bwd<float>(const Exec&, const float*, float*, int64_t, int64_t, const float*, const float*,
                                int64_t, float*, bool, bool);
template void linear_bwd<double>(const Exec&, const double*, double*, int64_t, int64_t, const double*, const double*,
                                 int64_t, double*, bool, bool);

}  // namespace dsv3::train
