// The CpuKernels table of one instruction set: the generic kernels instantiated for its Ops type and GEMM
// tile shape (MR rows x NV vectors). Include only from the per-ISA kernel files, which are compiled with
// that instruction set's flags.
#pragma once

#include "backend/cpu/kernels.h"
#include "backend/cpu/kernels/gemm_tile.h"
#include "backend/cpu/kernels/row_kernels.h"

namespace dinov3::cpu {
namespace {

template <class O, int MR, int NV>
CpuKernels make_kernel_set(Isa isa) {
  return {isa, MR, NV * O::kLanes, &gemm_tile<O, MR, NV>, &layer_norm_rows<O>, &softmax_block<O>, &rope_rows<O>};
}

}  // namespace
}  // namespace dinov3::cpu
