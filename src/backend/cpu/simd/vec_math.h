// Vectorised transcendental functions, generic over an Ops type (ops_avx512.h, ops_avx2.h, ops_scalar.h).
// Accuracy targets a few float32 ulp so the fused epilogues agree with the double-precision reference.
#pragma once

#include <cstddef>

#include "backend/cpu/simd/erfc_table.h"

namespace dinov3::cpu {
namespace {

// c[0] r^(N-1) + ... + c[N-1] by Horner's rule in multiply-adds (c highest degree first).
template <class O, size_t N>
typename O::V polynomial(typename O::V r, const float (&c)[N]) {
  typename O::V p = O::set1(c[0]);
  for (size_t i = 1; i < N; ++i) p = O::fmadd(p, r, O::set1(c[i]));
  return p;
}

// e^x for x in about [-87.3, 88.7] (clamped outside): x = n ln2 + r with |r| <= ln2/2, e^r by its degree-7
// Taylor polynomial (truncation error r^8/8! < 6e-9), then scaled by 2^n. ln2 is split so n*ln2_hi is exact.
template <class O>
typename O::V exp_f32(typename O::V x) {
  using V = typename O::V;
  x = O::min(O::max(x, O::set1(-87.33654f)), O::set1(88.72283f));
  const V n = O::round_nearest(O::mul(x, O::set1(1.44269504f)));
  V r = O::fnmadd(n, O::set1(0.693359375f), x);
  r = O::fnmadd(n, O::set1(-2.12194440e-4f), r);
  static constexpr float kTaylor[] = {1.0f / 5040.0f, 1.0f / 720.0f, 1.0f / 120.0f, 1.0f / 24.0f,
                                      1.0f / 6.0f,    0.5f,           1.0f,           1.0f};
  return O::scale_pow2(polynomial<O>(r, kTaylor), n);
}

// 2^x for x <= 0 (softmax weights in base-2 units): x = n + r with |r| <= 1/2 exact, 2^r by a degree-6
// Chebyshev fit (max rel. error about 1e-7 evaluated in float32), then scaled by 2^n. Below -126 the result
// would be subnormal; x is held at -126, giving about 2^-126 (the fit's value at r = 0 times that), which is
// zero next to the row maximum's weight of 1.
template <class O>
typename O::V exp2_nonpositive_f32(typename O::V x) {
  using V = typename O::V;
  static constexpr float kFit[] = {
      1.546144485e-04f, 1.340042800e-03f, 9.618056938e-03f, 5.550327152e-02f, 2.402265072e-01f, 6.931471825e-01f, 1.0f};
  x = O::max(x, O::set1(-126.0f));
  const V n = O::round_nearest(x);
  return O::scale_pow2(polynomial<O>(O::sub(x, n), kFit), n);
}

// Ops types that split x as floor(x) + (x - floor(x)) and scale by 2^floor(x) in one instruction each
// (AVX-512: vreduceps, vscalefps), so 2^x needs no rounding step and no clamp.
template <class O>
concept HasFloorSplit = requires(typename O::V v) {
  O::fraction(v);
  O::scale_pow2_floor(v, v);
};

// 2^x where the result is rounded to bf16 next (attention's P at reduced precision): x = n + r with
// n = floor(x) and r = x - n in [0, 1) (exact), 2^r by a degree-3 fit (max rel. error 7.51e-5 over [0, 1)
// with float32 multiply-adds, against bf16's rounding: up to 2^-8 = 3.9e-3, RMS about 1.6e-3; the fit is
// sqrt(2) p(r - 1/2) for the minimax fit p on [-1/2, 1/2], which has the same relative error), scaled by 2^n.
// With HasFloorSplit every x gives the right limit: 0 for -inf and below the normal range (flushed under the
// pool's FTZ), inf above it, NaN for NaN. Elsewhere x is held at -126 (about 2^-126: zero next to a softmax
// row maximum's weight of 1; scale_pow2 needs n >= -126).
template <class O>
typename O::V exp2_for_bf16(typename O::V x) {
  using V = typename O::V;
  static constexpr float kFit[] = {7.802357525e-02f, 2.260664403e-01f, 6.958349347e-01f, 9.999249578e-01f};
  if constexpr (HasFloorSplit<O>) {
    return O::scale_pow2_floor(polynomial<O>(O::fraction(x), kFit), x);
  } else {
    x = O::max(x, O::set1(-126.0f));
    const V n = O::floor(x);
    return O::scale_pow2(polynomial<O>(O::sub(x, n), kFit), n);
  }
}

// Ops types with a one-instruction 32-entry table lookup (AVX-512's vpermt2ps) take the table GELU.
template <class O>
concept HasLookup32 = requires(const float* t, typename O::V v) { O::lookup32(t, v); };

// GELU with the exact erf from the erfc polynomials of erfc_table.h (32 intervals of 9/64 over a = |z| in
// [0, 4.5), z = x / sqrt 2, degree 7, no exp): 1 + erf(z) = erfc(|z|) for z < 0 and 2 - erfc(|z|) otherwise,
// so the negative tail keeps its relative accuracy. erfc's relative error grows like 2 a^2 times that of a,
// so s = a - centre is formed from |x| with 1/sqrt 2 split in two (hi * |x| - centre in one FMA, exact to
// ~4e-9). Past a = 4.5, erfc < 2e-10 is taken as 0: |gelu(x)| < 7e-10 there.
template <class O>
  requires HasLookup32<O>
typename O::V gelu_erf_f32(typename O::V x) {
  using V = typename O::V;
  constexpr float kWidth = 9.0f / 64.0f;
  const V ax = O::abs(x);
  const V index = O::floor(O::min(O::mul(ax, O::set1(0.70710678f / kWidth)), O::set1(31.0f)));
  const V centre = O::fmadd(index, O::set1(kWidth), O::set1(0.5f * kWidth));
  V s = O::fmadd(ax, O::set1(0.707106769f), O::sub(O::zero(), centre));  // 1/sqrt 2 = 0.707106769 + 1.21e-8
  s = O::fmadd(ax, O::set1(1.21016175e-08f), s);
  V p = O::lookup32(kErfcTable[7], index);
  for (int k = 6; k >= 0; --k) p = O::fmadd(p, s, O::lookup32(kErfcTable[k], index));
  const V erfc_a = O::select_lt(ax, O::set1(4.5f * 1.41421356f), p, O::zero());
  const V one_plus_erf = O::select_lt(x, O::zero(), erfc_a, O::sub(O::set1(2.0f), erfc_a));
  return O::mul(O::mul(O::set1(0.5f), x), one_plus_erf);
}

// GELU with the exact erf: 0.5 x (1 + erf(x / sqrt 2)). With z = x / sqrt 2:
//  |z| < 0.5: erf(z) = z P(z^2), P a degree-4 Chebyshev fit (max rel. error 1.7e-7 in float32);
//  |z| >= 0.5: erfc(|z|) = exp(-z^2) Q(|z|), Q = erfc(z) exp(z^2) fitted by degree 13 on [0.5, 4] (1.6e-7),
//             then 1 + erf(z) = erfc(|z|) for z < 0 (no cancellation in the small negative tail) and
//             2 - erfc(|z|) otherwise.
// erfc's relative error in the tail is ~2 z^2 times that of its argument, so z^2 = x^2 / 2 is taken from x
// (not from the rounded z) as hi + lo with an FMA. Past |z| = 4, Q is held at Q(4): there erfc < 1.6e-8, so
// the positive side is exact in float32 and the negative side is below 1e-8 in magnitude.
template <class O>
  requires(!HasLookup32<O>)
typename O::V gelu_erf_f32(typename O::V x) {
  using V = typename O::V;
  const V z = O::mul(x, O::set1(0.70710678f));
  const V az = O::abs(z);
  const V zz = O::mul(z, z);
  V p = O::set1(4.719082732e-03f);
  p = O::fmadd(p, zz, O::set1(-2.675773203e-02f));
  p = O::fmadd(p, zz, O::set1(1.128283143e-01f));
  p = O::fmadd(p, zz, O::set1(-3.761260808e-01f));
  p = O::fmadd(p, zz, O::set1(1.128379107e+00f));
  const V one_plus_erf_small = O::fmadd(z, p, O::set1(1.0f));

  const V s = O::sub(O::min(az, O::set1(4.0f)), O::set1(2.25f));
  V q = O::set1(-7.297582982e-08f);
  q = O::fmadd(q, s, O::set1(2.983796890e-07f));
  q = O::fmadd(q, s, O::set1(-4.138350107e-07f));
  q = O::fmadd(q, s, O::set1(1.497845801e-06f));
  q = O::fmadd(q, s, O::set1(-8.517729839e-06f));
  q = O::fmadd(q, s, O::set1(3.090965038e-05f));
  q = O::fmadd(q, s, O::set1(-1.023153745e-04f));
  q = O::fmadd(q, s, O::set1(3.468151554e-04f));
  q = O::fmadd(q, s, O::set1(-1.143939095e-03f));
  q = O::fmadd(q, s, O::set1(3.619888797e-03f));
  q = O::fmadd(q, s, O::set1(-1.100201998e-02f));
  q = O::fmadd(q, s, O::set1(3.199245408e-02f));
  q = O::fmadd(q, s, O::set1(-8.848650753e-02f));
  q = O::fmadd(q, s, O::set1(2.310872674e-01f));
  // x*x from x held to [-16, 16]: further out exp(-x^2 / 2) is 0 in float32 anyway, and there x*x (up to
  // overflow) and its rounding error (no longer small) would break the product below (gelu(1e30) was -inf).
  const V xc = O::max(O::min(x, O::set1(16.0f)), O::set1(-16.0f));
  const V xx = O::mul(xc, xc);
  const V xx_err = O::fmadd(xc, xc, O::sub(O::zero(), xx));  // xc*xc - xx: exact with a fused FMA, else 0
  const V half = O::set1(0.5f);
  // exp(-(xx + xx_err) / 2) = exp(-xx / 2) * (1 - xx_err / 2) to first order (xx_err / xx <= 2^-24).
  const V e = O::mul(exp_f32<O>(O::mul(O::set1(-0.5f), xx)), O::fnmadd(xx_err, half, O::set1(1.0f)));
  const V erfc_az = O::mul(q, e);
  const V one_plus_erf_large = O::select_lt(z, O::zero(), erfc_az, O::sub(O::set1(2.0f), erfc_az));

  const V one_plus_erf = O::select_lt(az, half, one_plus_erf_small, one_plus_erf_large);
  return O::mul(O::mul(half, x), one_plus_erf);
}

// GELU for the outputs of the reduced-precision GEMMs (every Ops type has lookup16: vpermps on AVX-512, two
// and a blend on AVX2, an array index in scalar code), which the next layer rounds to bf16 (a step of 2^-8
// relative) or quantises to int8: with the normal lower tail Phi(-a), a = min(|x|, 5.99), from the 16 degree-4
// polynomials of erfc_table.h's kPhiTable (absolute error < 1.7e-7; past 5.99 it stays Phi(-5.99) < 1.1e-9),
//   gelu(x) = x Phi(x) = max(x, 0) - |x| Phi(-|x|)
// (x Phi(x) = x - x Phi(-x) for x >= 0), one fused multiply-add. So |error| <= 1.7e-7 |x| plus one float32
// rounding, against bf16's half step of 2^-9 relative. The interval is found without a float-to-int
// conversion: t = a / w - 1/2 (w = 3/8) plus 1.5 * 2^23 rounds t to the nearest integer i, which lands in
// the sum's low mantissa bits, and lookup16 reads those bits; a <= 5.99 keeps i <= 15, and u = t - i lies
// in [-1/2, 1/2]. A NaN stays NaN: max(0, NaN) is NaN on AVX-512 and AVX2, and the scalar min(NaN, 5.99) is
// NaN.
template <class O>
typename O::V gelu_lowp_f32(typename O::V x) {
  using V = typename O::V;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds [-2^22, 2^22] to integers
  const V a = O::min(O::abs(x), O::set1(5.99f));
  const V t = O::fmadd(a, O::set1(8.0f / 3.0f), O::set1(-0.5f));
  const V rounded = O::add(t, O::set1(kRound));  // low four mantissa bits: the interval i
  const V u = O::sub(t, O::sub(rounded, O::set1(kRound)));
  V p = O::lookup16(kPhiTable[4], rounded);
  for (int k = 3; k >= 0; --k) p = O::fmadd(p, u, O::lookup16(kPhiTable[k], rounded));
  return O::fnmadd(a, p, O::max(O::zero(), x));
}

// silu(g) = g / (1 + e^-g); the clamp inside exp_f32 keeps both tails finite.
template <class O>
typename O::V silu_f32(typename O::V g) {
  return O::div(g, O::add(O::set1(1.0f), exp_f32<O>(O::sub(O::zero(), g))));
}

}  // namespace
}  // namespace dinov3::cpu
