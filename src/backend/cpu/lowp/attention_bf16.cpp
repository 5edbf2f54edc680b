#include "backend/cpu/lowp/attention_bf16.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/cpu/lowp/lowp_linear.h"

namespace dinov3::cpu::lowp {
namespace {

constexpr int64_t kMaxKeyBlock = 512;

int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

struct Layout {
  int64_t q_chunks = 1, chunk_rows = 0, key_block = 0, hd_pad = 0, t_pad = 0;
  // Offsets (floats) of the per-thread regions, each a multiple of 16 floats (64 bytes); bf16 regions
  // hold two values per float.
  int64_t q = 0, qb = 0, k = 0, kb = 0, vb = 0, kt = 0, v = 0, s = 0, pb = 0, stats = 0, total = 0;
};

Layout plan(const LowpKernels& lowp, const AttentionShape& sh, int threads) {
  Layout l;
  const int mr = lowp.bf16_mr;
  const int64_t bh = sh.batch * sh.heads;
  // Few (batch, head) pairs for the threads: split queries too, at the cost of re-packing K and V.
  l.q_chunks = bh >= 2 * threads ? 1 : std::min<int64_t>((2 * threads + bh - 1) / bh, (sh.tokens + mr - 1) / mr);
  l.chunk_rows = round_up((sh.tokens + l.q_chunks - 1) / l.q_chunks, mr);
  l.key_block = std::min(round_up(sh.tokens, kNr), round_up(kMaxKeyBlock, kNr));
  l.hd_pad = round_up(sh.head_dim, 2);
  l.t_pad = round_up(sh.tokens, 2);
  const int64_t key_panels = (sh.tokens + kNr - 1) / kNr;
  const int64_t value_panels = (sh.head_dim + kNr - 1) / kNr;
  int64_t at = 0;
  auto take = [&at](int64_t n) {
    const int64_t begin = at;
    at += round_up(n, 16);
    return begin;
  };
  l.q = take(l.chunk_rows * sh.head_dim);
  l.qb = take(l.chunk_rows * l.hd_pad / 2);
  l.k = take(sh.tokens * sh.head_dim);
  l.kb = take(sh.tokens * l.hd_pad / 2);
  l.vb = take((sh.tokens * sh.head_dim + 1) / 2);
  l.kt = take(key_panels * kNr * l.hd_pad / 2);
  l.v = take(value_panels * kNr * l.t_pad / 2);
  l.s = take(mr * l.key_block);
  l.pb = take(mr * l.key_block / 2);
  l.stats = take(4 * mr);
  l.total = at;
  return l;
}

// dst[t - t0, :] = RoPE(src[t, :]) * scale for t in [t0, t1): prefix tokens are only scaled.
void rope_rows_of(const CpuKernels& kernels, const float* src, int64_t ld, int64_t t0, int64_t t1,
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

size_t attention_bf16_scratch_floats(const LowpKernels& lowp, const AttentionShape& shape, int threads) {
  return static_cast<size_t>(plan(lowp, shape, threads).total);
}

void attention_bf16(const CpuKernels& kernels, const LowpKernels& lowp, ThreadPool& pool, ThreadScratch& scratch,
                    const AttentionShape& sh, const float* qkv, const float* rope, float* out) {
  const Layout l = plan(lowp, sh, pool.size());
  const int64_t dim = sh.heads * sh.head_dim, hd = sh.head_dim, T = sh.tokens;
  const int mr = lowp.bf16_mr;
  const int64_t value_panels = (hd + kNr - 1) / kNr;
  // 1/sqrt(head_dim) and log2(e) are folded into q, so scores come out in base-2 units for the softmax.
  const float q_scale = 1.44269504f / std::sqrt(static_cast<float>(hd));

  pool.run(sh.batch * sh.heads * l.q_chunks, [&](int64_t task, int thread) {
    const int64_t chunk = task % l.q_chunks, bh = task / l.q_chunks;
    const int64_t b = bh / sh.heads, h = bh % sh.heads;
    const int64_t q0 = chunk * l.chunk_rows, q1 = std::min(T, q0 + l.chunk_rows);
    if (q0 >= q1) return;
    float* ws = scratch.get(thread);
    float* q = ws + l.q;
    auto* qb = reinterpret_cast<uint16_t*>(ws + l.qb);
    float* k = ws + l.k;
    auto* kb = reinterpret_cast<uint16_t*>(ws + l.kb);
    auto* vb = reinterpret_cast<uint16_t*>(ws + l.vb);
    auto* kt = reinterpret_cast<uint16_t*>(ws + l.kt);
    auto* v = reinterpret_cast<uint16_t*>(ws + l.v);
    float* s = ws + l.s;
    auto* pb = reinterpret_cast<uint16_t*>(ws + l.pb);
    float* row_max = ws + l.stats;
    float* row_sum = row_max + mr;
    float* rescale = row_sum + mr;
    float* inv_sum = rescale + mr;

    const float* base = qkv + b * T * 3 * dim + h * hd;
    rope_rows_of(kernels, base, 3 * dim, q0, q1, sh, rope, q_scale, q);
    lowp.to_bf16_rows(q, hd, q1 - q0, hd, l.hd_pad, qb);
    rope_rows_of(kernels, base + dim, 3 * dim, 0, T, sh, rope, 1.0f, k);
    // Rows go to bf16 with the vector kernel first; the packing then only moves 16- and 32-bit words.
    lowp.to_bf16_rows(k, hd, T, hd, l.hd_pad, kb);
    pack_bf16_rows_transposed(kb, l.hd_pad, T, l.hd_pad, kt);
    lowp.to_bf16_rows(base + 2 * dim, 3 * dim, T, hd, hd, vb);
    pack_bf16_rows_plain(vb, hd, T, hd, l.t_pad, v);

    for (int64_t i0 = q0; i0 < q1; i0 += mr) {
      const int rows = static_cast<int>(std::min<int64_t>(mr, q1 - i0));
      float* o = out + (b * T + i0) * dim + h * hd;
      std::fill(row_max, row_max + mr, -std::numeric_limits<float>::infinity());
      std::fill(row_sum, row_sum + mr, 0.0f);
      for (int64_t j0 = 0; j0 < T; j0 += l.key_block) {
        const int64_t keys = std::min(l.key_block, T - j0);
        const int64_t keys_pad = round_up(keys, 2);
        // S = Q K^T for this key block, one key panel at a time.
        LowpTile t;
        t.a = reinterpret_cast<const uint8_t*>(qb + (i0 - q0) * l.hd_pad);
        t.lda = l.hd_pad * 2;
        t.k_groups = l.hd_pad / 2;
        t.out.ldc = l.key_block;
        t.out.rows = rows;
        for (int64_t p = 0; p * kNr < keys; ++p) {
          t.b = reinterpret_cast<const uint8_t*>(kt + (j0 / kNr + p) * kNr * l.hd_pad);
          t.out.c = s + p * kNr;
          t.out.cols = static_cast<int>(std::min<int64_t>(kNr, keys - p * kNr));
          lowp.gemm_bf16_tile(t);
        }
        kernels.softmax_block(s, l.key_block, rows, static_cast<int>(keys), row_max, row_sum, rescale);
        const bool last = j0 + keys >= T;
        if (last) {
          for (int r = 0; r < rows; ++r) inv_sum[r] = 1.0f / row_sum[r];
        }
        lowp.to_bf16_rows(s, l.key_block, rows, keys, keys_pad, pb);
        // O = O * rescale + P V, normalised by the row sums after the last key block.
        t = LowpTile{};
        t.a = reinterpret_cast<const uint8_t*>(pb);
        t.lda = keys_pad * 2;
        t.k_groups = keys_pad / 2;
        t.out.ldc = dim;
        t.out.rows = rows;
        t.out.epilogue = TileEpilogue::kAttentionRows;
        t.out.row_scale = j0 == 0 ? nullptr : rescale;
        t.out.row_post = last ? inv_sum : nullptr;
        for (int64_t p = 0; p < value_panels; ++p) {
          t.b = reinterpret_cast<const uint8_t*>(v + (p * l.t_pad + j0) * kNr);
          t.out.c = o + p * kNr;
          t.out.cols = static_cast<int>(std::min<int64_t>(kNr, hd - p * kNr));
          lowp.gemm_bf16_tile(t);
        }
      }
    }
  });
}

}  // namespace dinov3::cpu::lowp
