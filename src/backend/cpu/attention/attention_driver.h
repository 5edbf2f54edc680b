// The flash-attention driver shared by the float32 and bf16 paths. A task is (batch, head, query chunk).
// It applies RoPE to the head's queries and keys and packs Q, K^T and V for the operand type once; then,
// per group of query tiles (`mr` rows each) and per key block, each tile's S = Q K^T goes to an
// L1-resident [mr, key block] buffer, the online-softmax step turns it into P (running max and sum per
// row), and O = O * rescale + P V accumulates straight into `out` (normalised by the row sums in the store
// of the last key block). The tokens x tokens score matrix never exists: per thread there is one
// [mr, key block] tile of scores. With ViT-S at 256 px (261 tokens) one key block covers all keys, so the
// softmax is exact in one pass.
//
// Why groups: at high resolution one head's packed K^T and V outgrow L2 (4101 tokens at 1024 px: 2 MiB
// in float32), and a loop of every tile over every key would stream them from L3 once per 14 query rows.
// Looping the tiles of a group inside each key block reads a key block (2 x 512 x 64 floats) from L3
// once per group and from L2 for the group's other tiles. The order of the operations on each row is
// unchanged, so the results are bitwise those of the tile-by-tile loop.
//
// An Operands type supplies what depends on the element type of the matrix products:
//   int mr() const, int nr() const                 the micro-tile shape
//   int64_t scratch_floats(const AttentionSplit&, const AttentionShape&) const
//                                                   its own per-thread regions (Q, K^T, V, ...)
//   static constexpr bool kRopeInBf16               whether RoPE writes Q and K as bf16 rows (then the driver
//                                                   keeps no float32 q and k rows)
//   Bf16Targets bf16_targets(float* ws, const AttentionSplit&, const AttentionShape&) const
//                                                   where: the bf16 rows, or all null (float32 q and k rows,
//                                                   P in place of S); a null p alone keeps P in place of S
//   void load_head(float* ws, const AttentionSplit&, const AttentionShape&, const float* q, int64_t q_rows,
//                  const float* k, const float* v, const uint16_t* v_bf16, int64_t ld_v) const
//                                                   packs RoPE'd, scaled Q rows and K rows ([*, head_dim]; or
//                                                   those bf16_targets received) and the V rows (row stride
//                                                   ld_v; in bf16 at v_bf16 when the qkv rows come in bf16,
//                                                   which only operands with kRopeInBf16 take) of one head
//   void scores(float* ws, const AttentionSplit&, const AttentionShape&, const float* q, int64_t q_row,
//               int rows, int64_t j0, int64_t keys, float* s) const
//                                                   s[rows, keys] (row stride key_block) = Q K^T for query
//                                                   rows [q_row, q_row + rows) of the chunk (q: its float rows)
//   void accumulate(float* ws, const AttentionSplit&, const AttentionShape&, const float* p, int rows,
//                   int64_t j0, int64_t keys, const GemmTile& epilogue) const
//                                                   O (epilogue.c, .ldc, .row_scale, .row_post) += P V (P: p,
//                                                   or the bf16 rows the softmax wrote to bf16_targets' p)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "backend/cpu/attention/attention.h"

