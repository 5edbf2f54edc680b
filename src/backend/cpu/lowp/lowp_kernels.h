// The reduced-precision kernel set of the CPU backend: operand preparation (activations to bf16, or to
// shifted int8 with one scale per row) and the GEMM micro-tiles that consume it. Like kernels.h, the
// drivers are baseline x86-64 and reach ISA-specific code only through a LowpKernels table picked at run
// time, so no instruction beyond what the CPU has ever runs.
//
// int8 activations, per row (token): the row's outlier channels (|x| > kOutlierRms x the row's RMS, at most
// kMaxOutliers, the largest first) are taken out and kept exact in float32; the rest (outliers set to 0) is
// quantised asymmetrically over [min(lo, 0), max(hi, 0)] to u = round(x / s) + z in [0, 255], with scale s
// and integer zero point z (so 0 is exact). vpdpbusd multiplies these unsigned bytes by the signed int8
// weights q (W[n][k] ~ col_scale[n] * q[n][k]), and
//   sum_k x[k] W[n][k] ~ col_scale[n] * s * (sum_k u[k] q[n][k] - z * col_sum[n])
//                        + sum_{outliers o} x[o] * channel_scale[o] * channel_q[o][n],
// col_sum the per-column sum of q (integer: exact). The outliers' weights come from a second int8 copy of W
// quantised per *input* channel, so a channel with small weights (the usual partner of a large activation
// channel) keeps 8 bits of its own instead of rounding to the few levels the output channel's scale leaves it.
#pragma once

#include <cstdint>

#include "backend/cpu/kernels.h"

