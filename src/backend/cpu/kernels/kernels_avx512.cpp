// The AVX-512 kernel set (compiled with -mavx512f -mavx512dq -mavx512vl -mavx512bw -mfma; reached only
// through cpu_kernels_avx512() after the runtime check). Its shape: avx512_kernel_set.h.
#include "backend/cpu/kernels/avx512_kernel_set.h"

namespace dinov3::cpu {

const CpuKernels& cpu_kernels_avx512() {
  static const CpuKernels kernels = make_avx512_kernel_set();
  return kernels;
}

}  // namespace dinov3::cpu
