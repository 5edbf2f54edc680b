// The register-blocked GEMM micro-kernel, generic over an Ops type and the tile shape MR x (NV vectors).
// Accumulators stay in registers over the whole K (no C traffic until the store); A is broadcast one
// element per row per k, B is the first NV vectors of one packed panel row (PV vectors wide) per k.
// store_accumulators applies the epilogue.
#pragma once

#include <utility>

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels/tile_store.h"

namespace dinov3::cpu {
namespace {

template <class O, int MR, int NV, int PV, bool kFull>
void gemm_tile_rows(const GemmTile& t) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  constexpr int NR = W * PV;  // the panel's row stride
  V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = O::zero();

  const float* a = t.a;
  const float* b = t.b;
  const int64_t lda = t.lda;
  const int64_t depth = t.k;
  // Panels are contiguous: while this one streams from L2, pull the next one (usually this tile's next
  // call) towards L2 too, so a weight's first touch in a forward pass does not wait on memory.
  const char* next = reinterpret_cast<const char*>(b + depth * NR);
  // A zero depth stores the zeros apart, so the K loop below runs at least once: with a loop that may run
  // no times GCC 12 keeps a zeroed stack copy of the accumulators for that path, 28 vector stores a call.
  if (depth <= 0) return store_accumulators<O, MR, NV, false>(t, acc);
  prefetch_c_for_store(t);
  int64_t k = 0;
  do {
    for (int line = 0; line < NR * static_cast<int>(sizeof(float)); line += 64) __builtin_prefetch(next + line, 0, 2);
    V bv[NV];
    for (int v = 0; v < NV; ++v) bv[v] = O::load(b + v * W);
    for (int r = 0; r < MR; ++r) {
      const V ar = O::broadcast(a + r * lda + k);
      for (int v = 0; v < NV; ++v) acc[r][v] = O::fmadd(ar, bv[v], acc[r][v]);
    }
    b += NR;
    next += NR * sizeof(float);
  } while (++k < depth);

  store_accumulators<O, MR, NV, kFull>(t, acc);
}

// Ragged row counts (the last tile of M) run an instantiation with exactly that many rows.
template <class O, int NV, int PV, int... R>
void gemm_tile_dispatch(const GemmTile& t, std::integer_sequence<int, R...>) {
  using Fn = void (*)(const GemmTile&);
  static constexpr Fn kByRows[] = {&gemm_tile_rows<O, R + 1, NV, PV, R + 1 == sizeof...(R)>...};
  kByRows[t.rows - 1](t);
}

// A last panel with at most one vector of real columns (attention's 261 keys = 8 x 32 + 5) runs a
// one-vector tile: half the FMAs of the full width, which would only multiply zero padding.
template <class O, int MR, int NV>
void gemm_tile(const GemmTile& t) {
  if constexpr (NV > 1) {
    if (t.cols <= O::kLanes) return gemm_tile_dispatch<O, 1, NV>(t, std::make_integer_sequence<int, MR>{});
  }
  gemm_tile_dispatch<O, NV, NV>(t, std::make_integer_sequence<int, MR>{});
}

}  // namespace
}  // namespace dinov3::cpu
