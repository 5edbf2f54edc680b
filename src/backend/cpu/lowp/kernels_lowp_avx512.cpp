// AVX-512F kernels of the reduced-precision paths (compiled with -mavx512f -mavx512bw -mavx512dq
// -mavx512vl -mfma): operand preparation for both, the bf16 micro-tile for CPUs without AVX512_BF16 and the
// int8 one for CPUs without AVX512_VNNI (gemm_u8s8_tile.h: the same sums as vpdpbusd, exactly).
//
// The emulated tile reproduces vdpbf16ps bit for bit. Per lane, vdpbf16ps computes
//   acc = (acc + a[1] * b[1]) + a[0] * b[0]
// (the odd element of each pair first), each step rounded to nearest even with denormals flushed. A
// product of two bf16 values has at most 16 significant bits, so it is exact in float32 and each step is
// exactly one rounding of an exact sum: an FMA (or a multiply then add) in the same order gives the same
// float32, and the backend runs every task with FTZ/DAZ. bf16 -> float32 is a 16-bit shift (even element)
// or a mask (odd element) of the packed pair.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels/tile_store.h"
#include "backend/cpu/lowp/bf16_rows_avx512.h"
#include "backend/cpu/lowp/gemm_u8s8_tile.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu::lowp {
namespace {

// 12 rows: 24 accumulators + 4 split B vectors + 2 split A values fit the 32 zmm registers (both tiles).
constexpr int kMrEmulated = 12;

// A K quad's products as vpdpbusd sums them, from 16-bit halves: per 32-bit lane, the even bytes (0, 2)
// and the odd bytes (1, 3) each give one vpmaddwd pair sum.
struct DotAvx512bw {
  struct A {
    __m512i even, odd;  // u8 zero-extended to 16 bits
  };
  struct B {
    __m512i even, odd;  // s8 sign-extended to 16 bits
  };
  static B load_b(const uint8_t* p) {
    const __m512i v = _mm512_loadu_si512(p);
    return {_mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8), _mm512_srai_epi16(v, 8)};
  }
  static A broadcast_a(int32_t quad) {
    const __m512i v = _mm512_set1_epi32(quad), low = _mm512_set1_epi16(0x00FF);
    return {_mm512_and_si512(v, low), _mm512_and_si512(_mm512_srli_epi16(v, 8), low)};
  }
  static __v16si step(__v16si acc, const A& a, const B& b) {
    const __m512i s = _mm512_add_epi32(_mm512_madd_epi16(a.even, b.even), _mm512_madd_epi16(a.odd, b.odd));
    return (__v16si)_mm512_add_epi32((__m512i)acc, s);
  }
};

__m512 even_of(__m512i pairs) { return _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16)); }
__m512 odd_of(__m512i pairs) { return _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32(-65536))); }

template <int MR>
void gemm_bf16_emulated_rows(const LowpTile& t) {
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  // No K: the zeros stored apart, so the loop runs at least once (gemm_tile.h's reason).
  if (t.k_groups <= 0) return store_accumulators<OpsAvx512, MR, 2, false>(t.out, acc);
  prefetch_c_for_store(t.out);
  const uint8_t* b = t.b;
  int64_t kp = 0;
  do {
    const __m512i b0 = _mm512_loadu_si512(b), b1 = _mm512_loadu_si512(b + 64);
    const __m512 b0_even = even_of(b0), b0_odd = odd_of(b0), b1_even = even_of(b1), b1_odd = odd_of(b1);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, t.a + r * t.lda + kp * 4, sizeof(pair));
      const __m512i a = _mm512_set1_epi32(pair);
      const __m512 a_even = even_of(a), a_odd = odd_of(a);
      acc[r][0] = _mm512_fmadd_ps(a_even, b0_even, _mm512_fmadd_ps(a_odd, b0_odd, acc[r][0]));
      acc[r][1] = _mm512_fmadd_ps(a_even, b1_even, _mm512_fmadd_ps(a_odd, b1_odd, acc[r][1]));
    }
    b += 2 * kNr * 2;
  } while (++kp < t.k_groups);
  store_accumulators<OpsAvx512, MR, 2, MR == kMrEmulated>(t.out, acc);
}

