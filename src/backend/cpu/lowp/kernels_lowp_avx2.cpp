// AVX2 + FMA kernels of the reduced-precision paths (compiled with -mavx2 -mfma), for x86-64 CPUs without
// AVX-512: the bf16 tile reproduces vdpbf16ps bit for bit and the int8 tile forms vpdpbusd's int32 sums
// exactly (kernels_lowp_avx512.cpp and gemm_u8s8_tile.h give the reasons), so a layer comes out as on the
// AVX-512 paths up to the epilogue's own vector math.
//
// 16 ymm registers do not hold a 32-column panel's accumulators for more than two rows next to its split B
// vectors, so a tile runs its panel in two halves of 16 columns (two vectors), each over the whole K, and
// reads A from a per-tile copy already split into its two operands per K group (float32 odd and even
// elements for bf16; the even and odd bytes widened to 16-bit pairs for int8), where one broadcast load
// fetches each. The copy is made in blocks of kSplitGroups K groups (2 KiB a row), so it stays in L1 for any K;
// a K of one block (every ViT-S layer's but fc2's) is split once for both halves.
#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <utility>

#include "backend/cpu/kernels/tile_store.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_avx2.h"

namespace dinov3::cpu::lowp {
namespace {

using O = OpsAvx2;

// bf16: 5 rows x 2 vectors = 10 accumulators + 4 split B vectors + 1 broadcast. int8: 4 rows, for its two
// products' temporaries.
constexpr int kMrBf16 = 5;
constexpr int kMrInt8 = 4;
constexpr int64_t kSplitGroups = 256;
constexpr int kHalf = kNr / 2;  // columns per pass

// Two vectors (std::pair would drop __m256i's alignment attribute).
struct Halves {
  __m256i first, second;
};

// Rows [0, MR) of A's K groups [g0, g0 + n), each 32 bits, split by `split` into lo[r][i] and hi[r][i].
template <int MR, class Split>
void split_rows(const LowpTile& t, int64_t g0, int64_t n, int32_t (&lo)[MR][kSplitGroups],
                int32_t (&hi)[MR][kSplitGroups], Split split) {
  for (int r = 0; r < MR; ++r) {
    const auto* a = reinterpret_cast<const int*>(t.a + r * t.lda + g0 * 4);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const auto [l, h] = split(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&lo[r][i]), l);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&hi[r][i]), h);
    }
    if (i < n) {  // masked: the row ends at k_pad
      const auto [l, h] = split(_mm256_maskload_epi32(a + i, O::first(static_cast<int>(n - i))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&lo[r][i]), l);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(&hi[r][i]), h);
    }
  }
}

// The tile's GemmTile for the columns [16 h, 16 h + 16) (the epilogue's column-indexed fields moved along).
GemmTile half_of(const GemmTile& t, int h) {
  GemmTile o = t;
  const int skip = h * kHalf;
  o.cols = std::min(kHalf, t.cols - skip);
  if (o.c != nullptr) o.c += skip;
  if (o.c_bf16 != nullptr) o.c_bf16 += skip;
  if (o.bias != nullptr) o.bias += skip;
  if (o.scale != nullptr) o.scale += skip;
  if (o.aux != nullptr) o.aux += skip;
  return o;
}

