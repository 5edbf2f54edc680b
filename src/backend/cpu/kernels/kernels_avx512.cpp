// The AVX-512 kernel set (compiled with -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma; reached only
// through cpu_kernels_avx512() after the runtime check).
//
// GEMM tile 14x32: 28 zmm accumulators + 2 B vectors + 1 broadcast register. Per k: 2 B loads, 14
// broadcasts, 28 FMAs, so both FMA pipes stay busy (latency 4 needs >= 8 independent chains) with loads to
// spare. Measured against 8x48 and 6x64 on the ViT-S shapes: the same on the linear layers, and better
// for attention, whose head_dim 64 = 2 panels of 32 (48 would waste a third of the P·V work).
#include "backend/cpu/kernels/kernel_set.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu {

const CpuKernels& cpu_kernels_avx512() {
  static const CpuKernels kernels = make_kernel_set<OpsAvx512, 14, 2>(Isa::kAvx512);
  return kernels;
}

}  // namespace dinov3::cpu
