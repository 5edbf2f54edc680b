// The portable kernel set: the generic kernels instantiated with one-lane "vectors", for CPUs without
// AVX2 + FMA (and to test the drivers without SIMD).
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels/gemm_tile.h"
#include "backend/cpu/kernels/row_kernels.h"
#include "backend/cpu/simd/ops_scalar.h"

namespace dinov3::cpu {
namespace {

constexpr int kMr = 4;
constexpr int kNv = 8;

void gemm_f32_4x8_scalar(const GemmTile& t) { gemm_tile<OpsScalar, kMr, kNv>(t); }

void layer_norm_f32_scalar(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma,
                           const float* beta, float eps) {
  layer_norm_rows<OpsScalar>(x, y, rows, dim, gamma, beta, eps);
}

void softmax_block_f32_scalar(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum,
                              float* rescale) {
  softmax_block<OpsScalar>(s, lds, rows, cols, row_max, row_sum, rescale);
}

void rope_f32_scalar(const float* src, int64_t ld, int64_t rows, const float* table, int64_t head_dim, float scale,
                   float* dst) {
  rope_rows<OpsScalar>(src, ld, rows, table, head_dim, scale, dst);
}

}  // namespace

const CpuKernels& cpu_kernels_scalar() {
  static const CpuKernels kernels{Isa::kScalar,         kMr, kNv * OpsScalar::kLanes, gemm_f32_4x8_scalar,
                                  layer_norm_f32_scalar, softmax_block_f32_scalar, rope_f32_scalar};
  return kernels;
}

}  // namespace dinov3::cpu
