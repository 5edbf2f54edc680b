// The portable kernel set: the generic kernels instantiated with one-lane "vectors", for CPUs without
// AVX2 + FMA (and to test the drivers without SIMD).
#include "backend/cpu/kernels/kernel_set.h"
#include "backend/cpu/simd/ops_scalar.h"

namespace dinov3::cpu {

const CpuKernels& cpu_kernels_scalar() {
  static const CpuKernels kernels = make_kernel_set<OpsScalar, 4, 8>(Isa::kScalar);
  return kernels;
}

}  // namespace dinov3::cpu