template <int... R>
void dispatch_rows(const LowpTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const LowpTile&);
  static constexpr Fn kByRows[] = {&gemm_bf16_emulated_rows<R + 1>...};
  kByRows[t.out.rows - 1](t);
}


__mmask16 first(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u); }

// Lanes that may enter, offered in channel order against the list's current cut.
void gather_avx512(const float* x, int64_t k, TopMagnitudes& top) {
  for (int64_t i = 0; i < k; i += 16) {
    const __m512 v = _mm512_abs_ps(_mm512_maskz_loadu_ps(first(k - i), x + i));
    for (unsigned m = _mm512_cmp_ps_mask(v, _mm512_set1_ps(top.cut), _CMP_GT_OQ); m != 0; m &= m - 1) {
      const int lane = __builtin_ctz(m);
      const float a = std::fabs(x[i + lane]);
      if (a > top.cut) top.offer(a, static_cast<int32_t>(i + lane));
    }
  }
}

}  // namespace

void gemm_bf16_12x32_avx512_emulated(const LowpTile& t) {
  dispatch_rows(t, std::make_integer_sequence<int, kMrEmulated>{});
}

void gemm_u8s8_12x32_avx512bw(const LowpTile& t) {
  dispatch_u8s8_rows<DotAvx512bw>(t, std::make_integer_sequence<int, kMrEmulated>{});
}

void to_bf16_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst) {
  to_bf16_rows_avx512_impl(x, ldx, rows, k, k_pad, dst);
}

void to_bf16_pairs_avx512(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  to_bf16_pairs_avx512_impl(x, ldx, rows, cols, rows_pad, dst);
}

void bf16_pairs_avx512(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  // Words j of rows r and r + 1 interleaved: element 2j from the first operand, 2j + 1 from the second.
  alignas(64) uint16_t lo_index[32], hi_index[32];
  for (int j = 0; j < 16; ++j) {
    lo_index[2 * j] = static_cast<uint16_t>(j);
    lo_index[2 * j + 1] = static_cast<uint16_t>(32 + j);
    hi_index[2 * j] = static_cast<uint16_t>(16 + j);
    hi_index[2 * j + 1] = static_cast<uint16_t>(48 + j);
  }
  const __m512i lo_idx = _mm512_load_si512(lo_index), hi_idx = _mm512_load_si512(hi_index);
  const int64_t panels = (cols + kNr - 1) / kNr;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t c = p * kNr;
    const int n = static_cast<int>(std::clamp<int64_t>(cols - c, 0, kNr));
    const __mmask32 m = n >= 32 ? ~__mmask32{0} : (__mmask32{1} << n) - 1;
    for (int64_t r = 0; r < rows_pad; r += 2) {
      // Rows ahead towards L1, as to_bf16_pairs does (far apart: V's columns of a qkv row).
      if (r + kPairsPrefetchRows + 1 < rows) {
        _mm_prefetch(reinterpret_cast<const char*>(x + (r + kPairsPrefetchRows) * ldx + c), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(x + (r + kPairsPrefetchRows + 1) * ldx + c), _MM_HINT_T0);
      }
      const __m512i a = r < rows ? _mm512_maskz_loadu_epi16(m, x + r * ldx + c) : _mm512_setzero_si512();
      const __m512i b = r + 1 < rows ? _mm512_maskz_loadu_epi16(m, x + (r + 1) * ldx + c) : _mm512_setzero_si512();
      uint16_t* out = dst + (p * rows_pad + r) * kNr;
      _mm512_storeu_si512(out, _mm512_permutex2var_epi16(a, lo_idx, b));
      _mm512_storeu_si512(out + 32, _mm512_permutex2var_epi16(a, hi_idx, b));
    }
  }
}

