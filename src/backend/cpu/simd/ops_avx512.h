// 16-lane float32 vector operations for AVX-512F. Include only from files compiled with -mavx512f; every
// function has internal linkage so no AVX-512 copy can be merged into baseline code by the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

// GCC 12's AVX-512 intrinsics (max, min, scalef, roundscale, reductions) pass _mm512_undefined_ps() as the
// unused merge source, which -Wuninitialized reports once inlined here; the value is never read.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace dinov3::cpu {
namespace {

struct OpsAvx512 {
  using V = __m512;
  static constexpr int kLanes = 16;

  static __mmask16 first(int n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  // Lanes >= n are neither read nor written (masked accesses do not fault on them).
  static V load_first(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static V load_first_or(const float* p, int n, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), first(n), p);
  }
  static void store_first(float* p, V v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static V keep_first(V v, int n) { return _mm512_maskz_mov_ps(first(n), v); }

  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }   // a * b + c
  static V fnmadd(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a * b
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V min(V a, V b) { return _mm512_min_ps(a, b); }
  static V abs(V a) { return _mm512_abs_ps(a); }
  static V round_nearest(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p * 2^n for integral n (vscalefps handles the exponent arithmetic).
  static V scale_pow2(V p, V n) { return _mm512_scalef_ps(p, n); }
  // x - floor(x), exact (vreduceps, rounding down, no precision exception), and p * 2^floor(x) for any x:
  // vscalefps floors its second operand itself.
  static V fraction(V x) { return _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static V scale_pow2_floor(V p, V x) { return _mm512_scalef_ps(p, x); }
  static V select_lt(V a, V b, V x, V y) {  // a < b ? x : y
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x);
  }
  // 32-entry table lookup: lane i gets table[index[i]], index given as integral floats in [0, 31].
  static V lookup32(const float* table, V index) {
    return _mm512_permutex2var_ps(_mm512_load_ps(table), _mm512_cvttps_epi32(index), _mm512_load_ps(table + 16));
  }
  // 16-entry table lookup: lane i gets table[k], k the low four bits of index[i]'s bit pattern (vpermps
  // reads no others).
  static V lookup16(const float* table, V index) {
    return _mm512_permutexvar_ps(_mm512_castps_si512(index), _mm512_load_ps(table));
  }
  static V floor(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
  static float reduce_add(V a) { return _mm512_reduce_add_ps(a); }
  static float reduce_max(V a) { return _mm512_reduce_max_ps(a); }

  // bf16_from_float (lowp/bf16.h) on 16 lanes: the same integer formula, so every path sees the same bits.
  // Files compiled for AVX512_BF16 use vcvtneps2bf16, which rounds the same way (nearest even, subnormals to
  // signed zero, NaNs quiet); lowp_test checks the two give the same bits.
  static __m256i to_bf16(V x) {
#ifdef __AVX512BF16__
    return (__m256i)_mm512_cvtneps_pbh(x);
#else
    return to_bf16_integer(x);
#endif
  }
  static __m256i to_bf16_integer(V x) { return _mm512_cvtepi32_epi16(to_bf16_lanes(x)); }
  // The same as 16 32-bit lanes, each bf16 in its low half (the high half zero).
  static __m512i to_bf16_lanes(V x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i hi = _mm512_srli_epi32(u, 16);
    const __mmask16 tiny = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7F800000));
    const __mmask16 nan =
        _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
    const __m512i lsb = _mm512_and_si512(hi, _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x0040)));
    return _mm512_mask_mov_epi32(r, tiny, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
  }
  // Two rows' lanes as bf16 pairs: 32-bit lane i holds bf16(lo[i]) in its low half, bf16(hi[i]) in its high.
  static __m512i to_bf16_pairs(V lo, V hi) {
#ifdef __AVX512BF16__
    // [lo 0..15 | hi 0..15] as 32 words, then interleaved word by word.
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                                         6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(idx, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
#else
    return _mm512_or_si512(to_bf16_lanes(lo), _mm512_slli_epi32(to_bf16_lanes(hi), 16));
#endif
  }
  // The first n lanes (n may exceed 16) of bf16 values at p as float32 (exact), zero past n.
  static V load_bf16_first(const uint16_t* p, int n) {
    const __m256i h =
        n >= 16 ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)) : _mm256_maskz_loadu_epi16(first(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  // The first n lanes (n may exceed 16) of v as bf16 at p.
  static void store_bf16_first(uint16_t* p, V v, int n) {
    if (n >= 16) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), to_bf16(v));
    } else {
      _mm256_mask_storeu_epi16(p, first(n), to_bf16(v));
    }
  }
#ifdef __AVX512BF16__
  // lo then hi (32 lanes) as bf16 at p: one conversion and one 64-byte store (tile_store.h's
  // store_bf16_pair takes it where the Ops type has it).
  static void store_bf16_two(uint16_t* p, V lo, V hi) { _mm512_storeu_si512(p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo)); }
#endif
};

}  // namespace
}  // namespace dinov3::cpu
