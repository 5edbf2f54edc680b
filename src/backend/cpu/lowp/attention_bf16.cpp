// bf16 attention: the shared flash driver (attention/attention_driver.h) with Q K^T and P V on the bf16
// micro-tile. RoPE writes Q and K rows in bf16 (K^T's packing then only moves 32-bit words); V goes to its
// panels of key pairs in one pass (bf16_pairs, or to_bf16_pairs from float32); the softmax writes P in bf16
// rows, which P V reads as they are.
#include "backend/cpu/lowp/attention_bf16.h"

#include "backend/cpu/attention/attention_driver.h"
#include "backend/cpu/lowp/lowp_linear.h"

namespace dinov3::cpu::lowp {
namespace {

struct Bf16Operands {
  const LowpKernels& lowp;

  // Offsets (floats) of the regions, each a multiple of 16 floats; bf16 regions hold two values per float.
  struct Layout {
    int64_t hd_pad = 0, t_pad = 0;
    int64_t qb = 0, kb = 0, kt = 0, v = 0, pb = 0, total = 0;
  };

  int mr() const { return lowp.bf16_mr; }
  int nr() const { return kNr; }

  Layout layout(const AttentionSplit& split, const AttentionShape& sh) const {
    Layout l;
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
    l.qb = take(split.chunk_rows * l.hd_pad / 2);
    l.kb = take(sh.tokens * l.hd_pad / 2);
    l.kt = take(key_panels * kNr * l.hd_pad / 2);
    l.v = take(value_panels * kNr * l.t_pad / 2);
    l.pb = take(mr() * split.key_block / 2);
    l.total = at;
    return l;
  }

  static uint16_t* region(float* ws, int64_t offset) { return reinterpret_cast<uint16_t*>(ws + offset); }

  int64_t scratch_floats(const AttentionSplit& split, const AttentionShape& sh) const {
    return layout(split, sh).total;
  }

  // RoPE writes Q and K straight into their bf16 rows, and the softmax P into its bf16 rows (a key block
  // apart: even, so any block's keys rounded up to a pair fit).
  static constexpr bool kRopeInBf16 = true;
  Bf16Targets bf16_targets(float* ws, const AttentionSplit& split, const AttentionShape& sh) const {
    const Layout l = layout(split, sh);
    return {region(ws, l.qb), region(ws, l.kb), l.hd_pad, region(ws, l.pb), split.key_block};
  }

  void load_head(float* ws, const AttentionSplit& split, const AttentionShape& sh, const float*, int64_t q_rows,
                 const float*, const float* v, const uint16_t* v_bf16, int64_t ld_v) const {
    const Layout l = layout(split, sh);
    const int64_t hd = sh.head_dim, T = sh.tokens;
    if (l.hd_pad > hd) {  // an odd head_dim: the pair padding of each Q and K row (RoPE wrote the rest)
      for (int64_t r = 0; r < q_rows; ++r) region(ws, l.qb)[r * l.hd_pad + hd] = 0;
      for (int64_t r = 0; r < T; ++r) region(ws, l.kb)[r * l.hd_pad + hd] = 0;
    }
    lowp.bf16_rows_transposed(region(ws, l.kb), l.hd_pad, T, l.hd_pad, region(ws, l.kt));
    if (v_bf16 != nullptr) {
      lowp.bf16_pairs(v_bf16, ld_v, T, hd, l.t_pad, region(ws, l.v));
    } else {
      lowp.to_bf16_pairs(v, ld_v, T, hd, l.t_pad, region(ws, l.v));
    }
  }

  void scores(float* ws, const AttentionSplit& split, const AttentionShape& sh, const float*, int64_t q_row,
              int rows, int64_t j0, int64_t keys, float* s) const {
    const Layout l = layout(split, sh);
    LowpTile t;
    t.a = reinterpret_cast<const uint8_t*>(region(ws, l.qb) + q_row * l.hd_pad);
    t.lda = l.hd_pad * 2;
    t.k_groups = l.hd_pad / 2;
    t.out.ldc = split.key_block;
    t.out.rows = rows;
    for (int64_t p = 0; p * kNr < keys; ++p) {
      t.b = reinterpret_cast<const uint8_t*>(region(ws, l.kt) + (j0 / kNr + p) * kNr * l.hd_pad);
      t.out.c = s + p * kNr;
      t.out.cols = static_cast<int>(std::min<int64_t>(kNr, keys - p * kNr));
      lowp.gemm_bf16_tile(t);
    }
  }

  void accumulate(float* ws, const AttentionSplit& split, const AttentionShape& sh, const float*, int rows, int64_t j0,
                  int64_t keys, const GemmTile& epilogue) const {
    const Layout l = layout(split, sh);
    const int64_t keys_pad = round_up(keys, 2);
    uint16_t* pb = region(ws, l.pb);  // P in bf16, as the softmax wrote it (bf16_targets)
    for (int r = 0; r < rows && keys_pad > keys; ++r) pb[r * split.key_block + keys] = 0;  // the pair's padding
    LowpTile t;
    t.a = reinterpret_cast<const uint8_t*>(pb);
    t.lda = split.key_block * 2;
    t.k_groups = keys_pad / 2;
    t.out = epilogue;
    for (int64_t vp = 0; vp * kNr < sh.head_dim; ++vp) {
      t.b = reinterpret_cast<const uint8_t*>(region(ws, l.v) + (vp * l.t_pad + j0) * kNr);
      t.out.c = epilogue.c != nullptr ? epilogue.c + vp * kNr : nullptr;  // null: the bf16 copy only
      if (epilogue.c_bf16 != nullptr) t.out.c_bf16 = epilogue.c_bf16 + vp * kNr;
      t.out.cols = static_cast<int>(std::min<int64_t>(kNr, sh.head_dim - vp * kNr));
      lowp.gemm_bf16_tile(t);
    }
  }
};

}  // namespace

size_t attention_bf16_scratch_floats(const LowpKernels& lowp, const AttentionShape& shape, int threads) {
  return flash_attention_scratch_floats(Bf16Operands{lowp}, shape, threads);
}

bool attention_bf16(const CpuKernels& kernels, const LowpKernels& lowp, ThreadPool& pool, ThreadScratch& scratch,
                    const AttentionShape& shape, const float* qkv, const uint16_t* qkv_bf16, int64_t ld_qkv_bf16,
                    const float* rope, float* out, uint16_t* out_bf16, int64_t ld_bf16, bool bf16_only) {
  return flash_attention(kernels, Bf16Operands{lowp}, pool, scratch, shape, qkv, qkv_bf16, ld_qkv_bf16, rope, out,
                         out_bf16, ld_bf16, bf16_only);
}

}  // namespace dinov3::cpu::lowp
