#include "backend/cpu/lowp/lowp_kernels.h"

namespace dinov3::cpu::lowp {

const LowpKernels& select_lowp_kernels(bool avx512, bool use_bf16_instructions, bool use_vnni) {
  static const LowpKernels kScalar{"scalar-emulated", "scalar", 4, 4, to_bf16_rows_scalar, to_u8_rows_scalar,
                                   gemm_bf16_4x32_scalar, gemm_u8s8_4x32_scalar};
  if (!avx512) return kScalar;
  static const LowpKernels kTables[2][2] = {
      {{"avx512f-emulated", "scalar", 12, 4, to_bf16_rows_avx512, to_u8_rows_avx512,
        gemm_bf16_12x32_avx512_emulated, gemm_u8s8_4x32_scalar},
       {"avx512f-emulated", "avx512vnni", 12, 14, to_bf16_rows_avx512, to_u8_rows_avx512,
        gemm_bf16_12x32_avx512_emulated, gemm_u8s8_14x32_avx512vnni}},
      {{"avx512bf16", "scalar", 14, 4, to_bf16_rows_avx512, to_u8_rows_avx512, gemm_bf16_14x32_avx512bf16,
        gemm_u8s8_4x32_scalar},
       {"avx512bf16", "avx512vnni", 14, 14, to_bf16_rows_avx512, to_u8_rows_avx512, gemm_bf16_14x32_avx512bf16,
        gemm_u8s8_14x32_avx512vnni}}};
  return kTables[use_bf16_instructions ? 1 : 0][use_vnni ? 1 : 0];
}

}  // namespace dinov3::cpu::lowp
