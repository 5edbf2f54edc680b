// Fused multi-head self-attention with 2-D RoPE (see Backend::attention for the layout).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace dinov3::cpu {

struct AttentionShape {
  int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0, prefix = 0;
};

// Per-thread scratch floats attention() needs for this shape on `threads` threads.
size_t attention_scratch_floats(const CpuKernels& kernels, const AttentionShape& shape, int threads);

// qkv: [batch, tokens, 3 * heads * head_dim]; rope: [tokens - prefix, 2 * head_dim] (sin | cos);
// out: [batch, tokens, heads * head_dim]. scratch must hold attention_scratch_floats() per thread.
void attention(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const AttentionShape& shape,
               const float* qkv, const float* rope, float* out);

}  // namespace dinov3::cpu
