// 8-lane float32 vector operations for AVX2 + FMA. Include only from files compiled with -mavx2 -mfma;
// every function has internal linkage so no AVX copy can be merged into baseline code by the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

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
  // A whole vector takes the plain store: a masked vmaskmovps store cost ~16 cycles more than vmovups on
  // this project's AVX2 machine (an AMD EPYC), and callers pass n >= 8 for every vector but a row's last.
  static void store_first(float* p, V v, int n) {
    if (n >= kLanes) return store(p, v);
    _mm256_maskstore_ps(p, first(n), v);
  }
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
  // 16-entry table lookup: lane i gets table[k], k the low four bits of index[i]'s bit pattern (as
  // OpsAvx512::lookup16): vpermps on each half of the table (the low three bits), then bit 3 (shifted into
  // the sign, which blendv reads) picks the half.
  static V lookup16(const float* table, V index) {
    const __m256i i = _mm256_castps_si256(index);
    const V lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), i);
    const V hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 8), i);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(i, 28)));
  }
  static V select_lt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); }
  static float reduce_add(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_min(V a) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float reduce_max(V a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  // bf16_from_float (lowp/bf16.h) on 8 lanes, each bf16 in the low half of its 32-bit lane: the same integer
  // formula as every other path, so all see the same bits.
  static __m256i to_bf16_lanes(V x) {
    const __m256i u = _mm256_castps_si256(x);
    const __m256i hi = _mm256_srli_epi32(u, 16);
    const __m256i tiny = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7F800000)), _mm256_setzero_si256());
    // |u| > infinity's bits as signed compare: both sides are below 2^31.
    const __m256i nan =
        _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
    const __m256i lsb = _mm256_and_si256(hi, _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF))), 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x0040)), nan);
    return _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), tiny);
  }
  // The same as 8 words: packus keeps each 128-bit half's four words, the permute brings the halves together.
  static __m128i to_bf16(V x) {
    const __m256i w = _mm256_packus_epi32(to_bf16_lanes(x), _mm256_setzero_si256());
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(w, 0x08));
  }
  // The first n lanes (n may exceed 8) of bf16 values at p as float32 (exact), zero past n.
  static V load_bf16_first(const uint16_t* p, int n) {
    __m128i h;
    if (n >= 8) {
      h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    } else {
      alignas(16) uint16_t words[8] = {};
      for (int i = 0; i < n; ++i) words[i] = p[i];
      h = _mm_load_si128(reinterpret_cast<const __m128i*>(words));
    }
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  // The first n lanes (n may exceed 8) of v as bf16 at p.
  static void store_bf16_first(uint16_t* p, V v, int n) {
    const __m128i h = to_bf16(v);
    if (n >= 8) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(p), h);
    } else {
      alignas(16) uint16_t words[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(words), h);
      for (int i = 0; i < n; ++i) p[i] = words[i];
    }
  }
};

}  // namespace
}  // namespace dinov3::cpu
