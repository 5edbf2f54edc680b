// The AVX2 + FMA kernel set (compiled with -mavx2 -mfma; reached only through cpu_kernels_avx2() after the
// runtime check).
//
// GEMM tile 6x16: 12 ymm accumulators + 2 B vectors + 1 broadcast fit the 16 ymm registers.
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels/gemm_tile.h"
#include "backend/cpu/kernels/row_kernels.h"
#include "backend/cpu/simd/ops_avx2.h"

namespace dinov3::cpu {
namespace {

constexpr int kMr = 6;
constexpr int kNv = 2;

void gemm_f32_6x16_avx2(const GemmTile& t) { gemm_tile<OpsAvx2, kMr, kNv>(t); }

void layer_norm_f32_avx2(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma,
                         const float* beta, float eps) {
  layer_norm_rows<OpsAvx2>(x, y, rows, dim, gamma, beta, eps);
}

void softmax_block_f32_avx2(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum,
                            float* rescale) {
  softmax_block<OpsAvx2>(s, lds, rows, cols, row_max, row_sum, rescale);
}

void rope_f32_avx2(const float* src, int64_t ld, int64_t rows, const float* table, int64_t head_dim, float scale,
                   float* dst) {
  rope_rows<OpsAvx2>(src, ld, rows, table, head_dim, scale, dst);
}

}  // namespace

const CpuKernels& cpu_kernels_avx2() {
  static const CpuKernels kernels{Isa::kAvx2,         kMr, kNv * OpsAvx2::kLanes, gemm_f32_6x16_avx2,
                                  layer_norm_f32_avx2, softmax_block_f32_avx2, rope_f32_avx2};
  return kernels;
}

}  // namespace dinov3::cpu
