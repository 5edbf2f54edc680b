// The AVX2 + FMA kernel set (compiled with -mavx2 -mfma; reached only through cpu_kernels_avx2() after the
// runtime check).
//
// GEMM tile 6x16: 12 ymm accumulators + 2 B vectors + 1 broadcast fit the 16 ymm registers.
#include "backend/cpu/kernels/kernel_set.h"
#include "backend/cpu/simd/ops_avx2.h"

namespace dinov3::cpu {

const CpuKernels& cpu_kernels_avx2() {
  static const CpuKernels kernels = make_kernel_set<OpsAvx2, 6, 2>(Isa::kAvx2);
  return kernels;
}

}  // namespace dinov3::cpu
