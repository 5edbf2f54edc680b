// 8-lane float32 vector operations for AVX2 + FMA. Include only from files compiled with -mavx2 -mfma;
// every function has internal linkage so no AVX copy can be merged into baseline code by the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "backend/cpu/lowp/bf16.h"

namespace dinov3::cpu {
namespace {

struct OpsAvx2 {
  using V = __m256;
  static constexpr int kLanes = 8;

  static __m256i first(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  // set1 of a loaded value (still one vbroadcastss): GCC treats _mm256_broadcast_ss as reading arbitrary
  // memory, which pins the GEMM accumulators to the stack.
  static V broadcast(const float* p) { return _mm256_set1_ps(*p); }
  // Lanes >= n are neither read nor written (vmaskmov does not fault on masked-out lanes).
  static V load_first(const float* p, int n) { return _mm256_maskload_ps(p, first(n)); }
  static V load_first_or(const float* p, int n, float fill) {
    const __m256i m = first(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static void store_first(float* p, V v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  static V keep_first(V v, int n) { return _mm256_and_ps(v, _mm256_castsi256_ps(first(n))); }

  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fnmadd(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V abs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static V round_nearest(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static V floor(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  // p * 2^n for integral n in [-126, 127]: build 2^n in the exponent field.
  static V scale_pow2(V p, V n) {
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
  }
  static V select_lt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  static float reduce_add(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(V a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // The first n lanes (n may exceed 8) of bf16 values at p as float32 (exact), zero past n.
  static V load_bf16_first(const uint16_t* p, int n) {
    alignas(32) float lanes[8] = {};
    for (int i = 0; i < n && i < 8; ++i) lanes[i] = lowp::float_from_bf16(p[i]);
    return _mm256_load_ps(lanes);
  }
  // The first n lanes (n may exceed 8) of v as bf16 at p, by bf16_from_float (the one formula).
  static void store_bf16_first(uint16_t* p, V v, int n) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    for (int i = 0; i < n && i < 8; ++i) p[i] = lowp::bf16_from_float(lanes[i]);
  }
};

}  // namespace
}  // namespace dinov3::cpu