// The tile loop both precisions share, generic over a Dot policy:
//   using Acc, B                               an accumulator vector; a K group's split B vectors (both halves'
//                                              columns 0-7 and 8-15)
//   static Halves split(__m256i groups)        a row's eight K groups into its two broadcast operands
//   static Acc zero()
//   static B load_b(const uint8_t* p)          the half's 16 columns of one K group
//   static void step(Acc (&acc)[2], int32_t lo, int32_t hi, const B& b)
//                                              one K group of one row (lo, hi: its split operands)
//   template <int MR> static void store(const LowpTile& t, int h, const Acc (&acc)[MR][2])
//                                              half h's results, with the tile's epilogue
template <int MR, class Dot>
void gemm_avx2_rows(const LowpTile& t) {
  alignas(32) int32_t lo[MR][kSplitGroups], hi[MR][kSplitGroups];
  const bool whole = t.k_groups <= kSplitGroups;  // one split for both halves
  if (whole) split_rows<MR>(t, 0, t.k_groups, lo, hi, Dot::split);
  prefetch_c_for_store(t.out);
  for (int h = 0; h * kHalf < t.out.cols; ++h) {
    typename Dot::Acc acc[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = Dot::zero();
    for (int64_t g0 = 0; g0 < t.k_groups; g0 += kSplitGroups) {
      const int64_t n = std::min(kSplitGroups, t.k_groups - g0);
      if (!whole) split_rows<MR>(t, g0, n, lo, hi, Dot::split);
      const uint8_t* b = t.b + g0 * 4 * kNr + h * kHalf * 4;
      for (int64_t i = 0; i < n; ++i, b += 4 * kNr) {
        if (h == 0) {  // the next panel (contiguous) towards L2, as the other tiles do
          __builtin_prefetch(b + t.k_groups * 4 * kNr, 0, 2);
          __builtin_prefetch(b + t.k_groups * 4 * kNr + 64, 0, 2);
        }
        const typename Dot::B bv = Dot::load_b(b);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) Dot::step(acc[r], lo[r][i], hi[r][i], bv);
      }
    }
    Dot::template store<MR>(t, h, acc);
  }
}

// bf16 pairs: float32 odd (the high half: a mask) and even (the low half: a shift) elements, and vdpbf16ps's
// order per lane: the odd product first, then the even one, each rounded once.
struct DotBf16 {
  using Acc = __m256;
  struct B {
    __m256 odd[2], even[2];
  };
  static Halves split(__m256i pairs) {
    return {_mm256_and_si256(pairs, _mm256_set1_epi32(-65536)), _mm256_slli_epi32(pairs, 16)};
  }
  static Acc zero() { return _mm256_setzero_ps(); }
  static B load_b(const uint8_t* p) {
    B b;
    for (int v = 0; v < 2; ++v) {
      const Halves s = split(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * v)));
      b.odd[v] = _mm256_castsi256_ps(s.first);
      b.even[v] = _mm256_castsi256_ps(s.second);
    }
    return b;
  }
  static void step(Acc (&acc)[2], int32_t odd, int32_t even, const B& b) {
    // vbroadcastss (a float load) rather than vpbroadcastd, whose integer result would feed the FMAs.
    const __m256 vo = _mm256_set1_ps(std::bit_cast<float>(odd));
    acc[0] = _mm256_fmadd_ps(vo, b.odd[0], acc[0]);
    acc[1] = _mm256_fmadd_ps(vo, b.odd[1], acc[1]);
    const __m256 ve = _mm256_set1_ps(std::bit_cast<float>(even));
    acc[0] = _mm256_fmadd_ps(ve, b.even[0], acc[0]);
    acc[1] = _mm256_fmadd_ps(ve, b.even[1], acc[1]);
  }
  template <int MR>
  static void store(const LowpTile& t, int h, const Acc (&acc)[MR][2]) {
    store_accumulators<O, MR, 2, MR == kMrBf16>(half_of(t.out, h), acc);
  }
};

