// The int8 GEMM micro-tile, generic over how a K quad's four u8 x s8 products reach the int32 lanes; include
// only from the per-ISA kernel files (internal linkage, as tile_store.h). Both forms give the same int32 sums
// and share the dequantisation and store, so the whole layer comes out bit for bit the same:
//   DotVnni (gemm_u8s8_avx512vnni.cpp): one vpdpbusd.
//   DotAvx512bw (kernels_lowp_avx512.cpp, for AVX-512 CPUs without VNNI): the even and the odd bytes widened
//   to 16 bits (u8 zero-extended, s8 sign-extended) and two vpmaddwd, whose int16 x int16 pair sums are exact
//   (vpmaddubsw would saturate at 32767).
//
// Per K quad: 2 B loads (32 columns x 4 int8), MR broadcasts of a row's 4 shifted activations, 2 x MR dot
// steps. The int32 sums cannot overflow: |u * q| <= 255 * 127 per term, and the backend limits K to
// kInt8MaxIn. Dequantisation: y = (acc - row_zero * col_sum) * row_scale * col_scale, plus the row's outlier
// channels (lowp_kernels.h).
#pragma once

#include <immintrin.h>

#include <cstring>
#include <utility>

#include "backend/cpu/kernels/tile_store.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu::lowp {
namespace {

// Dequantises a tile's int32 sums and stores them with the tile's epilogue.
template <int MR>
void store_u8s8_sums(const LowpTile& t, const int32_t (&sums)[MR][kNr]) {
  const __m512i sum0 = _mm512_loadu_si512(t.col_sum), sum1 = _mm512_loadu_si512(t.col_sum + 16);
  const __m512 cs0 = _mm512_loadu_ps(t.col_scale), cs1 = _mm512_loadu_ps(t.col_scale + 16);
  alignas(64) float out[MR][kNr];
  for (int r = 0; r < MR; ++r) {
    const __m512 rs = _mm512_set1_ps(t.row_scale[r]);
    const __m512i z = _mm512_set1_epi32(t.row_zero[r]);
    const __m512i s0 = _mm512_sub_epi32(_mm512_load_si512(&sums[r][0]), _mm512_mullo_epi32(z, sum0));
    const __m512i s1 = _mm512_sub_epi32(_mm512_load_si512(&sums[r][16]), _mm512_mullo_epi32(z, sum1));
    __m512 y0 = _mm512_mul_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(rs, cs0));
    __m512 y1 = _mm512_mul_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(rs, cs1));
    for (int o = 0; o < t.outliers[r]; ++o) {  // the row's outlier channels, in float32
      const int32_t k = t.outlier_index[r * kMaxOutliers + o];
      const __m512 v = _mm512_set1_ps(t.outlier_value[r * kMaxOutliers + o] * t.channel_scale[k]);
      const int8_t* q = t.channel_q + k * t.ld_channel_q;
      y0 = _mm512_fmadd_ps(v, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)))), y0);
      y1 = _mm512_fmadd_ps(v, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16)))), y1);
    }
    _mm512_store_ps(&out[r][0], y0);
    _mm512_store_ps(&out[r][16], y1);
  }
  store_tile<OpsAvx512>(t.out, &out[0][0], kNr);
}

template <int MR, class Dot>
void gemm_u8s8_rows(const LowpTile& t) {
  if (t.k_groups <= 0) {  // no K: zero sums, stored apart so the loop below runs at least once (gemm_tile.h)
    alignas(64) const int32_t zero[MR][kNr] = {};
    return store_u8s8_sums<MR>(t, zero);
  }
  __v16si acc[MR][2];  // the intrinsic's own element type: with __m512i GCC 12 keeps a stack copy live in the loop
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = (__v16si)_mm512_setzero_si512();
  prefetch_c_for_store(t.out);
  const uint8_t* b = t.b;
  int64_t kq = 0;
  do {
    // The next panel (contiguous) towards L2 while this one streams, as in the float32 kernel.
    __builtin_prefetch(b + t.k_groups * 4 * kNr, 0, 2);
    __builtin_prefetch(b + t.k_groups * 4 * kNr + 64, 0, 2);
    const typename Dot::B b0 = Dot::load_b(b), b1 = Dot::load_b(b + 64);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      int32_t quad;
      std::memcpy(&quad, t.a + r * t.lda + kq * 4, sizeof(quad));
      const typename Dot::A a = Dot::broadcast_a(quad);
      acc[r][0] = Dot::step(acc[r][0], a, b0);
      acc[r][1] = Dot::step(acc[r][1], a, b1);
    }
    b += 4 * kNr;
  } while (++kq < t.k_groups);
  // The accumulators leave registers in one plain pass (kept apart from the dequantisation so they are
  // never spilled inside the K loop).
  alignas(64) int32_t sums[MR][kNr];
  for (int r = 0; r < MR; ++r) {
    _mm512_store_si512(&sums[r][0], (__m512i)acc[r][0]);
    _mm512_store_si512(&sums[r][16], (__m512i)acc[r][1]);
  }
  store_u8s8_sums<MR>(t, sums);
}

template <class Dot, int... R>
void dispatch_u8s8_rows(const LowpTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const LowpTile&);
  static constexpr Fn kByRows[] = {&gemm_u8s8_rows<R + 1, Dot>...};
  kByRows[t.out.rows - 1](t);
}

}  // namespace
}  // namespace dinov3::cpu::lowp