namespace dinov3::cpu {

// Where RoPE writes Q and K in bf16 for operands that take them so (their own scratch regions, rows of `ld`
// elements), instead of the float32 q and k rows, and where the softmax writes P in bf16 (rows of ld_p
// elements, at least the key block's) instead of over S; all null for float32 operands.
struct Bf16Targets {
  uint16_t* q = nullptr;
  uint16_t* k = nullptr;
  int64_t ld = 0;
  uint16_t* p = nullptr;
  int64_t ld_p = 0;
};

struct AttentionSplit {
  int64_t q_chunks = 1, chunk_rows = 0, key_block = 0;
  int64_t group_tiles = 1;  // query tiles that share a pass over the key blocks
};

inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

inline AttentionSplit split_attention(const AttentionShape& sh, int mr, int nr, int threads) {
  constexpr int64_t kMaxKeyBlock = 512;
  // 8 tiles of 14 rows: a 512-key block of K^T and V (256 KiB in float32) is read once per 112 query rows.
  constexpr int64_t kGroupTiles = 8;
  AttentionSplit s;
  const int64_t bh = sh.batch * sh.heads;
  // Few (batch, head) pairs for the threads: split queries too, at the cost of re-packing K and V.
  s.q_chunks = bh >= 2 * threads ? 1 : std::min<int64_t>((2 * threads + bh - 1) / bh, (sh.tokens + mr - 1) / mr);
  s.chunk_rows = round_up((sh.tokens + s.q_chunks - 1) / s.q_chunks, mr);
  s.key_block = std::min(round_up(sh.tokens, nr), round_up(kMaxKeyBlock, nr));
  s.group_tiles = std::min<int64_t>(kGroupTiles, (s.chunk_rows + mr - 1) / mr);
  return s;
}

// dst[t - t0, :] = RoPE(src[t, :]) * scale for t in [t0, t1): prefix tokens are only scaled. With src_bf16
// the rows are read there in bf16 instead (src unused); with dst_bf16 they go there in bf16 instead (row
// stride ld_bf16).
inline void rope_token_rows(const CpuKernels& kernels, const float* src, const uint16_t* src_bf16, int64_t ld,
                            int64_t t0, int64_t t1, const AttentionShape& sh, const float* rope, float scale,
                            float* dst, uint16_t* dst_bf16, int64_t ld_bf16) {
  const int64_t hd = sh.head_dim;
  const int64_t split = std::clamp(sh.prefix, t0, t1);
  auto from = [&](int64_t t) { return src_bf16 != nullptr ? src_bf16 + t * ld : nullptr; };
  auto from_f32 = [&](int64_t t) { return src_bf16 == nullptr ? src + t * ld : nullptr; };
  if (split > t0) {
    kernels.rope_rows(from_f32(t0), from(t0), ld, split - t0, nullptr, hd, scale, dst, dst_bf16, ld_bf16);
  }
  if (t1 > split) {
    const int64_t r = split - t0;
    kernels.rope_rows(from_f32(split), from(split), ld, t1 - split, rope + (split - sh.prefix) * 2 * hd, hd, scale,
                      dst + r * hd, dst_bf16 != nullptr ? dst_bf16 + r * ld_bf16 : nullptr, ld_bf16);
  }
}

// Offsets (floats) of a thread's scratch regions, each a multiple of 16 floats: the RoPE'd q and k rows in
// float32 (empty when the operands take them in bf16), the operands' packed forms, S ([mr, key block]) and
// the row statistics (running max and sum for every row of a group, rescale and 1/sum for one tile).
struct AttentionScratch {
  int64_t q = 0, k = 0, ops = 0, s = 0, stats = 0, total = 0;
};

template <class Operands>
AttentionScratch attention_scratch(const Operands& ops, const AttentionSplit& split, const AttentionShape& sh) {
  AttentionScratch l;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t begin = at;
    at += round_up(n, 16);
    return begin;
  };
  l.q = take(Operands::kRopeInBf16 ? 0 : split.chunk_rows * sh.head_dim);
  l.k = take(Operands::kRopeInBf16 ? 0 : sh.tokens * sh.head_dim);
  l.ops = take(ops.scratch_floats(split, sh));
  l.s = take(ops.mr() * split.key_block);
  l.stats = take((2 * split.group_tiles + 2) * ops.mr());
  l.total = at;
  return l;
}

template <class Operands>
size_t flash_attention_scratch_floats(const Operands& ops, const AttentionShape& sh, int threads) {
  return static_cast<size_t>(attention_scratch(ops, split_attention(sh, ops.mr(), ops.nr(), threads), sh).total);
}