// Dequantises half h of a tile's int32 sums (16 columns) as store_u8s8_sums does, then stores it.
template <int MR>
void store_u8s8_half(const LowpTile& t, int h, const int32_t (&sums)[MR][kHalf]) {
  const int skip = h * kHalf;
  alignas(32) float out[MR][kHalf];
  for (int r = 0; r < MR; ++r) {
    const __m256 rs = _mm256_set1_ps(t.row_scale[r]);
    const __m256i z = _mm256_set1_epi32(t.row_zero[r]);
    __m256 y[2];
    for (int v = 0; v < 2; ++v) {
      const int c = skip + v * 8;
      const __m256i col_sum = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.col_sum + c));
      const __m256i s = _mm256_sub_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(&sums[r][v * 8])),
                                         _mm256_mullo_epi32(z, col_sum));
      y[v] = _mm256_mul_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(rs, _mm256_loadu_ps(t.col_scale + c)));
    }
    for (int o = 0; o < t.outliers[r]; ++o) {  // the row's outlier channels, in float32
      const int32_t k = t.outlier_index[r * kMaxOutliers + o];
      const __m256 v = _mm256_set1_ps(t.outlier_value[r * kMaxOutliers + o] * t.channel_scale[k]);
      const int8_t* q = t.channel_q + k * t.ld_channel_q + skip;
      for (int w = 0; w < 2; ++w) {
        int64_t bytes;
        std::memcpy(&bytes, q + w * 8, sizeof(bytes));
        const __m256 qv = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128(bytes)));
        y[w] = _mm256_fmadd_ps(v, qv, y[w]);
      }
    }
    _mm256_store_ps(&out[r][0], y[0]);
    _mm256_store_ps(&out[r][8], y[1]);
  }
  store_tile<O>(half_of(t.out, h), &out[0][0], kHalf);
}

// A K quad's u8 x s8 products as vpdpbusd sums them: the even bytes (0, 2) and the odd bytes (1, 3) widened
// to 16 bits (u8 zero-extended, s8 sign-extended), then one exact vpmaddwd pair sum each.
struct DotU8s8 {
  using Acc = __m256i;
  struct B {
    __m256i even[2], odd[2];
  };
  static Halves split(__m256i quads) {
    const __m256i low = _mm256_set1_epi16(0x00FF);
    return {_mm256_and_si256(quads, low), _mm256_and_si256(_mm256_srli_epi16(quads, 8), low)};
  }
  static Acc zero() { return _mm256_setzero_si256(); }
  static B load_b(const uint8_t* p) {
    B b;
    for (int v = 0; v < 2; ++v) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * v));
      b.even[v] = _mm256_srai_epi16(_mm256_slli_epi16(q, 8), 8);
      b.odd[v] = _mm256_srai_epi16(q, 8);
    }
    return b;
  }
  static void step(Acc (&acc)[2], int32_t even, int32_t odd, const B& b) {
    const __m256i ae = _mm256_set1_epi32(even), ao = _mm256_set1_epi32(odd);
    for (int v = 0; v < 2; ++v) {
      acc[v] =
          _mm256_add_epi32(acc[v], _mm256_add_epi32(_mm256_madd_epi16(ae, b.even[v]), _mm256_madd_epi16(ao, b.odd[v])));
    }
  }
  template <int MR>
  static void store(const LowpTile& t, int h, const Acc (&acc)[MR][2]) {
    alignas(32) int32_t sums[MR][kHalf];
    for (int r = 0; r < MR; ++r) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(&sums[r][0]), acc[r][0]);
      _mm256_store_si256(reinterpret_cast<__m256i*>(&sums[r][8]), acc[r][1]);
    }
    store_u8s8_half<MR>(t, h, sums);
  }
};

// Lanes that may enter, offered in channel order against the list's current cut (as gather_scalar does).
void gather_avx2(const float* x, int64_t k, TopMagnitudes& top) {
  for (int64_t i = 0; i < k; i += 8) {
    const int n = static_cast<int>(std::min<int64_t>(8, k - i));
    const __m256 v = O::abs(O::load_first(x + i, n));
    auto m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_set1_ps(top.cut), _CMP_GT_OQ)));
    for (; m != 0; m &= m - 1) {
      const int lane = __builtin_ctz(m);
      const float a = std::fabs(x[i + lane]);
      if (a > top.cut) top.offer(a, static_cast<int32_t>(i + lane));
    }
  }
}

// The lanes of the 8-bit mask `bits` as a vmaskmov / blend mask.
__m256i lanes_of(unsigned bits) {
  const __m256i bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  return _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(static_cast<int>(bits)), bit), bit);
}

template <class Dot, int... R>
void dispatch_rows(const LowpTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const LowpTile&);
  static constexpr Fn kByRows[] = {&gemm_avx2_rows<R + 1, Dot>...};
  kByRows[t.out.rows - 1](t);
}

}  // namespace

