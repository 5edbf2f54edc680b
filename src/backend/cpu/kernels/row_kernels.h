// Row-wise kernels (LayerNorm, online-softmax step), generic over an Ops type.
#pragma once

#include <math.h>  // exp2f, sqrtf: plain C functions, never ISA-specific inline copies

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "backend/cpu/simd/bf16_store.h"
#include "backend/cpu/simd/vec_math.h"

namespace dinov3::cpu {
namespace {

// Folds row[0, n) with `op` in four independent chains, starting from and padded with `identity` (0 for a
// sum, -inf for a maximum): groups of four vectors into chains 0-3, the whole vectors after them into chain
// 0, a ragged tail into chain 1; returns op(op(c0, c1), op(c2, c3)). Four chains because a row is only
// 17-24 vectors here (softmax's 261 keys, LayerNorm's 384 channels): one chain would wait on op's latency.
template <class O, class Op>
typename O::V fold_row(const float* row, int64_t n, float identity, Op op) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  V c0 = O::set1(identity), c1 = c0, c2 = c0, c3 = c0;
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    c0 = op(c0, O::load(row + i));
    c1 = op(c1, O::load(row + i + W));
    c2 = op(c2, O::load(row + i + 2 * W));
    c3 = op(c3, O::load(row + i + 3 * W));
  }
  for (; i + W <= n; i += W) c0 = op(c0, O::load(row + i));
  if (i < n) c1 = op(c1, O::load_first_or(row + i, static_cast<int>(n - i), identity));
  return op(op(c0, c1), op(c2, c3));
}

// Two passes over the row in float32 (mean, then the centred sum of squares), which keeps the variance
// accurate to a few ulp without Welford's divisions. Rows go in groups: every row's mean, then every row's
// variance, then every row's output, so one row's sums do not wait on the previous reduction (with each
// row's passes back to back, a row's centred squares waited on its mean's reduction, and its output on
// the variance's). The operations on each row and their order are those of one row at a time.
template <class O>
void layer_norm_rows(const float* x, float* y, int64_t rows, int64_t dim, const float* gamma, const float* beta,
                     float eps, uint16_t* y_bf16, int64_t ld_bf16) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  constexpr int64_t kGroup = 16;
  const int64_t full = dim - dim % W;
  const int tail = static_cast<int>(dim - full);
  float mean[kGroup], inv_std[kGroup];
  for (int64_t r0 = 0; r0 < rows; r0 += kGroup) {
    const int64_t n_rows = std::min(kGroup, rows - r0);
    // Four independent chains in both sums (fold_row; the centred squares below the same way): two chains
    // of 12 dependent adds over a 384-wide row left the op waiting on add latency.
    for (int64_t g = 0; g < n_rows; ++g) {
      const V sum = fold_row<O>(x + (r0 + g) * dim, dim, 0.0f, [](V a, V b) { return O::add(a, b); });
      mean[g] = O::reduce_add(sum) / static_cast<float>(dim);
    }
    for (int64_t g = 0; g < n_rows; ++g) {
      const float* in = x + (r0 + g) * dim;
      const V vmean = O::set1(mean[g]);
      V q0 = O::zero(), q1 = O::zero(), q2 = O::zero(), q3 = O::zero();
      int64_t i = 0;
      for (; i + 4 * W <= full; i += 4 * W) {
        const V d0 = O::sub(O::load(in + i), vmean), d1 = O::sub(O::load(in + i + W), vmean);
        const V d2 = O::sub(O::load(in + i + 2 * W), vmean), d3 = O::sub(O::load(in + i + 3 * W), vmean);
        q0 = O::fmadd(d0, d0, q0);
        q1 = O::fmadd(d1, d1, q1);
        q2 = O::fmadd(d2, d2, q2);
        q3 = O::fmadd(d3, d3, q3);
      }
      for (; i < full; i += W) {
        const V d = O::sub(O::load(in + i), vmean);
        q0 = O::fmadd(d, d, q0);
      }
      if (tail > 0) {
        const V d = O::keep_first(O::sub(O::load_first(in + full, tail), vmean), tail);
        q1 = O::fmadd(d, d, q1);
      }
      const float var = O::reduce_add(O::add(O::add(q0, q1), O::add(q2, q3))) / static_cast<float>(dim);
      inv_std[g] = 1.0f / sqrtf(var + eps);
    }
    for (int64_t g = 0; g < n_rows; ++g) {
      const int64_t r = r0 + g;
      const float* in = x + r * dim;
      float* out = y != nullptr ? y + r * dim : nullptr;
      uint16_t* out_bf16 = y_bf16 != nullptr ? y_bf16 + r * ld_bf16 : nullptr;
      const V vmean = O::set1(mean[g]), vinv_std = O::set1(inv_std[g]);
      int64_t i = 0;
      for (; i < full; i += W) {
        const V n = O::mul(O::sub(O::load(in + i), vmean), vinv_std);
        const V v = O::fmadd(n, O::load(gamma + i), O::load(beta + i));
        if (out != nullptr) O::store(out + i, v);
        if (out_bf16 != nullptr) O::store_bf16_first(out_bf16 + i, v, W);
      }
      if (tail > 0) {
        const V n = O::mul(O::sub(O::load_first(in + full, tail), vmean), vinv_std);
        const V v = O::fmadd(n, O::load_first(gamma + full, tail), O::load_first(beta + full, tail));
        if (out != nullptr) O::store_first(out + full, v, tail);
        if (out_bf16 != nullptr) O::store_bf16_first(out_bf16 + full, v, tail);
      }
    }
  }
}