namespace dinov3::cpu::lowp {

// One micro-tile: C[rows, cols] (op)= A[rows, k_pad] · panel + bias with GemmTile's epilogues (`out`
// carries c, ldc, rows, cols, bias, epilogue, scale, aux; its a/b/k are unused).
// Rows with more outliers keep only the largest. kOutlierRms = 6: a Gaussian row passes it with probability
// ~2e-9 per value.
inline constexpr int kMaxOutliers = 8;
inline constexpr float kOutlierRms = 6.0f;

// int8 rows as the conversion leaves them (row r of each array belongs to activation row r).
struct U8Rows {
  uint8_t* data = nullptr;         // [rows, k_pad] quantised values u
  float* scale = nullptr;          // [rows] s
  int32_t* zero = nullptr;         // [rows] z
  int32_t* outliers = nullptr;     // [rows] how many outliers the row has
  int32_t* outlier_index = nullptr;  // [rows, kMaxOutliers] their channels, ascending
  float* outlier_value = nullptr;    // [rows, kMaxOutliers] their values
};

struct LowpTile {
  GemmTile out;
  const uint8_t* a = nullptr;  // bf16: uint16 pairs; int8: shifted u8 quads; rows of lda bytes
  int64_t lda = 0;
  const uint8_t* b = nullptr;  // one packed panel (lowp_linear.h)
  int64_t k_groups = 0;        // k_pad / k_group
  // int8 only: the tile's rows (U8Rows, advanced to the tile's first row) ...
  const float* row_scale = nullptr;
  const int32_t* row_zero = nullptr;
  const int32_t* outliers = nullptr;
  const int32_t* outlier_index = nullptr;
  const float* outlier_value = nullptr;
  // ... and the panel's weights: per column scale and sum of q (32 values each), and the per-input-channel
  // copy: channel_q + k * ld_channel_q holds the panel's 32 columns of input channel k.
  const float* col_scale = nullptr;
  const int32_t* col_sum = nullptr;
  const int8_t* channel_q = nullptr;
  int64_t ld_channel_q = 0;
  const float* channel_scale = nullptr;  // [in]
};

struct LowpKernels {
  const char* bf16_name;  // which bf16 dot product: "avx512bf16", "avx512f-emulated", "avx2-emulated",
                          // "scalar-emulated"
  const char* int8_name;  // "avx512vnni", "avx512bw-emulated", "avx2", "scalar"
  // What a user should know when the precision runs on a slower stand-in (the backend's notes()); null
  // where it runs on its fast tile.
  const char* bf16_note;
  const char* int8_note;
  int bf16_mr, int8_mr;   // rows per micro-tile
  // dst[r, :k_pad] = bf16(x[r, :k]), zero past k. dst rows are k_pad uint16 apart.
  void (*to_bf16_rows)(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
  // x[rows, cols] (row stride ldx) in bf16 as GEMM panels with K = the rows (pack_bf16_rows_plain's layout,
  // lowp_linear.h): per panel of 32 columns and pair of rows (r, r + 1), 32 words (row r low, r + 1 high);
  // zero past `rows` (up to rows_pad, even) and past `cols`.
  void (*to_bf16_pairs)(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
  // The same panels from values already in bf16: x[rows, cols] bf16 (row stride ldx).
  void (*bf16_pairs)(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
  // pack_bf16_rows_transposed (lowp_linear.h): bf16 rows m[rows, k_pad] (row stride ld) as GEMM panels with
  // K = their columns (attention's K^T).
  void (*bf16_rows_transposed)(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst);
  // Rows [0, rows) of x into dst's rows [0, rows) as described above; u = z past k. dst.data rows are k_pad
  // bytes apart. Both implementations give the same bits.
  void (*to_u8_rows)(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst);
  void (*gemm_bf16_tile)(const LowpTile& t);
  void (*gemm_u8s8_tile)(const LowpTile& t);
};

// isa: the widest kernels that may run (AVX-512F, AVX2 + FMA, or the portable ones); use_bf16_instructions /
// use_vnni: whether the AVX512_BF16 / AVX512_VNNI tiles may be used with AVX-512 (the backend clears them
// when the CPU lacks them or DINOV3_CPU_NO_BF16 / DINOV3_CPU_NO_VNNI asks). Every emulated bf16 tile gives
// the native one's dot products bit for bit, and every int8 tile vpdpbusd's int32 sums.
const LowpKernels& select_lowp_kernels(Isa isa, bool use_bf16_instructions, bool use_vnni);
// Whether `k` is the set with AVX512_BF16's instructions (select_lowp_kernels chose them).
bool uses_bf16_instructions(const LowpKernels& k);

// The per-ISA entry points (files compiled with matching -m flags).
void to_bf16_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_bf16_pairs_avx512(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void to_bf16_pairs_scalar(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void bf16_pairs_avx512(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void bf16_pairs_scalar(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void bf16_rows_transposed_avx512(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst);
void to_u8_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst);
void gemm_bf16_12x32_avx512_emulated(const LowpTile& t);
void gemm_bf16_14x32_avx512bf16(const LowpTile& t);
void to_bf16_rows_avx512bf16(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_bf16_pairs_avx512bf16(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad,
                              uint16_t* dst);
void gemm_u8s8_14x32_avx512vnni(const LowpTile& t);
void gemm_u8s8_12x32_avx512bw(const LowpTile& t);
void to_bf16_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_bf16_rows_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_bf16_pairs_avx2(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void bf16_pairs_avx2(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst);
void bf16_rows_transposed_avx2(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst);
void gemm_bf16_5x32_avx2_emulated(const LowpTile& t);
void gemm_u8s8_4x32_avx2(const LowpTile& t);
void to_u8_rows_avx2(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst);
void to_u8_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, const U8Rows& dst);

// Shared by both conversions (baseline code). A row's sum of squares is accumulated as 16 lanes of fused
// multiply-adds (lane i takes values i, i + 16, ...), the lanes then added in order.
//
// outlier_bar(rest, n): kOutlierRms x the RMS of n values whose squares sum to `rest`. A row has outliers
// when its largest |x| exceeds outlier_bar(sum of squares, k). From the largest down, a value is an outlier
// while it exceeds the bar of the values not yet taken out. The search looks only at values above a floor,
// half the current bar, through TopMagnitudes; when the outliers it found lower the bar, it looks again
// with the lower floor (at most kOutlierSearches passes over the row).
inline constexpr int kOutlierSearches = 3;
float outlier_bar(float rest, int64_t n);
// The kMaxOutliers largest |x[i]| above a floor (ties to the lower channel); a value must exceed `cut`
// to enter (the floor until the list is full).
struct TopMagnitudes {
  explicit TopMagnitudes(float floor) : cut(floor) {}
  float magnitude[kMaxOutliers];
  int32_t index[kMaxOutliers];
  int count = 0;
  float cut;
  void offer(float magnitude, int32_t index);  // |x[index]|; only call it with magnitude > cut
};
// One pass over x[0, k) offering every |x[i]| > top.cut in channel order (each ISA has its own).
using GatherFn = void (*)(const float* x, int64_t k, TopMagnitudes& top);
// The row's outliers: channels (ascending) into index, values into value; returns how many.
int find_outliers(const float* x, int64_t k, float sum_squares, float amax, GatherFn gather, int32_t* index,
                  float* value);
// s and z for a row whose values (outliers counted as 0) lie in [lo, hi]; s is NaN where the sum of squares
// is not finite. The conversions multiply by 1 / s where s is a normal float, else by 0.
void u8_scale_zero(float lo, float hi, float sum_squares, float* scale, int32_t* zero);
void gemm_bf16_4x32_scalar(const LowpTile& t);
void gemm_u8s8_4x32_scalar(const LowpTile& t);

}  // namespace dinov3::cpu::lowp
