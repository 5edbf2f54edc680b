// GEMM drivers: C = A · W^T + bias with a fused epilogue, split over the thread pool.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/gemm/packed_linear.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/thread_pool.h"

namespace dinov3::cpu {

// How one GEMM is cut into tasks: blocks of whole micro-tile rows x blocks of whole panels.
// A panel block is sized to stay in the L2 cache while every row tile of the task streams past it, and
// row blocks are cut fine enough that each thread gets several tasks (dynamic balance on a noisy machine).
// The tasks come in one part per thread, in ThreadPool::run's home ranges: part p is the row blocks
// ThreadPool::home_range(m_blocks, parts, p) (as even as whole blocks allow; blocks_per_part slots, the
// ones past a shorter part's blocks empty), panel block by panel block, so a thread's consecutive tasks read
// one panel block from L2 and every GEMM (and LayerNorm) of a forward starts each thread on the same rows.
struct GemmPlan {
  int64_t m_tiles = 0, tiles_per_block = 0, m_blocks = 0;
  int64_t panels = 0, panels_per_block = 0, n_blocks = 0;
  int64_t parts = 1, blocks_per_part = 1;
  int64_t tasks() const { return parts * blocks_per_part * n_blocks; }
};
GemmPlan plan_gemm(int64_t rows, int64_t panels, int64_t k, int mr, int nr, int threads);

// Work a GEMM's caller hands it for rows whose every output column is stored (a LayerNorm of the result):
// fn(ctx, row0, rows) runs once per row tile, inside the GEMM, on the thread that stores the tile's last
// panel block; the counter's acquire-release increment makes every thread's stores to those rows visible to
// it. counts: one counter per row tile, zero when the GEMM starts (rows of them always suffice).
struct RowsDone {
  void (*fn)(void* ctx, int64_t row0, int rows) = nullptr;
  void* ctx = nullptr;
  std::atomic<int32_t>* counts = nullptr;
};

// Runs fn(row0, tile_rows, panel) for every (row tile, panel) of task `task`, row tiles outermost so one
// tile's A rows stay in L1 while the task's panels go by, then `done` (when given) for each row tile this
// task finishes. Every GEMM driver (float32, bf16, int8) walks its tasks with this.
template <class Fn>
void for_each_tile(const GemmPlan& plan, int64_t task, int64_t rows, int mr, Fn&& fn,
                   const RowsDone* done = nullptr) {
  const int64_t per_part = plan.blocks_per_part * plan.n_blocks, i = task % per_part;
  const ThreadPool::Range own =
      ThreadPool::home_range(plan.m_blocks, static_cast<int>(plan.parts), static_cast<int>(task / per_part));
  const int64_t mb = own.begin + i % plan.blocks_per_part, nb = i / plan.blocks_per_part;
  if (mb >= own.end) return;
  const int64_t t_end = std::min(plan.m_tiles, (mb + 1) * plan.tiles_per_block);
  const int64_t p_begin = nb * plan.panels_per_block;
  const int64_t p_end = std::min(plan.panels, p_begin + plan.panels_per_block);
  for (int64_t t = mb * plan.tiles_per_block; t < t_end; ++t) {
    const int64_t row0 = t * mr;
    const int tile_rows = static_cast<int>(std::min<int64_t>(mr, rows - row0));
    for (int64_t p = p_begin; p < p_end; ++p) fn(row0, tile_rows, p);
    if (done != nullptr && done->counts[t].fetch_add(1, std::memory_order_acq_rel) + 1 == plan.n_blocks) {
      done->fn(done->ctx, row0, tile_rows);
    }
  }
}

// c[r, :] (op)= a[r, :] · w^T + bias for r < rows; `epilogue` is kStore, kGelu or kScaleAdd (scale: [w.out]);
// done: work on finished rows (RowsDone).
void gemm_linear(const CpuKernels& kernels, ThreadPool& pool, const float* a, int64_t lda, int64_t rows,
                 const PackedLinear& w, TileEpilogue epilogue, const float* scale, float* c, int64_t ldc,
                 const RowsDone* done = nullptr);

// c = silu(a · gate^T + bg) * (a · up^T + bu). Needs scratch.reserve(swiglu_scratch_floats(kernels)).
size_t swiglu_scratch_floats(const CpuKernels& kernels);
void gemm_swiglu(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const float* a,
                 int64_t lda, int64_t rows, const PackedLinear& gate, const PackedLinear& up, float* c,
                 int64_t ldc);

}  // namespace dinov3::cpu
