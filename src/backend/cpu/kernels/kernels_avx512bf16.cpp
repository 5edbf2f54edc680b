// The AVX-512 kernel set built with AVX512_BF16 as well (reached only through cpu_kernels_avx512bf16()
// where the CPU has it and the bf16 instructions are in use): the same kernels as kernels_avx512.cpp, but
// their bf16 outputs (RoPE's Q and K rows, LayerNorm's copies for the next GEMM, the softmax's P) convert with
// vcvtneps2bf16 instead of the integer rounding. The same bits either way (OpsAvx512::to_bf16); the float32 work is
// identical code.
#include "backend/cpu/kernels/avx512_kernel_set.h"

namespace dinov3::cpu {

const CpuKernels& cpu_kernels_avx512bf16() {
  static const CpuKernels kernels = make_avx512_kernel_set();
  return kernels;
}

}  // namespace dinov3::cpu
