// bf16 GEMM micro-tile on AVX512_BF16 (compiled with -mavx512bf16 on top of AVX-512F/BW/DQ/VL; reached
// only through select_lowp_kernels after the runtime check).
//
// Tile 14x32 as in the float32 kernel: 28 zmm accumulators, 2 B vectors, 1 broadcast. Per K pair: 2 B
// loads (32 columns x 2 bf16), 14 broadcasts of a row's bf16 pair, 28 vdpbf16ps, each doing two
// multiply-adds per lane: twice the float32 work per instruction.
#include <cstring>
#include <utility>

#include "backend/cpu/lowp/bf16_rows_avx512.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/kernels/tile_store.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu::lowp {
namespace {

constexpr int kMr = 14;

// NV: vectors of 16 columns computed, 2 (the panel) or 1 (a last panel with at most 16 real columns, as
// attention's 261 keys = 8 x 32 + 5 leave: half the dot products, the others would only meet zero padding).
template <int MR, int NV>
void gemm_bf16_rows(const LowpTile& t) {
  __m512 acc[MR][NV];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_setzero_ps();
  // No K: the zeros stored apart, so the loop runs at least once (gemm_tile.h's reason).
  if (t.k_groups <= 0) return store_accumulators<OpsAvx512, MR, NV, false>(t.out, acc);
  prefetch_c_for_store(t.out);
  const uint8_t* b = t.b;
  int64_t kp = 0;
  do {
    // The next panel (contiguous) towards L2 while this one streams, as in the float32 kernel.
    __builtin_prefetch(b + t.k_groups * 2 * kNr * 2, 0, 2);
    __builtin_prefetch(b + t.k_groups * 2 * kNr * 2 + 64, 0, 2);
    __m512bh bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) bv[v] = (__m512bh)_mm512_loadu_si512(b + 64 * v);
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      int32_t pair;
      std::memcpy(&pair, t.a + r * t.lda + kp * 4, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, bv[v]);
    }
    b += 2 * kNr * 2;
  } while (++kp < t.k_groups);
  store_accumulators<OpsAvx512, MR, NV, MR == kMr>(t.out, acc);
}

template <int NV, int... R>
void dispatch_rows(const LowpTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const LowpTile&);
  static constexpr Fn kByRows[] = {&gemm_bf16_rows<R + 1, NV>...};
  kByRows[t.out.rows - 1](t);
}

}  // namespace

void gemm_bf16_14x32_avx512bf16(const LowpTile& t) {
  if (t.out.cols <= 16) return dispatch_rows<1>(t, std::make_integer_sequence<int, kMr>{});
  dispatch_rows<2>(t, std::make_integer_sequence<int, kMr>{});
}

void to_bf16_rows_avx512bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst) {
  to_bf16_rows_avx512_impl(x, ldx, rows, k, k_pad, dst);
}

void to_bf16_pairs_avx512bf16(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad,
                              uint16_t* dst) {
  to_bf16_pairs_avx512_impl(x, ldx, rows, cols, rows_pad, dst);
}

}  // namespace dinov3::cpu::lowp