namespace {

// r[i] lane e = M[i][e] -> r[e] lane i = M[i][e], 32-bit elements: pairs of rows interleaved word by word,
// then two by two, then the 128-bit lanes of four vectors transposed.
inline void transpose_16x16_epi32(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  __m512i s[16];  // s[4g + c] 128-bit lane L: rows 4g..4g+3 of column 4L + c
  for (int g = 0; g < 4; ++g) {
    s[4 * g] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
    s[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
    s[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
    s[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512i v0 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0x44), v1 = _mm512_shuffle_i32x4(s[c], s[4 + c], 0xEE);
    const __m512i v2 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0x44),
                  v3 = _mm512_shuffle_i32x4(s[8 + c], s[12 + c], 0xEE);
    r[c] = _mm512_shuffle_i32x4(v0, v2, 0x88);
    r[4 + c] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
    r[8 + c] = _mm512_shuffle_i32x4(v1, v3, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
  }
}

}  // namespace

void bf16_rows_transposed_avx512(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst) {
  const int64_t panels = (rows + kNr - 1) / kNr, pairs = k_pad / 2;
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* panel = dst + p * k_pad * kNr;
    for (int64_t j0 = 0; j0 < kNr; j0 += 16) {
      for (int64_t k0 = 0; k0 < pairs; k0 += 16) {
        const int n = static_cast<int>(std::min<int64_t>(16, pairs - k0));
        const __mmask16 mask = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1u);
        __m512i r[16];
        for (int i = 0; i < 16; ++i) {
          const int64_t row = p * kNr + j0 + i;
          r[i] = row < rows ? _mm512_maskz_loadu_epi32(mask, m + row * ld + 2 * k0) : _mm512_setzero_si512();
        }
        transpose_16x16_epi32(r);
        for (int e = 0; e < n; ++e) _mm512_storeu_si512(panel + ((k0 + e) * kNr + j0) * 2, r[e]);
      }
    }
  }
}

void to_u8_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    __m512 sq = _mm512_setzero_ps(), amax = _mm512_setzero_ps(), lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(first(k - i), src + i);
      sq = _mm512_fmadd_ps(v, v, sq);
      amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
      lo = _mm512_min_ps(lo, v);
      hi = _mm512_max_ps(hi, v);
    }
    alignas(64) float lanes[16];
    _mm512_store_ps(lanes, sq);
    float sum_squares = 0.0f;
    for (float l : lanes) sum_squares += l;
    int32_t* index = dst.outlier_index + r * kMaxOutliers;
    const int n = find_outliers(src, k, sum_squares, _mm512_reduce_max_ps(amax), gather_avx512, index,
                                dst.outlier_value + r * kMaxOutliers);
    dst.outliers[r] = n;
    // The lanes of [i, i + 16) that are outliers (they count as 0 from here on).
    auto outlier_lanes = [&](int64_t i) {
      __mmask16 m = 0;
      for (int o = 0; o < n; ++o) {
        if (index[o] >= i && index[o] < i + 16) m = static_cast<__mmask16>(m | (1u << (index[o] - i)));
      }
      return m;
    };
    if (n > 0) {
      lo = hi = _mm512_setzero_ps();
      for (int64_t i = 0; i < k; i += 16) {
        const __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>(first(k - i) & ~outlier_lanes(i)), src + i);
        lo = _mm512_min_ps(lo, v);
        hi = _mm512_max_ps(hi, v);
      }
    }
    float s;
    int32_t z;
    u8_scale_zero(_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi), sum_squares, &s, &z);
    dst.scale[r] = s;
    dst.zero[r] = z;
    const __m512 inv = _mm512_set1_ps(s >= FLT_MIN && s <= FLT_MAX ? 1.0f / s : 0.0f);
    const __m512i zero = _mm512_set1_epi32(z), u8_max = _mm512_set1_epi32(255);
    uint8_t* d = dst.data + r * k_pad;
    for (int64_t i = 0; i < k; i += 16) {
      const __mmask16 mk = first(k - i);
      const __mmask16 m = n > 0 ? static_cast<__mmask16>(mk & ~outlier_lanes(i)) : mk;
      // cvtps rounds with MXCSR's mode, nearest-even, like nearbyint in the scalar path.
      __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, src + i), inv)), zero);
      q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_setzero_si512()), u8_max);
      _mm_mask_storeu_epi8(d + i, mk, _mm512_cvtepi32_epi8(q));
    }
    for (int64_t i = k; i < k_pad; ++i) d[i] = static_cast<uint8_t>(z);
  }
}

}  // namespace dinov3::cpu::lowp
