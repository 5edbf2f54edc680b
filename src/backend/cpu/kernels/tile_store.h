// The store every GEMM micro-tile ends with: the float32 accumulators of a t.rows x t.cols tile (already
// dequantised for int8) get the bias and the GemmTile epilogue, then go to C with masked stores on the
// ragged edge (and to c_bf16 when set). Generic over an Ops type (simd/ops_*.h); include only from the
// per-ISA kernel files. The epilogue is picked once per tile, so each loop below is compiled for one
// epilogue and keeps its constants (GELU's coefficient tables) in registers across the tile.
#pragma once

#include <type_traits>

#include "backend/cpu/kernels.h"
#include "backend/cpu/simd/bf16_store.h"
#include "backend/cpu/simd/vec_math.h"

namespace dinov3::cpu {
namespace {

// Epilogues made of a few adds and multiplies, and the reduced-precision GELU (five 16-entry tables, one
// register each; measured 1.5% faster on a bf16 fc1 than through the L1 copy): a micro-kernel applies them
// to its accumulator registers directly. The float32 GELU (eight 32-entry tables) and SwiGLU call out to
// long vector-math sequences and go through store_tile instead.
constexpr bool epilogue_in_registers(TileEpilogue e) {
  return e != TileEpilogue::kGelu && e != TileEpilogue::kSwiglu;
}

// Calls fn(std::integral_constant<TileEpilogue, E>) for E = e.
template <class Fn>
inline void with_epilogue(TileEpilogue e, Fn&& fn) {
  using E = TileEpilogue;
  switch (e) {
    case E::kStore: return fn(std::integral_constant<E, E::kStore>{});
    case E::kGelu: return fn(std::integral_constant<E, E::kGelu>{});
    case E::kGeluLowp: return fn(std::integral_constant<E, E::kGeluLowp>{});
    case E::kScaleAdd: return fn(std::integral_constant<E, E::kScaleAdd>{});
    case E::kSwiglu: return fn(std::integral_constant<E, E::kSwiglu>{});
    case E::kAttentionRows: return fn(std::integral_constant<E, E::kAttentionRows>{});
  }
}

// Whether epilogue E reads the C values it replaces: the residual under kScaleAdd, the running output under
// kAttentionRows once row_scale is set (after the first key block). The one statement of it: the epilogue's
// arithmetic (epilogue_vector) and the prefetch before the K loop (store_reads_c) both ask here.
template <TileEpilogue E>
constexpr bool reads_c(const GemmTile& t) {
  if constexpr (E == TileEpilogue::kScaleAdd) return true;
  if constexpr (E == TileEpilogue::kAttentionRows) return t.row_scale != nullptr;
  return false;
}

// Whether the store of tile t reads C. Plain comparisons, not with_epilogue's switch: this runs inline before
// every micro-kernel's K loop, and through the switch g++ 12 lengthened the float32 14 x 32 tile's innermost
// K loop from 47 to 55 instructions; with the comparisons every K loop is the one it was without the prefetch.
inline bool store_reads_c(const GemmTile& t) {
  using E = TileEpilogue;
  if (t.c == nullptr) return false;
  if (t.epilogue == E::kScaleAdd) return reads_c<E::kScaleAdd>(t);
  if (t.epilogue == E::kAttentionRows) return reads_c<E::kAttentionRows>(t);
  static_assert(!reads_c<E::kStore>(GemmTile{}) && !reads_c<E::kGelu>(GemmTile{}) &&
                !reads_c<E::kGeluLowp>(GemmTile{}) && !reads_c<E::kSwiglu>(GemmTile{}));
  return false;
}

// Called by a micro-kernel before its K loop: requests the C rows its store will read, so they arrive while
// the loop runs. Those rows were last written one or more ops earlier (the residual stream, 1.5 KB a row at
// ViT-S, before qkv, attention and fc1 ran) and come from L2 or L3; read by the store itself, each of a
// tile's lines stalled it (a bf16 forward's `perf`, one thread: the residual store 0.9% of the micro-tile's
// samples, 0.3% with this, src/backend/cpu/README.md). Always inlined: as a call of its own, GCC 12 finds the
// function free of side effects (prefetches only) and drops the call.
[[gnu::always_inline]] inline void prefetch_c_for_store(const GemmTile& t) {
  if (!store_reads_c(t)) return;
  const int64_t bytes = static_cast<int64_t>(t.cols) * static_cast<int64_t>(sizeof(float));
  for (int r = 0; r < t.rows; ++r) {
    const char* row = reinterpret_cast<const char*>(t.c + r * t.ldc);
    for (int64_t at = 0; at < bytes; at += 64) __builtin_prefetch(row + at, 0, 3);
  }
}

// Epilogue E of vector v of tile row r, after the bias; c: where the vector goes in C (read where reads_c<E>
// says), n: its lanes inside the tile (may be > W).
template <class O, TileEpilogue E>
inline typename O::V epilogue_vector(const GemmTile& t, typename O::V y, const float* c, int r, int v, int n) {
  constexpr int W = O::kLanes;
  if constexpr (E == TileEpilogue::kGelu) {
    y = gelu_erf_f32<O>(y);
  } else if constexpr (E == TileEpilogue::kGeluLowp) {
    y = gelu_lowp_f32<O>(y);
  } else if constexpr (E == TileEpilogue::kScaleAdd) {
    static_assert(reads_c<E>(GemmTile{}));
    y = O::fmadd(O::load_first(t.scale + v * W, n), y, O::load_first(c, n));
  } else if constexpr (E == TileEpilogue::kSwiglu) {
    y = O::mul(silu_f32<O>(O::load_first(t.aux + r * t.ld_aux + v * W, n)), y);
  } else if constexpr (E == TileEpilogue::kAttentionRows) {
    if (reads_c<E>(t)) y = O::fmadd(O::load_first(c, n), O::set1(t.row_scale[r]), y);
    if (t.row_post != nullptr) y = O::mul(y, O::set1(t.row_post[r]));
  }
  return y;
}

// Bias, epilogue E and store of vector v of tile row r; n = lanes of the vector inside the tile (may be > W).
// t.c null (only with c_bf16, and for the epilogues that do not read C): the bf16 copy is the only output.
template <class O, TileEpilogue E>
inline void store_vector(const GemmTile& t, typename O::V y, int r, int v, int n) {
  constexpr int W = O::kLanes;
  float* c = t.c != nullptr ? t.c + r * t.ldc + v * W : nullptr;
  if (t.bias != nullptr) y = O::add(y, O::load(t.bias + v * W));
  y = epilogue_vector<O, E>(t, y, c, r, v, n);
  if (c == nullptr) {
  } else if (n >= W) {
    O::store(c, y);
  } else {
    O::store_first(c, y, n);
  }
  if (t.c_bf16 != nullptr) O::store_bf16_first(t.c_bf16 + r * t.ldc_bf16 + v * W, y, n);
}

template <class O, TileEpilogue E>
void store_tile_as(const GemmTile& t, const float* acc, int ld_acc) {
  constexpr int W = O::kLanes;
  for (int r = 0; r < t.rows; ++r) {
    for (int v = 0; v * W < t.cols; ++v) {
      store_vector<O, E>(t, O::load(acc + r * ld_acc + v * W), r, v, t.cols - v * W);
    }
  }
}

// acc: row r of the tile starts at acc + r * ld_acc, vector-aligned.
template <class O>
void store_tile(const GemmTile& t, const float* acc, int ld_acc) {
  with_epilogue(t.epilogue, [&](auto e) { store_tile_as<O, decltype(e)::value>(t, acc, ld_acc); });
}

// Stores a micro-kernel's MR x NV accumulator registers: short epilogues straight from the registers, the
// long ones after one pass through an L1 copy (the vector-math calls would otherwise spill them anyway).
// The register path unrolls both loops, so every acc[r][v] is a named register on the way out (a rolled loop
// indexes acc at run time, which puts the whole array on the stack first), and reads the tile's fields from
// a local copy, which the stores to C cannot alias: a micro-tile over a short K (attention's head_dim of 64)
// spent ~20% of its time in its store otherwise. kUnrolled: only the caller's full-height tile takes that
// path, the ragged heights (one tile per GEMM) the L1 copy; unrolled register stores for every height made
// the kernel files 5-7x slower to compile.
//
// A full-width tile (every vector whole: all but a GEMM's last panel when N is not a multiple of the tile
// width) has whether there is a bias, a float32 C and a bf16 copy settled once, as template arguments, and
// the bias vectors loaded once: the unrolled store is then the epilogue's arithmetic and the stores alone,
// where testing those per vector took about as many instructions as the reduced-precision GELU itself
// (measured: the stores ~8.6% of the bf16 micro-tile's samples in a forward).
template <class O, TileEpilogue E, int MR, int NV, bool kBias, bool kC, bool kBf16>
void store_full_tile(const GemmTile& tile, const typename O::V (&acc)[MR][NV]) {
  using V = typename O::V;
  constexpr int W = O::kLanes;
  V bias[NV];
  if constexpr (kBias) {
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) bias[v] = O::load(tile.bias + v * W);
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r) {
    V y[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) {
      float* c = kC ? tile.c + r * tile.ldc + v * W : nullptr;
      y[v] = acc[r][v];
      if constexpr (kBias) y[v] = O::add(y[v], bias[v]);
      y[v] = epilogue_vector<O, E>(tile, y[v], c, r, v, W);
      if constexpr (kC) O::store(c, y[v]);
    }
    if constexpr (kBf16) {
      // Vectors in twos: one conversion of both and one store where the ISA has it.
      uint16_t* dst = tile.c_bf16 + r * tile.ldc_bf16;
#pragma GCC unroll 4
      for (int v = 0; v + 1 < NV; v += 2) store_bf16_pair<O>(dst + v * W, y[v], y[v + 1]);
      if constexpr (NV % 2 != 0) O::store_bf16_first(dst + (NV - 1) * W, y[NV - 1], W);
    }
  }
}

template <class O, int MR, int NV, bool kUnrolled>
void store_accumulators(const GemmTile& t, const typename O::V (&acc)[MR][NV]) {
  constexpr int W = O::kLanes;
  with_epilogue(t.epilogue, [&](auto e) {
    constexpr TileEpilogue E = decltype(e)::value;
    if constexpr (kUnrolled && epilogue_in_registers(E)) {
      const GemmTile tile = t;
      if (tile.cols == NV * W && (tile.c != nullptr || tile.c_bf16 != nullptr)) {
        const int flags = (tile.bias != nullptr ? 4 : 0) | (tile.c != nullptr ? 2 : 0) | (tile.c_bf16 != nullptr ? 1 : 0);
        switch (flags) {
          case 1: return store_full_tile<O, E, MR, NV, false, false, true>(tile, acc);
          case 2: return store_full_tile<O, E, MR, NV, false, true, false>(tile, acc);
          case 3: return store_full_tile<O, E, MR, NV, false, true, true>(tile, acc);
          case 5: return store_full_tile<O, E, MR, NV, true, false, true>(tile, acc);
          case 6: return store_full_tile<O, E, MR, NV, true, true, false>(tile, acc);
          default: return store_full_tile<O, E, MR, NV, true, true, true>(tile, acc);
        }
      }
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) {
          if (v * W < tile.cols) store_vector<O, E>(tile, acc[r][v], r, v, tile.cols - v * W);
        }
    } else {
      alignas(64) float out[MR][NV * W];
#pragma GCC unroll 16
      for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) O::store(&out[r][v * W], acc[r][v]);
      store_tile_as<O, E>(t, &out[0][0], NV * W);
    }
  });
}

}  // namespace
}  // namespace dinov3::cpu
