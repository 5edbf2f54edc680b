// float32 -> bf16 operand preparation on AVX-512, for the two files that build it: kernels_lowp_avx512.cpp
// (AVX-512F, the integer rounding of OpsAvx512::to_bf16) and gemm_bf16_avx512bf16.cpp (vcvtneps2bf16 and
// vcvtne2ps2bf16, reached only where the CPU has AVX512_BF16). The same bits either way (lowp_test).
// Internal linkage (OpsAvx512 is file-local), so each file keeps the copy compiled with its own flags.
#pragma once

#include <algorithm>
#include <cstdint>

#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu::lowp {
namespace {

// dst[r, :k_pad] = bf16(x[r, :k]), zero past k (LowpKernels::to_bf16_rows). Whole vectors unmasked, the
// row's tail masked.
inline void to_bf16_rows_avx512_impl(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad,
                                     uint16_t* dst) {
  using O = OpsAvx512;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    uint16_t* d = dst + r * k_pad;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), O::to_bf16(O::load(src + i)));
    if (i < k) {
      const int n = static_cast<int>(k - i);
      _mm256_mask_storeu_epi16(d + i, O::first(n), O::to_bf16(O::load_first(src + i, n)));
    }
    for (i = k; i < k_pad; ++i) d[i] = 0;
  }
}

inline constexpr int64_t kPairsPrefetchRows = 8;

// x[rows, cols] as bf16 GEMM panels with K = the rows (LowpKernels::to_bf16_pairs).
inline void to_bf16_pairs_avx512_impl(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad,
                                      uint16_t* dst) {
  using O = OpsAvx512;
  const int64_t panels = (cols + kNr - 1) / kNr;
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t r = 0; r < rows_pad; r += 2) {
      auto* out = reinterpret_cast<uint32_t*>(dst + (p * rows_pad + r) * kNr);
      // Rows kPairsPrefetchRows ahead towards L1: the rows are far apart (V's columns of a qkv row), and
      // waiting on each from L2 or the other core's cache was most of this loop's time (share of the
      // forward 1.3% -> 0.5%, as for RoPE in row_kernels.h).
      for (int64_t ahead = r + kPairsPrefetchRows; ahead < std::min(rows, r + kPairsPrefetchRows + 2); ++ahead) {
        for (int64_t h = 0; h < kNr && p * kNr + h < cols; h += 16) _mm_prefetch(x + ahead * ldx + p * kNr + h, _MM_HINT_T0);
      }
      for (int64_t h = 0; h < kNr; h += 16) {
        const int64_t c = p * kNr + h;
        const int n = static_cast<int>(std::clamp<int64_t>(cols - c, 0, 16));
        const __m512 lo = r < rows ? O::load_first(x + r * ldx + c, n) : O::zero();
        const __m512 hi = r + 1 < rows ? O::load_first(x + (r + 1) * ldx + c, n) : O::zero();
        _mm512_storeu_si512(out + h, O::to_bf16_pairs(lo, hi));
      }
    }
  }
}

}  // namespace
}  // namespace dinov3::cpu::lowp
