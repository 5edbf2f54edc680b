// GEMM drivers: C = A · W^T + bias with a fused epilogue, split over the thread pool.
#pragma once

#include <cstdint>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/gemm/packed_linear.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace dinov3::cpu {

// How one GEMM is cut into tasks: blocks of whole micro-tile rows x blocks of whole panels.
// A panel block is sized to stay in the L2 cache while every row tile of the task streams past it, and
// row blocks are cut fine enough that each thread gets several tasks (dynamic balance on a noisy machine).
struct GemmPlan {
  int64_t m_tiles = 0, tiles_per_block = 0, m_blocks = 0;
  int64_t panels = 0, panels_per_block = 0, n_blocks = 0;
  int64_t tasks() const { return m_blocks * n_blocks; }
};
GemmPlan plan_gemm(int64_t rows, int64_t panels, int64_t k, int mr, int nr, int threads);

// c[r, :] (op)= a[r, :] · w^T + bias for r < rows; `epilogue` is kStore, kGelu or kScaleAdd (scale: [w.out]).
void gemm_linear(const CpuKernels& kernels, ThreadPool& pool, const float* a, int64_t lda, int64_t rows,
                 const PackedLinear& w, TileEpilogue epilogue, const float* scale, float* c, int64_t ldc);

// c = silu(a · gate^T + bg) * (a · up^T + bu). Needs scratch.reserve(swiglu_scratch_floats(kernels)).
size_t swiglu_scratch_floats(const CpuKernels& kernels);
void gemm_swiglu(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const float* a,
                 int64_t lda, int64_t rows, const PackedLinear& gate, const PackedLinear& up, float* c,
                 int64_t ldc);

}  // namespace dinov3::cpu
