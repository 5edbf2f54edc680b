// Portable kernels of the reduced-precision paths, for CPUs without AVX-512: the same operand
// preparation and the same arithmetic as the vector kernels (see kernels_lowp_avx512.cpp for why a
// multiply then add in vdpbf16ps's order reproduces it exactly), one output at a time.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/lowp/bf16.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/kernels/tile_store.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_scalar.h"

namespace dinov3::cpu::lowp {
namespace {

constexpr int kMrScalar = 4;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

void gemm_bf16_4x32_scalar(const LowpTile& t) {
  float acc[kMrScalar][kNr] = {};
  for (int r = 0; r < t.out.rows; ++r) {
    const uint8_t* a = t.a + r * t.lda;
    for (int64_t kp = 0; kp < t.k_groups; ++kp) {
      const float a_even = float_from_bf16(load_u16(a + kp * 4));
      const float a_odd = float_from_bf16(load_u16(a + kp * 4 + 2));
      const uint8_t* b = t.b + kp * kNr * 4;
      for (int j = 0; j < kNr; ++j) {
        const float odd = a_odd * float_from_bf16(load_u16(b + j * 4 + 2));
        const float even = a_even * float_from_bf16(load_u16(b + j * 4));
        acc[r][j] = (acc[r][j] + odd) + even;
      }
    }
  }
  store_tile<OpsScalar>(t.out, &acc[0][0], kNr);
}

void gemm_u8s8_4x32_scalar(const LowpTile& t) {
  float acc[kMrScalar][kNr] = {};
  for (int r = 0; r < t.out.rows; ++r) {
    const uint8_t* a = t.a + r * t.lda;
    for (int j = 0; j < kNr; ++j) {
      int32_t s = 0;
      for (int64_t kq = 0; kq < t.k_groups; ++kq) {
        const uint8_t* b = t.b + (kq * kNr + j) * 4;
        for (int e = 0; e < 4; ++e) s += static_cast<int32_t>(a[kq * 4 + e]) * static_cast<int8_t>(b[e]);
      }
      acc[r][j] = static_cast<float>(s - t.col_offset[j]) * (t.row_scale[r] * t.col_scale[j]);
    }
  }
  store_tile<OpsScalar>(t.out, &acc[0][0], kNr);
}

void to_bf16_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) dst[r * k_pad + i] = bf16_from_float(x[r * ldx + i]);
    for (int64_t i = k; i < k_pad; ++i) dst[r * k_pad + i] = 0;
  }
}

void to_u8_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint8_t* dst,
                       float* scale) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    float m = 0.0f;
    for (int64_t i = 0; i < k; ++i) m = std::max(m, std::fabs(src[i]));
    scale[r] = m / 127.0f;
    const float inv = m > 0.0f ? 127.0f / m : 0.0f;
    for (int64_t i = 0; i < k; ++i) dst[r * k_pad + i] = static_cast<uint8_t>(std::nearbyint(src[i] * inv) + 128.0f);
    for (int64_t i = k; i < k_pad; ++i) dst[r * k_pad + i] = 128;
  }
}

}  // namespace dinov3::cpu::lowp