void gemm_bf16_5x32_avx2_emulated(const LowpTile& t) {
  dispatch_rows<DotBf16>(t, std::make_integer_sequence<int, kMrBf16>{});
}

void gemm_u8s8_4x32_avx2(const LowpTile& t) { dispatch_rows<DotU8s8>(t, std::make_integer_sequence<int, kMrInt8>{}); }

void to_bf16_rows_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    uint16_t* d = dst + r * k_pad;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) _mm_storeu_si128(reinterpret_cast<__m128i*>(d + i), O::to_bf16(O::load(src + i)));
    if (i < k) O::store_bf16_first(d + i, O::load_first(src + i, static_cast<int>(k - i)), static_cast<int>(k - i));
    for (i = k; i < k_pad; ++i) d[i] = 0;
  }
}


namespace {

// Words [0, n) of p (n in [1, 8]) and zeros past them.
__m128i load_words(const uint16_t* p, int n) {
  if (n >= 8) return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  alignas(16) uint16_t words[8] = {};
  std::copy_n(p, n, words);
  return _mm_load_si128(reinterpret_cast<const __m128i*>(words));
}

// r[i] lane e = M[i][e] -> r[e] lane i = M[i][e], 32-bit elements.
void transpose_8x8_epi32(__m256i (&r)[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    r[e] = _mm256_permute2x128_si256(u[e], u[e + 4], 0x20);
    r[e + 4] = _mm256_permute2x128_si256(u[e], u[e + 4], 0x31);
  }
}

// The panels of pairs both V packings write (pack_bf16_rows_plain's layout): lanes(r, c, n) gives row r's
// columns [c, c + n) (n in [1, 8]) as bf16 in the low half of eight 32-bit lanes, zero past n.
template <class Lanes>
void pack_pairs_avx2(int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst, Lanes lanes) {
  const int64_t panels = (cols + kNr - 1) / kNr;
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t r = 0; r < rows_pad; r += 2) {
      auto* out = reinterpret_cast<__m256i*>(dst + (p * rows_pad + r) * kNr);
      for (int64_t v = 0; v < kNr / 8; ++v) {
        const int64_t c = p * kNr + v * 8;
        const int n = static_cast<int>(std::clamp<int64_t>(cols - c, 0, 8));
        const __m256i lo = r < rows && n > 0 ? lanes(r, c, n) : _mm256_setzero_si256();
        const __m256i hi = r + 1 < rows && n > 0 ? lanes(r + 1, c, n) : _mm256_setzero_si256();
        _mm256_storeu_si256(out + v, _mm256_or_si256(lo, _mm256_slli_epi32(hi, 16)));
      }
    }
  }
}

}  // namespace

void to_bf16_pairs_avx2(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  pack_pairs_avx2(rows, cols, rows_pad, dst,
                  [&](int64_t r, int64_t c, int n) { return O::to_bf16_lanes(O::load_first(x + r * ldx + c, n)); });
}

void bf16_pairs_avx2(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  pack_pairs_avx2(rows, cols, rows_pad, dst, [&](int64_t r, int64_t c, int n) {
    return _mm256_cvtepu16_epi32(load_words(x + r * ldx + c, n));
  });
}

// pack_bf16_rows_transposed's panels by 8 x 8 transposes of K-pair words.
void bf16_rows_transposed_avx2(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst) {
  const int64_t panels = (rows + kNr - 1) / kNr, pairs = k_pad / 2;
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* panel = dst + p * k_pad * kNr;
    for (int64_t j0 = 0; j0 < kNr; j0 += 8) {
      for (int64_t k0 = 0; k0 < pairs; k0 += 8) {
        const int n = static_cast<int>(std::min<int64_t>(8, pairs - k0));
        __m256i r[8];
        for (int i = 0; i < 8; ++i) {
          const int64_t row = p * kNr + j0 + i;
          r[i] = row < rows ? _mm256_maskload_epi32(reinterpret_cast<const int*>(m + row * ld + 2 * k0), O::first(n))
                            : _mm256_setzero_si256();
        }
        transpose_8x8_epi32(r);
        for (int e = 0; e < n; ++e) {
          _mm256_storeu_si256(reinterpret_cast<__m256i*>(panel + ((k0 + e) * kNr + j0) * 2), r[e]);
        }
      }
    }
  }
}

