// Float32 attention: the shared flash driver (attention_driver.h) with Q K^T and P V on the float32 GEMM
// micro-tile. K^T and V are packed into weight-like panels once per (batch, head, query chunk).
#include "backend/cpu/attention/attention.h"

#include "backend/cpu/attention/attention_driver.h"
#include "backend/cpu/gemm/packed_linear.h"

namespace dinov3::cpu {
namespace {

struct Fp32Operands {
  const CpuKernels& kernels;

  int mr() const { return kernels.mr; }
  int nr() const { return kernels.nr; }
  int64_t key_panels(const AttentionShape& sh) const { return (sh.tokens + nr() - 1) / nr(); }
  int64_t value_panels(const AttentionShape& sh) const { return (sh.head_dim + nr() - 1) / nr(); }
  int64_t kt_floats(const AttentionShape& sh) const { return round_up(key_panels(sh) * sh.head_dim * nr(), 16); }

  int64_t scratch_floats(const AttentionSplit&, const AttentionShape& sh) const {
    return kt_floats(sh) + round_up(value_panels(sh) * sh.tokens * nr(), 16);
  }

  static constexpr bool kRopeInBf16 = false;
  Bf16Targets bf16_targets(float*, const AttentionSplit&, const AttentionShape&) const { return {}; }

  void load_head(float* ws, const AttentionSplit&, const AttentionShape& sh, const float*, int64_t, const float* k,
                 const float* v, const uint16_t*, int64_t ld_v) const {
    pack_transposed(k, sh.head_dim, sh.tokens, sh.head_dim, nr(), ws);
    pack_plain(v, ld_v, sh.tokens, sh.head_dim, nr(), ws + kt_floats(sh));
  }

  void scores(float* ws, const AttentionSplit& split, const AttentionShape& sh, const float* q, int64_t q_row,
              int rows, int64_t j0, int64_t keys, float* s) const {
    const int64_t hd = sh.head_dim;
    GemmTile tile;
    tile.a = q + q_row * hd;
    tile.lda = hd;
    tile.k = hd;
    tile.ldc = split.key_block;
    tile.rows = rows;
    for (int64_t p = 0; p * nr() < keys; ++p) {
      tile.b = ws + (j0 / nr() + p) * hd * nr();
      tile.c = s + p * nr();
      tile.cols = static_cast<int>(std::min<int64_t>(nr(), keys - p * nr()));
      kernels.gemm_tile(tile);
    }
  }

  void accumulate(float* ws, const AttentionSplit& split, const AttentionShape& sh, const float* p, int rows,
                  int64_t j0, int64_t keys, const GemmTile& epilogue) const {
    const float* v = ws + kt_floats(sh);
    GemmTile tile = epilogue;
    tile.a = p;
    tile.lda = split.key_block;
    tile.k = keys;
    tile.rows = rows;
    for (int64_t vp = 0; vp < value_panels(sh); ++vp) {
      tile.b = v + (vp * sh.tokens + j0) * nr();
      tile.c = epilogue.c + vp * nr();
      if (epilogue.c_bf16 != nullptr) tile.c_bf16 = epilogue.c_bf16 + vp * nr();
      tile.cols = static_cast<int>(std::min<int64_t>(nr(), sh.head_dim - vp * nr()));
      kernels.gemm_tile(tile);
    }
  }
};

}  // namespace

size_t attention_scratch_floats(const CpuKernels& kernels, const AttentionShape& shape, int threads) {
  return flash_attention_scratch_floats(Fp32Operands{kernels}, shape, threads);
}

void attention(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const AttentionShape& sh,
               const float* qkv, const float* rope, float* out) {
  flash_attention(kernels, Fp32Operands{kernels}, pool, scratch, sh, qkv, nullptr, 0, rope, out);
}

}  // namespace dinov3::cpu
