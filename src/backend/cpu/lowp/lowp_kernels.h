// The reduced-precision kernel set of the CPU backend: operand preparation (activations to bf16, or to
// shifted int8 with one scale per row) and the GEMM micro-tiles that consume it. Like kernels.h, the
// drivers are baseline x86-64 and reach ISA-specific code only through a LowpKernels table picked at run
// time, so no instruction beyond what the CPU has ever runs.
//
// int8 signedness: vpdpbusd multiplies unsigned bytes by signed bytes. Activations are quantised
// symmetrically, q_a in [-127, 127] with a = row_scale * q_a, and stored as u = q_a + 128; then
//   sum_k u[k] * q_w[k] = sum_k q_a[k] * q_w[k] + 128 * sum_k q_w[k],
// and the second term is the per-column col_offset precomputed at load, subtracted before scaling.
#pragma once

#include <cstdint>

#include "backend/cpu/kernels.h"

namespace dinov3::cpu::lowp {

// One micro-tile: C[rows, cols] (op)= A[rows, k_pad] · panel + bias with GemmTile's epilogues (`out`
// carries c, ldc, rows, cols, bias, epilogue, scale, aux; its a/b/k are unused).
struct LowpTile {
  GemmTile out;
  const uint8_t* a = nullptr;  // bf16: uint16 pairs; int8: shifted u8 quads; rows of lda bytes
  int64_t lda = 0;
  const uint8_t* b = nullptr;  // one packed panel (lowp_linear.h)
  int64_t k_groups = 0;        // k_pad / k_group
  const float* row_scale = nullptr;     // int8: activation scale per row of the tile
  const float* col_scale = nullptr;     // int8: weight scale per column (32 values)
  const int32_t* col_offset = nullptr;  // int8: 128 * column sum of the weights (32 values)
};

struct LowpKernels {
  const char* bf16_name;  // which bf16 dot product: "avx512bf16", "avx512f-emulated", "scalar-emulated"
  const char* int8_name;  // "avx512vnni", "scalar"
  int bf16_mr, int8_mr;   // rows per micro-tile
  // dst[r, :k_pad] = bf16(x[r, :k]), zero past k. dst rows are k_pad uint16 apart.
  void (*to_bf16_rows)(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
  // Per row: scale[r] = max|x[r, :]| / 127, dst[r, i] = round(x[r, i] / scale[r]) + 128 (ties to even),
  // 128 past k and for an all-zero row (scale 0). dst rows are k_pad bytes apart.
  void (*to_u8_rows)(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint8_t* dst,
                     float* scale);
  void (*gemm_bf16_tile)(const LowpTile& t);
  void (*gemm_u8s8_tile)(const LowpTile& t);
};

// use_bf16_instructions / use_vnni: whether the AVX512_BF16 / AVX512_VNNI tiles may be used (the backend
// clears them when the CPU lacks them or DINOV3_CPU_NO_BF16 / DINOV3_CPU_NO_VNNI asks); avx512: whether
// the AVX-512F kernels may run. The emulated bf16 tile gives bit-identical results to the native one.
const LowpKernels& select_lowp_kernels(bool avx512, bool use_bf16_instructions, bool use_vnni);

// The per-ISA entry points (files compiled with matching -m flags).
void to_bf16_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_u8_rows_avx512(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint8_t* dst,
                       float* scale);
void gemm_bf16_12x32_avx512_emulated(const LowpTile& t);
void gemm_bf16_14x32_avx512bf16(const LowpTile& t);
void gemm_u8s8_14x32_avx512vnni(const LowpTile& t);
void to_bf16_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint16_t* dst);
void to_u8_rows_scalar(const float* x, int64_t ldx, int64_t rows, int64_t k, int64_t k_pad, uint8_t* dst,
                       float* scale);
void gemm_bf16_4x32_scalar(const LowpTile& t);
void gemm_u8s8_4x32_scalar(const LowpTile& t);

}  // namespace dinov3::cpu::lowp
