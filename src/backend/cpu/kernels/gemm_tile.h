// The register-blocked GEMM micro-kernel, generic over an Ops type and the tile shape MR x (NV vectors).
// Accumulators stay in registers over the whole K (no C traffic until the store); A is broadcast one
// element per row per k, B is one packed panel row of NV vectors per k. The store applies the epilogue.
#pragma once

#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd/vec_math.h"

namespace dinov3::cpu {
namespace {

template <class O, int MR, int NV>
void gemm_tile_rows(const GemmTile& t) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  constexpr int NR = W * NV;
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = O::zero();

  const float* a = t.a;
  const float* b = t.b;
  const int64_t lda = t.lda;
  const int64_t depth = t.k;
  for (int64_t k = 0; k < depth; ++k, b += NR) {
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = O::load(b + v * W);
    for (int r = 0; r < MR; ++r) {
      const V ar = O::broadcast(a + r * lda + k);
      for (int v = 0; v < NV; ++v) acc[r][v] = O::fmadd(ar, bv[v], acc[r][v]);
    }
  }

  // The accumulators leave registers once, here, for an epilogue that may call out-of-line vector math.
  alignas(64) float out[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) O::store(&out[r][v * W], acc[r][v]);

  for (int r = 0; r < MR; ++r) {
    float* c = t.c + r * t.ldc;
    for (int v = 0; v < NV; ++v) {
      const int n = t.cols - v * W;  // lanes of this vector inside the tile (may be <= 0 or > W)
      if (n <= 0) break;
      V y = O::load(&out[r][v * W]);
      if (t.bias != nullptr) y = O::add(y, O::load(t.bias + v * W));
      switch (t.epilogue) {
        case TileEpilogue::kStore:
          break;
        case TileEpilogue::kGelu:
          y = gelu_erf_f32<O>(y);
          break;
        case TileEpilogue::kScaleAdd:
          y = O::fmadd(O::load_first(t.scale + v * W, n), y, O::load_first(c + v * W, n));
          break;
        case TileEpilogue::kSwiglu:
          y = O::mul(silu_f32<O>(O::load_first(t.aux + r * t.ld_aux + v * W, n)), y);
          break;
        case TileEpilogue::kAttentionRows:
          if (t.row_scale != nullptr) y = O::fmadd(O::load_first(c + v * W, n), O::set1(t.row_scale[r]), y);
          if (t.row_post != nullptr) y = O::mul(y, O::set1(t.row_post[r]));
          break;
      }
      if (n >= W) {
        O::store(c + v * W, y);
      } else {
        O::store_first(c + v * W, y, n);
      }
    }
  }
}

// Ragged row counts (the last tile of M) run an instantiation with exactly that many rows.
template <class O, int MR, int NV, int... R>
void gemm_tile_dispatch(const GemmTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const GemmTile&);
  static constexpr Fn kByRows[] = {&gemm_tile_rows<O, R + 1, NV>...};
  kByRows[t.rows - 1](t);
}

template <class O, int MR, int NV>
void gemm_tile(const GemmTile& t) {
  gemm_tile_dispatch<O, MR, NV>(t, std::make_integer_sequence<int, MR>{});
}

}  // namespace
}  // namespace dinov3::cpu