// fmaxf(a, b) (a NaN argument is ignored), exact on every ISA, inline: g++ 12 calls libm's fmaxf for it
// (NaN rules that vmaxss does not follow), one call per softmax row, whose vzeroupper and clobbered vector
// registers cost the row its constants.
inline float max_ignoring_nan(float a, float b) { return a != a ? b : (b > a ? b : a); }

// The second pass of softmax_block: every row's weights 2^(s - new max), their sums, and the rescale factors.
// kBf16: the weights go to p_bf16 in bf16 (s unchanged), from exp2_for_bf16; else over s in float32.
template <class O, bool kBf16>
void softmax_weights(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum, float* rescale,
                     uint16_t* p_bf16, int64_t ld_p) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  auto weight = [](V x) { return kBf16 ? exp2_for_bf16<O>(x) : exp2_nonpositive_f32<O>(x); };
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * lds;
    uint16_t* row_bf16 = kBf16 ? p_bf16 + r * ld_p : nullptr;
    auto put = [&](int c, V e, int n) {
      if constexpr (kBf16) {
        O::store_bf16_first(row_bf16 + c, e, n);
      } else if (n == W) {
        O::store(row + c, e);
      } else {
        O::store_first(row + c, e, n);
      }
    };
    const float old_max = row_max[r];
    const float new_max = max_ignoring_nan(old_max, rescale[r]);
    const float alpha = old_max == kNegInf ? 0.0f : exp2f(old_max - new_max);
    const V vmax = O::set1(new_max);
    V sum0 = O::zero(), sum1 = O::zero(), sum2 = O::zero(), sum3 = O::zero();
    int c = 0;
    for (; c + 4 * W <= cols; c += 4 * W) {
      const V e0 = weight(O::sub(O::load(row + c), vmax));
      const V e1 = weight(O::sub(O::load(row + c + W), vmax));
      const V e2 = weight(O::sub(O::load(row + c + 2 * W), vmax));
      const V e3 = weight(O::sub(O::load(row + c + 3 * W), vmax));
      if constexpr (kBf16) {
        store_bf16_pair<O>(row_bf16 + c, e0, e1);
        store_bf16_pair<O>(row_bf16 + c + 2 * W, e2, e3);
      } else {
        put(c, e0, W);
        put(c + W, e1, W);
        put(c + 2 * W, e2, W);
        put(c + 3 * W, e3, W);
      }
      sum0 = O::add(sum0, e0);
      sum1 = O::add(sum1, e1);
      sum2 = O::add(sum2, e2);
      sum3 = O::add(sum3, e3);
    }
    for (; c + W <= cols; c += W) {
      const V e = weight(O::sub(O::load(row + c), vmax));
      put(c, e, W);
      sum0 = O::add(sum0, e);
    }
    if (c < cols) {
      const int n = cols - c;
      const V e = O::keep_first(weight(O::sub(O::load_first(row + c, n), vmax)), n);
      put(c, e, n);
      sum1 = O::add(sum1, e);
    }
    row_max[r] = new_max;
    rescale[r] = alpha;
    row_sum[r] = row_sum[r] * alpha + O::reduce_add(O::add(O::add(sum0, sum1), O::add(sum2, sum3)));
  }
}

