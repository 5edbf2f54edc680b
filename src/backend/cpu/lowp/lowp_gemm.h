// Reduced-precision GEMM drivers: convert the activation rows once per call (bf16, or shifted int8 with a
// scale per row), then run the packed-panel micro-tiles over the thread pool with the float32 drivers'
// task plan (gemm/gemm.h) and epilogues.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/gemm/gemm.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/thread_pool.h"
#include "dinov3/status.h"

namespace dinov3::cpu::lowp {

// The converted activations of the current call; grows only, so steady-state runs allocate nothing.
class LowpStaging {
 public:
  Status reserve(int64_t rows, int64_t row_bytes);
  uint8_t* rows_data() { return data_.get(); }
  // int8 rows (lowp_kernels.h) from row r on, rows of row_bytes.
  U8Rows u8_rows(int64_t r, int64_t row_bytes) {
    U8Rows u;
    u.data = data_.get() + r * row_bytes;
    u.scale = scales_.get() + r;
    u.zero = zeros_.get() + r;
    u.outliers = outliers_.get() + r;
    u.outlier_index = outlier_indices_.get() + r * kMaxOutliers;
    u.outlier_value = outlier_values_.get() + r * kMaxOutliers;
    return u;
  }

 private:
  AlignedBytes data_;
  AlignedPtr scales_, outlier_values_;
  std::unique_ptr<int32_t[]> zeros_, outliers_, outlier_indices_;
  int64_t data_bytes_ = 0, row_count_ = 0;
};

// bf16 forms of a GEMM's activations that skip a conversion pass (both optional):
//   in:  the input rows already rounded to bf16 (bf16.h), row stride = the weight's k_pad, zero past `in`;
//        used only by a bf16 weight (an int8 one converts the float32 rows as usual).
//   out: where the output rows also go in bf16 (row stride ld_out; the caller zeroes any padding column).
struct Bf16Copies {
  const uint16_t* in = nullptr;
  uint16_t* out = nullptr;
  int64_t ld_out = 0;
  bool out_only = false;  // with out: write only the bf16 rows, c stays untouched (kStore, kGelu, SwiGLU)
};

// a[r, :cols] for r < rows in bf16 (bf16.h's rounding) in staging, rows ld apart (ld >= cols, zero past
// cols), converted on the pool's threads.
Result<const uint16_t*> bf16_rows(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, const float* a,
                                  int64_t lda, int64_t rows, int64_t cols, int64_t ld);

// c[r, :] (op)= a[r, :] · w^T + bias for r < rows; `epilogue` is kStore, kGelu(Lowp) or kScaleAdd (scale:
// [w.out]); done: work on finished rows (gemm.h's RowsDone).
Status gemm_linear_lowp(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, const float* a,
                        int64_t lda, int64_t rows, const LowpLinear& w, TileEpilogue epilogue, const float* scale,
                        float* c, int64_t ldc, const Bf16Copies& copies = {}, const RowsDone* done = nullptr);

// c = silu(a · gate^T + bg) * (a · up^T + bu). Needs scratch.reserve(swiglu_scratch_floats_lowp()).
size_t swiglu_scratch_floats_lowp();
Status gemm_swiglu_lowp(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, ThreadScratch& scratch,
                        const float* a, int64_t lda, int64_t rows, const LowpLinear& gate, const LowpLinear& up,
                        float* c, int64_t ldc, const Bf16Copies& copies = {});

}  // namespace dinov3::cpu::lowp
