// The store every GEMM micro-tile ends with: the float32 accumulators of a t.rows x t.cols tile (already
// dequantised for int8) get the bias and the GemmTile epilogue, then go to C with masked stores on the
// ragged edge. Generic over an Ops type (simd/ops_*.h); include only from the per-ISA kernel files.
#pragma once

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd/vec_math.h"

namespace dinov3::cpu {
namespace {

// acc: row r of the tile starts at acc + r * ld_acc, vector-aligned.
template <class O>
void store_tile(const GemmTile& t, const float* acc, int ld_acc) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  for (int r = 0; r < t.rows; ++r) {
    float* c = t.c + r * t.ldc;
    for (int v = 0; v * W < t.cols; ++v) {
      const int n = t.cols - v * W;  // lanes of this vector inside the tile (may be > W)
      V y = O::load(acc + r * ld_acc + v * W);
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

}  // namespace
}  // namespace dinov3::cpu