template <class O>
void softmax_block(float* s, int64_t lds, int rows, int cols, float* row_max, float* row_sum, float* rescale,
                   uint16_t* p_bf16, int64_t ld_p) {
  using V = typename O::V;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  // Every row's maximum first (parked in rescale), then every row's exponentials: with the two passes of
  // one row back to back, each row's exponentials waited for its maximum's reduction (measured on a 14 x 261
  // block: 10% faster this way; the operations on each row and their order are unchanged).
  // Four independent chains in both passes (fold_row here, four sums in softmax_weights): a row is only
  // ~17 vectors, so a single max or sum chain would leave the row latency-bound.
  for (int r = 0; r < rows; ++r) {
    rescale[r] = O::reduce_max(fold_row<O>(s + r * lds, cols, kNegInf, [](V a, V b) { return O::max(a, b); }));
  }
  if (p_bf16 != nullptr) {
    softmax_weights<O, true>(s, lds, rows, cols, row_max, row_sum, rescale, p_bf16, ld_p);
  } else {
    softmax_weights<O, false>(s, lds, rows, cols, row_max, row_sum, rescale, nullptr, 0);
  }
}

// RoPE reads one head's q or k columns of the qkv rows: 64 floats out of every 1152 at ViT-S, far apart and
// often just written by the other core, so the hardware prefetcher does not get them in time. Rows this far
// ahead are requested by hand (measured: the op's share of a bf16 forward 3.4% -> 1.7%).
inline constexpr int64_t kRopePrefetchRows = 4;

// RoPE's loads and stores of values [d, d + n) of a row: in bf16 (kBf16, at xb / yb) or float32 (at x / y);
// kWhole: a whole vector, known at compile time (no mask), else the first n lanes (n may exceed the width).
template <class O, bool kBf16, bool kWhole>
inline typename O::V rope_load(const float* x, const uint16_t* xb, int64_t d, int n) {
  if constexpr (kBf16) return O::load_bf16_first(xb + d, kWhole ? O::kLanes : n);
  if constexpr (kWhole) return O::load(x + d);
  return O::load_first(x + d, n);
}
template <class O, bool kBf16, bool kWhole>
inline void rope_store(float* y, uint16_t* yb, int64_t d, typename O::V v, int n) {
  if constexpr (kBf16) {
    O::store_bf16_first(yb + d, v, kWhole ? O::kLanes : n);
  } else if constexpr (kWhole) {
    O::store(y + d, v);
  } else {
    O::store_first(y + d, v, n);
  }
}

