// Flash-style attention on the GEMM micro-kernel. A task is (batch, head, query chunk). It applies RoPE to
// the head's keys once and packs K^T and V into weight-like panels; then, per query tile of `mr` rows and
// per key block, S = Q K^T goes to an L1-resident [mr, key block] buffer, the online-softmax step turns
// it into P (running max and sum per row), and O = O * rescale + P V accumulates straight into `out`
// (normalised by the row sums in the store of the last key block).
// The tokens x tokens score matrix never exists; with ViT-S at 256 px (261 tokens) one key block covers
// all keys, so the softmax is exact in one pass.
#include "backend/cpu/attention/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/gemm/packed_linear.h"

namespace dinov3::cpu {
namespace {

constexpr int64_t kMaxKeyBlock = 512;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct Layout {
  int64_t q_chunks = 1, chunk_rows = 0, key_block = 0;
  // Offsets (floats) of the per-thread regions, each a multiple of 16 floats (64 bytes).
  int64_t q = 0, k = 0, kt = 0, v = 0, s = 0, stats = 0, total = 0;
};

Layout plan(const CpuKernels& kernels, const AttentionShape& sh, int threads) {
  Layout l;
  const int64_t bh = sh.batch * sh.heads;
  // Few (batch, head) pairs for the threads: split queries too, at the cost of re-packing K and V.
  l.q_chunks = bh >= 2 * threads ? 1 : std::min<int64_t>((2 * threads + bh - 1) / bh, (sh.tokens + kernels.mr - 1) / kernels.mr);
  l.chunk_rows = round_up((sh.tokens + l.q_chunks - 1) / l.q_chunks, kernels.mr);
  l.key_block = std::min(round_up(sh.tokens, kernels.nr), round_up(kMaxKeyBlock, kernels.nr));
  const int64_t key_panels = (sh.tokens + kernels.nr - 1) / kernels.nr;
  const int64_t value_panels = (sh.head_dim + kernels.nr - 1) / kernels.nr;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t begin = at;
    at += round_up(n, 16);
    return begin;
  };
  l.q = take(l.chunk_rows * sh.head_dim);
  l.k = take(sh.tokens * sh.head_dim);
  l.kt = take(key_panels * sh.head_dim * kernels.nr);
  l.v = take(value_panels * sh.tokens * kernels.nr);
  l.s = take(kernels.mr * l.key_block);
  l.stats = take(4 * kernels.mr);
  l.total = at;
  return l;
}

// dst[t - t0, :] = RoPE(src[t, :]) * scale for t in [t0, t1): prefix tokens are only scaled.
void rope_queries_or_keys(const CpuKernels& kernels, const float* src, int64_t ld, int64_t t0, int64_t t1,
                          const AttentionShape& sh, const float* rope, float scale, float* dst) {
  const int64_t hd = sh.head_dim;
  const int64_t split = std::clamp(sh.prefix, t0, t1);
  if (split > t0) kernels.rope_rows(src + t0 * ld, ld, split - t0, nullptr, hd, scale, dst);
  if (t1 > split) {
    kernels.rope_rows(src + split * ld, ld, t1 - split, rope + (split - sh.prefix) * 2 * hd, hd, scale,
                      dst + (split - t0) * hd);
  }
}

}  // namespace

size_t attention_scratch_floats(const CpuKernels& kernels, const AttentionShape& shape, int threads) {
  return static_cast<size_t>(plan(kernels, shape, threads).total);
}

void attention(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const AttentionShape& sh,
               const float* qkv, const float* rope, float* out) {
  const Layout l = plan(kernels, sh, pool.size());
  const int64_t dim = sh.heads * sh.head_dim, hd = sh.head_dim, T = sh.tokens;
  const int mr = kernels.mr, nr = kernels.nr;
  const int64_t value_panels = (hd + nr - 1) / nr;
  // 1/sqrt(head_dim) and log2(e) are folded into q, so scores come out in base-2 units for the softmax.
  const float q_scale = 1.44269504f / std::sqrt(static_cast<float>(hd));

  pool.run(sh.batch * sh.heads * l.q_chunks, [&](int64_t task, int thread) {
    const int64_t chunk = task % l.q_chunks, bh = task / l.q_chunks;
    const int64_t b = bh / sh.heads, h = bh % sh.heads;
    const int64_t q0 = chunk * l.chunk_rows, q1 = std::min(T, q0 + l.chunk_rows);
    if (q0 >= q1) return;
    float* ws = scratch.get(thread);
    float* q = ws + l.q;
    float* k = ws + l.k;
    float* kt = ws + l.kt;
    float* v = ws + l.v;
    float* s = ws + l.s;
    float* row_max = ws + l.stats;
    float* row_sum = row_max + mr;
    float* rescale = row_sum + mr;
    float* inv_sum = rescale + mr;

    const float* base = qkv + b * T * 3 * dim + h * hd;
    rope_queries_or_keys(kernels, base, 3 * dim, q0, q1, sh, rope, q_scale, q);
    rope_queries_or_keys(kernels, base + dim, 3 * dim, 0, T, sh, rope, 1.0f, k);
    pack_transposed(k, hd, T, hd, nr, kt);
    pack_plain(base + 2 * dim, 3 * dim, T, hd, nr, v);

    GemmTile tile;
    for (int64_t i0 = q0; i0 < q1; i0 += mr) {
      const int rows = static_cast<int>(std::min<int64_t>(mr, q1 - i0));
      float* o = out + (b * T + i0) * dim + h * hd;
      std::fill(row_max, row_max + mr, -std::numeric_limits<float>::infinity());
      std::fill(row_sum, row_sum + mr, 0.0f);
      for (int64_t j0 = 0; j0 < T; j0 += l.key_block) {
        const int64_t keys = std::min(l.key_block, T - j0);
        // S = Q K^T for this key block, one key panel at a time.
        tile = GemmTile{};
        tile.a = q + (i0 - q0) * hd;
        tile.lda = hd;
        tile.k = hd;
        tile.ldc = l.key_block;
        tile.rows = rows;
        for (int64_t p = 0; p * nr < keys; ++p) {
          tile.b = kt + (j0 / nr + p) * hd * nr;
          tile.c = s + p * nr;
          tile.cols = static_cast<int>(std::min<int64_t>(nr, keys - p * nr));
          kernels.gemm_tile(tile);
        }
        kernels.softmax_block(s, l.key_block, rows, static_cast<int>(keys), row_max, row_sum, rescale);
        const bool last = j0 + keys >= T;
        if (last) {
          for (int r = 0; r < rows; ++r) inv_sum[r] = 1.0f / row_sum[r];
        }
        // O = O * rescale + P V, normalised by the row sums after the last key block.
        tile = GemmTile{};
        tile.a = s;
        tile.lda = l.key_block;
        tile.k = keys;
        tile.ldc = dim;
        tile.rows = rows;
        tile.epilogue = TileEpilogue::kAttentionRows;
        tile.row_scale = j0 == 0 ? nullptr : rescale;
        tile.row_post = last ? inv_sum : nullptr;
        for (int64_t p = 0; p < value_panels; ++p) {
          tile.b = v + (p * T + j0) * nr;
          tile.c = o + p * nr;
          tile.cols = static_cast<int>(std::min<int64_t>(nr, hd - p * nr));
          kernels.gemm_tile(tile);
        }
      }
    }
  });
}

}  // namespace dinov3::cpu
