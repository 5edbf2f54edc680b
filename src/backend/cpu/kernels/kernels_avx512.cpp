// The AVX-512 kernel set (compiled with -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma; reached only
// through cpu_kernels_avx512() after the runtime check).
//
// GEMM tile 14x32: 28 zmm accumulators + 2 B vectors + 1 broadcast register. Per k: 2 B loads, 14
// broadcasts, 28 FMAs, so both FMA pipes stay busy (latency 4 needs >= 8 independent chains) with loads to
// spare. Measured against 8x48 and 6x64 on the ViT-S shapes: the same on the linear layers, and better
// for attention, whose head_dim 64 = 2 panels of 32 (48 would waste a third of the P·V work).
#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels/gemm_tile.h"
#include "backend/cpu/kernels/row_kernels.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu {
namespace {

constexpr int kMr = 14;
constexpr int kNv = 2;

void gemm_f32_14x32_avx512(const GemmTile& t) { gemm_tile<OpsAvx512, kMr, kNv>(t); }

void layer_norm_f32_avx512(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma,
                           const float* beta, float eps) {
  layer_norm_rows<OpsAvx512>(x, y, rows, dim, gamma, beta, eps);
}

void softmax_block_f32_avx512(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum,
                              float* rescale) {
  softmax_block<OpsAvx512>(s, lds, rows, cols, row_max, row_sum, rescale);
}

void rope_f32_avx512(const float* src, int64_t ld, int64_t rows, const float* table, int64_t head_dim, float scale,
                   float* dst) {
  rope_rows<OpsAvx512>(src, ld, rows, table, head_dim, scale, dst);
}

}  // namespace

const CpuKernels& cpu_kernels_avx512() {
  static const CpuKernels kernels{Isa::kAvx512,         kMr, kNv * OpsAvx512::kLanes, gemm_f32_14x32_avx512,
                                  layer_norm_f32_avx512, softmax_block_f32_avx512, rope_f32_avx512};
  return kernels;
}

}  // namespace dinov3::cpu
