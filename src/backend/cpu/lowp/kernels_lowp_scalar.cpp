// Portable kernels of the reduced-precision paths, for CPUs without AVX-512: the same operand
// preparation and the same arithmetic as the vector kernels (see kernels_lowp_avx512.cpp for why a
// multiply then add in vdpbf16ps's order reproduces it exactly), one output at a time.
#include <algorithm>
#include <cfloat>
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

void gather_scalar(const float* x, int64_t k, TopMagnitudes& top) {
  for (int64_t i = 0; i < k; ++i) {
    if (std::fabs(x[i]) > top.cut) top.offer(std::fabs(x[i]), static_cast<int32_t>(i));
  }
}

// A row's values read in channel order with its outliers (ascending channels) as 0.
struct OutliersAsZero {
  const float* x;
  const int32_t* index;
  int n;
  int next = 0;
  float operator()(int64_t i) {
    while (next < n && index[next] < i) ++next;
    return next < n && index[next] == i ? 0.0f : x[i];
  }
};

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
      acc[r][j] = static_cast<float>(s - t.row_zero[r] * t.col_sum[j]) * (t.row_scale[r] * t.col_scale[j]);
    }
    for (int o = 0; o < t.outliers[r]; ++o) {
      const int32_t k = t.outlier_index[r * kMaxOutliers + o];
      const float v = t.outlier_value[r * kMaxOutliers + o] * t.channel_scale[k];
      const int8_t* q = t.channel_q + k * t.ld_channel_q;
      for (int j = 0; j < kNr; ++j) acc[r][j] = std::fma(v, static_cast<float>(q[j]), acc[r][j]);
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

void to_u8_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    float lanes[16] = {}, amax = 0.0f, lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      lanes[i % 16] = std::fma(src[i], src[i], lanes[i % 16]);
      amax = std::max(amax, std::fabs(src[i]));
      lo = std::min(lo, src[i]);
      hi = std::max(hi, src[i]);
    }
    float sum_squares = 0.0f;
    for (float l : lanes) sum_squares += l;
    int32_t* index = dst.outlier_index + r * kMaxOutliers;
    const int n = find_outliers(src, k, sum_squares, amax, gather_scalar, index, dst.outlier_value + r * kMaxOutliers);
    dst.outliers[r] = n;
    if (n > 0) {
      lo = hi = 0.0f;
      OutliersAsZero value{src, index, n};
      for (int64_t i = 0; i < k; ++i) {
        const float v = value(i);
        lo = std::min(lo, v);
        hi = std::max(hi, v);
      }
    }
    float s;
    int32_t z;
    u8_scale_zero(lo, hi, sum_squares, &s, &z);
    dst.scale[r] = s;
    dst.zero[r] = z;
    const float inv = s >= FLT_MIN && s <= FLT_MAX ? 1.0f / s : 0.0f;
    uint8_t* d = dst.data + r * k_pad;
    OutliersAsZero value{src, index, n};
    for (int64_t i = 0; i < k; ++i) {
      float q = std::nearbyint(value(i) * inv) + static_cast<float>(z);
      if (!(q >= 0.0f)) q = 0.0f;  // NaN too: the vector conversion's integer-indefinite clamps to 0
      d[i] = static_cast<uint8_t>(std::min(q, 255.0f));
    }
    for (int64_t i = k; i < k_pad; ++i) d[i] = static_cast<uint8_t>(z);
  }
}

}  // namespace dinov3::cpu::lowp
