// The shared store of the reduced-precision micro-tiles: acc holds the float32 tile (already dequantised
// for int8); bias and the GemmTile epilogue are applied exactly as the float32 kernels do. Generic over an
// Ops type (simd/ops_*.h); include only from the per-ISA kernel files.
#pragma once

#include "backend/cpu/kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/cpu/simd/vec_math.h"

namespace dinov3::cpu::lowp {
namespace {

template <class O, int MR>
void store_tile(const GemmTile& t, const float (&acc)[MR][kNr]) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  for (int r = 0; r < t.rows; ++r) {
    float* c = t.c + r * t.ldc;
    for (int v = 0; v * W < t.cols; ++v) {
      const int n = t.cols - v * W;
      V y = O::load(&acc[r][v * W]);
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
}  // namespace dinov3::cpu::lowp
