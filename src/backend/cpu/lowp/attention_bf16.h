// Fused attention with bf16 matrix products: the shared flash driver (attention/attention_driver.h) with
// Q K^T and P V on the bf16 micro-tile. RoPE, the softmax statistics (running max and sum) and the output
// accumulation stay float32; q, k, v and the softmax weights P are rounded to bf16 as GEMM inputs.
#pragma once

#include <cstddef>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/attention/attention.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/thread_pool.h"

namespace dinov3::cpu::lowp {

// Per-thread scratch floats attention_bf16() needs for this shape on `threads` threads.
size_t attention_bf16_scratch_floats(const LowpKernels& lowp, const AttentionShape& shape, int threads);

// As cpu::attention; `kernels` supplies RoPE and the softmax step, `lowp` the bf16 tiles. qkv_bf16
// (optional): the qkv rows already in bf16, ld_qkv_bf16 apart, read instead of qkv. out_bf16 (optional, row
// stride ld_bf16): the output also in bf16, as a bf16 GEMM reading it would convert it; with bf16_only the
// float32 output is skipped where it can be (one key block: `out` is then not an accumulator). Returns
// whether it was.
bool attention_bf16(const CpuKernels& kernels, const LowpKernels& lowp, ThreadPool& pool, ThreadScratch& scratch,
                    const AttentionShape& shape, const float* qkv, const uint16_t* qkv_bf16, int64_t ld_qkv_bf16,
                    const float* rope, float* out, uint16_t* out_bf16 = nullptr, int64_t ld_bf16 = 0,
                    bool bf16_only = false);

}  // namespace dinov3::cpu::lowp
