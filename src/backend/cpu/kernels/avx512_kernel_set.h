// The AVX-512 CpuKernels table, for the two files that build it: kernels_avx512.cpp (AVX-512F/BW/DQ/VL)
// and kernels_avx512bf16.cpp (the same plus AVX512_BF16, so its bf16 outputs convert with vcvtneps2bf16).
// Include only from those files.
//
// GEMM tile 14x32: 28 zmm accumulators + 2 B vectors + 1 broadcast register. Per k: 2 B loads, 14
// broadcasts, 28 FMAs, so both FMA pipes stay busy (latency 4 needs >= 8 independent chains) with loads to
// spare. Measured against 8x48 and 6x64 on the ViT-S shapes: the same on the linear layers, and better
// for attention, whose head_dim 64 = 2 panels of 32 (48 would waste a third of the P·V work).
#pragma once

#include "backend/cpu/kernels/kernel_set.h"
#include "backend/cpu/simd/ops_avx512.h"

namespace dinov3::cpu {
namespace {

inline CpuKernels make_avx512_kernel_set() { return make_kernel_set<OpsAvx512, 14, 2>(Isa::kAvx512); }

}  // namespace
}  // namespace dinov3::cpu