// to_u8_rows_avx512's steps on eight lanes, with the same bits as to_u8_rows_scalar: the sum of squares in
// 16 lanes (two vectors: lane i takes values i, i + 16, ...) added in order, the outliers from
// find_outliers, and u = round(x / s) + z clamped to [0, 255] (cvtps rounds to nearest even, as nearbyint).
void to_u8_rows_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * ldx;
    __m256 sq[2] = {O::zero(), O::zero()};
    __m256 amax = O::zero(), lo = O::zero(), hi = O::zero();
    for (int64_t i = 0; i < k; i += 8) {
      const __m256 v = O::load_first(src + i, static_cast<int>(std::min<int64_t>(8, k - i)));
      const int half = static_cast<int>((i / 8) % 2);
      sq[half] = _mm256_fmadd_ps(v, v, sq[half]);
      amax = _mm256_max_ps(amax, O::abs(v));
      lo = _mm256_min_ps(lo, v);
      hi = _mm256_max_ps(hi, v);
    }
    alignas(32) float lanes[16];
    _mm256_store_ps(lanes, sq[0]);
    _mm256_store_ps(lanes + 8, sq[1]);
    float sum_squares = 0.0f;
    for (float l : lanes) sum_squares += l;
    const float row_amax = O::reduce_max(amax);
    int32_t* index = dst.outlier_index + r * kMaxOutliers;
    const int n =
        find_outliers(src, k, sum_squares, row_amax, gather_avx2, index, dst.outlier_value + r * kMaxOutliers);
    dst.outliers[r] = n;
    // The lanes of [i, i + 8) that are inside the row and not outliers (those count as 0 from here on).
    auto kept = [&](int64_t i) {
      unsigned bits = k - i >= 8 ? 0xFFu : (1u << (k - i)) - 1u;
      for (int o = 0; o < n; ++o) {
        if (index[o] >= i && index[o] < i + 8) bits &= ~(1u << (index[o] - i));
      }
      return lanes_of(bits);
    };
    if (n > 0) {
      lo = hi = O::zero();
      for (int64_t i = 0; i < k; i += 8) {
        const __m256 v = _mm256_maskload_ps(src + i, kept(i));
        lo = _mm256_min_ps(lo, v);
        hi = _mm256_max_ps(hi, v);
      }
    }
    float s;
    int32_t z;
    u8_scale_zero(O::reduce_min(lo), O::reduce_max(hi), sum_squares, &s, &z);
    dst.scale[r] = s;
    dst.zero[r] = z;
    const __m256 inv = _mm256_set1_ps(s >= FLT_MIN && s <= FLT_MAX ? 1.0f / s : 0.0f);
    const __m256i zero = _mm256_set1_epi32(z), u8_max = _mm256_set1_epi32(255);
    uint8_t* d = dst.data + r * k_pad;
    for (int64_t i = 0; i < k; i += 8) {
      const __m256 v = n > 0 ? _mm256_maskload_ps(src + i, kept(i))
                             : O::load_first(src + i, static_cast<int>(std::min<int64_t>(8, k - i)));
      __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(v, inv)), zero);
      q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_setzero_si256()), u8_max);
      // Eight values in [0, 255] to bytes: packs within each 128-bit half, then the halves' first words.
      const __m256i b = _mm256_packus_epi16(_mm256_packus_epi32(q, q), _mm256_setzero_si256());
      const __m128i bytes = _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
      alignas(16) uint8_t out[16];
      _mm_store_si128(reinterpret_cast<__m128i*>(out), bytes);
      std::memcpy(d + i, out, static_cast<size_t>(std::min<int64_t>(8, k - i)));
    }
    for (int64_t i = k; i < k_pad; ++i) d[i] = static_cast<uint8_t>(z);
  }
}

}  // namespace dinov3::cpu::lowp