// One row's rotation for rope_rows: the half-width vector pairs (d, half + d), each rotated by its sines and
// cosines and scaled. kWhole (half a multiple of the vector width, as every DINOv3 head): whole vectors only,
// settled at compile time, so the loop has no masks, lane counts or branches left in it.
template <class O, bool kSrcBf16, bool kDstBf16, bool kWhole>
inline void rope_row(const float* x, const uint16_t* xb, const float* sn, int64_t head_dim, typename O::V vs,
                     float* y, uint16_t* yb) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  const int64_t half = head_dim / 2;
  const float* cs = sn + head_dim;
  auto get = [&](int64_t d, int n) { return rope_load<O, kSrcBf16, kWhole>(x, xb, d, n); };
  auto table = [&](const float* t, int64_t d, int n) { return rope_load<O, false, kWhole>(t, nullptr, d, n); };
  auto put = [&](int64_t d, V v, int n) { rope_store<O, kDstBf16, kWhole>(y, yb, d, v, n); };
  for (int64_t d = 0; d < half; d += W) {
    const int n = static_cast<int>(half - d);
    const V a = get(d, n), b = get(half + d, n);
    const V lo = O::fnmadd(b, table(sn, d, n), O::mul(a, table(cs, d, n)));
    const V hi = O::fmadd(a, table(sn, half + d, n), O::mul(b, table(cs, half + d, n)));
    put(d, O::mul(lo, vs), n);
    put(half + d, O::mul(hi, vs), n);
  }
}

template <class O, bool kSrcBf16, bool kDstBf16, bool kWhole>
void rope_rows_as(const float* src, const uint16_t* src_bf16, int64_t ld, int64_t rows, const float* table,
                  int64_t head_dim, float scale, float* dst, uint16_t* dst_bf16, int64_t ld_bf16) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  const V vs = O::set1(scale);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = kSrcBf16 ? nullptr : src + r * ld;
    const uint16_t* xb = kSrcBf16 ? src_bf16 + r * ld : nullptr;
    if (r + kRopePrefetchRows < rows) {
      if constexpr (kSrcBf16) {
        for (int64_t d = 0; d < head_dim; d += 32) __builtin_prefetch(xb + kRopePrefetchRows * ld + d, 0, 3);
      } else {
        for (int64_t d = 0; d < head_dim; d += 16) __builtin_prefetch(x + kRopePrefetchRows * ld + d, 0, 3);
      }
    }
    float* y = kDstBf16 ? nullptr : dst + r * head_dim;
    uint16_t* yb = kDstBf16 ? dst_bf16 + r * ld_bf16 : nullptr;
    if (table == nullptr) {
      for (int64_t d = 0; d < head_dim; d += W) {
        const int n = static_cast<int>(head_dim - d);
        rope_store<O, kDstBf16, false>(y, yb, d, O::mul(rope_load<O, kSrcBf16, false>(x, xb, d, n), vs), n);
      }
      continue;
    }
    rope_row<O, kSrcBf16, kDstBf16, kWhole>(x, xb, table + r * 2 * head_dim, head_dim, vs, y, yb);
  }
}

// The element types and whether the halves are whole vectors are settled once per call. Tested per row and
// per vector instead (masked table loads, pointers parked in vector registers), one head's RoPE over 256 hot
// bf16 rows took 8.6-9.1 ns a row against 7.4-7.9 (src/backend/cpu/README.md, "Later still on 2026-12-04").
template <class O>
void rope_rows(const float* src, const uint16_t* src_bf16, int64_t ld, int64_t rows, const float* table,
               int64_t head_dim, float scale, float* dst, uint16_t* dst_bf16, int64_t ld_bf16) {
  const bool whole = (head_dim / 2) % O::kLanes == 0;
  auto run = [&](auto src_bf16_tag, auto dst_bf16_tag, auto whole_tag) {
    rope_rows_as<O, decltype(src_bf16_tag)::value, decltype(dst_bf16_tag)::value, decltype(whole_tag)::value>(
        src, src_bf16, ld, rows, table, head_dim, scale, dst, dst_bf16, ld_bf16);
  };
  using Y = std::true_type;
  using N = std::false_type;
  if (src_bf16 != nullptr) {
    if (dst_bf16 != nullptr) return whole ? run(Y{}, Y{}, Y{}) : run(Y{}, Y{}, N{});
    return whole ? run(Y{}, N{}, Y{}) : run(Y{}, N{}, N{});
  }
  if (dst_bf16 != nullptr) return whole ? run(N{}, Y{}, Y{}) : run(N{}, Y{}, N{});
  return whole ? run(N{}, N{}, Y{}) : run(N{}, N{}, N{});
}

}  // namespace
}  // namespace dinov3::cpu