// qkv_bf16 (optional, operands with kRopeInBf16 only): the qkv rows in bf16, ld_qkv_bf16 apart, read instead
// of qkv. out_bf16 (optional, row stride ld_bf16): the last key block's store also writes the output in bf16,
// and with bf16_only, when there is one key block (so `out` accumulates nothing), only in bf16. Returns
// whether the float32 output was skipped.
template <class Operands>
bool flash_attention(const CpuKernels& kernels, const Operands& ops, ThreadPool& pool, ThreadScratch& scratch,
                     const AttentionShape& sh, const float* qkv, const uint16_t* qkv_bf16, int64_t ld_qkv_bf16,
                     const float* rope, float* out, uint16_t* out_bf16 = nullptr, int64_t ld_bf16 = 0,
                     bool bf16_only = false) {
  const AttentionSplit split = split_attention(sh, ops.mr(), ops.nr(), pool.size());
  const bool skip_out = bf16_only && out_bf16 != nullptr && split.key_block >= sh.tokens;
  const int64_t dim = sh.heads * sh.head_dim, hd = sh.head_dim, T = sh.tokens;
  const int mr = ops.mr();
  const AttentionScratch l = attention_scratch(ops, split, sh);
  // 1/sqrt(head_dim) and log2(e) are folded into q, so scores come out in base-2 units for the softmax.
  const float q_scale = 1.44269504f / std::sqrt(static_cast<float>(hd));

  pool.run(sh.batch * sh.heads * split.q_chunks, [&](int64_t task, int thread) {
    const int64_t chunk = task % split.q_chunks, bh = task / split.q_chunks;
    const int64_t b = bh / sh.heads, h = bh % sh.heads;
    const int64_t q0 = chunk * split.chunk_rows, q1 = std::min(T, q0 + split.chunk_rows);
    if (q0 >= q1) return;
    float* scratch_base = scratch.get(thread);
    float* q = scratch_base + l.q;
    float* k = scratch_base + l.k;
    float* ws = scratch_base + l.ops;  // the operands' regions
    float* s = scratch_base + l.s;
    const int64_t group_rows = split.group_tiles * mr;
    float* group_max = scratch_base + l.stats;  // [group_rows]
    float* group_sum = group_max + group_rows;  // [group_rows]
    float* rescale = group_sum + group_rows;    // [mr]
    float* inv_sum = rescale + mr;              // [mr]

    // The head's q columns of the image's first row; the row stride of the qkv rows, in their element type.
    const int64_t ld = qkv_bf16 != nullptr ? ld_qkv_bf16 : 3 * dim;
    const float* base = qkv_bf16 == nullptr ? qkv + b * T * ld + h * hd : nullptr;
    const uint16_t* base_bf16 = qkv_bf16 != nullptr ? qkv_bf16 + b * T * ld + h * hd : nullptr;
    auto offset = [](auto* p, int64_t n) { return p != nullptr ? p + n : nullptr; };
    const Bf16Targets bf16 = ops.bf16_targets(ws, split, sh);
    rope_token_rows(kernels, base, base_bf16, ld, q0, q1, sh, rope, q_scale, q, bf16.q, bf16.ld);
    rope_token_rows(kernels, offset(base, dim), offset(base_bf16, dim), ld, 0, T, sh, rope, 1.0f, k, bf16.k, bf16.ld);
    ops.load_head(ws, split, sh, q, q1 - q0, k, offset(base, 2 * dim), offset(base_bf16, 2 * dim), ld);

    for (int64_t g0 = q0; g0 < q1; g0 += group_rows) {
      const int64_t g1 = std::min(q1, g0 + group_rows);
      std::fill(group_max, group_max + group_rows, -std::numeric_limits<float>::infinity());
      std::fill(group_sum, group_sum + group_rows, 0.0f);
      for (int64_t j0 = 0; j0 < T; j0 += split.key_block) {
        const int64_t keys = std::min(split.key_block, T - j0);
        const bool last = j0 + keys >= T;
        for (int64_t i0 = g0; i0 < g1; i0 += mr) {
          const int rows = static_cast<int>(std::min<int64_t>(mr, g1 - i0));
          float* row_max = group_max + (i0 - g0);
          float* row_sum = group_sum + (i0 - g0);
          ops.scores(ws, split, sh, q, i0 - q0, rows, j0, keys, s);
          kernels.softmax_block(s, split.key_block, rows, static_cast<int>(keys), row_max, row_sum, rescale, bf16.p,
                                bf16.ld_p);
          if (last) {
            for (int r = 0; r < rows; ++r) inv_sum[r] = 1.0f / row_sum[r];
          }
          // O = O * rescale + P V, normalised by the row sums after the last key block.
          GemmTile o;
          o.c = skip_out ? nullptr : out + (b * T + i0) * dim + h * hd;
          o.ldc = dim;
          o.rows = rows;
          o.epilogue = TileEpilogue::kAttentionRows;
          o.row_scale = j0 == 0 ? nullptr : rescale;
          o.row_post = last ? inv_sum : nullptr;
          if (last && out_bf16 != nullptr) {
            o.c_bf16 = out_bf16 + (b * T + i0) * ld_bf16 + h * hd;
            o.ldc_bf16 = ld_bf16;
          }
          ops.accumulate(ws, split, sh, s, rows, j0, keys, o);
        }
      }
    }
  });
  return skip_out;
}

}  // namespace dinov3::cpu
