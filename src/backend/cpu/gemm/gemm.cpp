#include "backend/cpu/gemm/gemm.h"

#include <algorithm>

namespace dinov3::cpu {
namespace {

// Bytes of packed weight panels a task keeps hot: about half the per-core L2 (1-2 MiB on current x86
// server parts), leaving room for the A rows and the C tiles streaming through.
constexpr int64_t kPanelBlockBytes = 512 * 1024;
// Tasks per thread: a task's row tiles each stream the block's panels from L2 anyway (for_each_tile), so
// small tasks lose no reuse, and the last one, which the other thread may wait for, is short. At batch 1
// in bf16 (short tiles) 32 left ~1% less of the time idle at the barriers than 12 (perf, 4 runs each).
constexpr int64_t kTasksPerThread = 32;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

GemmPlan plan_gemm(int64_t rows, int64_t panels, int64_t k, int mr, int nr, int threads) {
  GemmPlan plan;
  plan.panels = panels;
  const int64_t panel_bytes = std::max<int64_t>(1, k * nr * static_cast<int64_t>(sizeof(float)));
  plan.panels_per_block = std::clamp<int64_t>(kPanelBlockBytes / panel_bytes, 1, panels);
  plan.n_blocks = ceil_div(panels, plan.panels_per_block);
  plan.panels_per_block = ceil_div(panels, plan.n_blocks);  // even blocks
  plan.m_tiles = ceil_div(rows, mr);
  const int64_t want = threads > 1 ? kTasksPerThread * threads : 1;
  plan.m_blocks = std::clamp<int64_t>(ceil_div(want, plan.n_blocks), 1, plan.m_tiles);
  plan.tiles_per_block = ceil_div(plan.m_tiles, plan.m_blocks);
  plan.m_blocks = ceil_div(plan.m_tiles, plan.tiles_per_block);
  plan.parts = std::max(threads, 1);
  plan.blocks_per_part = ceil_div(plan.m_blocks, plan.parts);
  return plan;
}

void gemm_linear(const CpuKernels& kernels, ThreadPool& pool, const float* a, int64_t lda, int64_t rows,
                 const PackedLinear& w, TileEpilogue epilogue, const float* scale, float* c, int64_t ldc,
                 const RowsDone* done) {
  if (rows <= 0) return;
  const int nr = kernels.nr;
  const GemmPlan plan = plan_gemm(rows, w.panels, w.in, kernels.mr, nr, pool.size());
  pool.run(plan.tasks(), [&](int64_t task, int) {
    GemmTile tile;
    tile.lda = lda;
    tile.k = w.in;
    tile.ldc = ldc;
    tile.epilogue = epilogue;
    tile.bias = w.has_bias ? w.bias.get() : nullptr;
    for_each_tile(plan, task, rows, kernels.mr, [&](int64_t row0, int tile_rows, int64_t p) {
      tile.a = a + row0 * lda;
      tile.b = w.panel(p);
      tile.c = c + row0 * ldc + p * nr;
      tile.rows = tile_rows;
      tile.cols = static_cast<int>(std::min<int64_t>(nr, w.out - p * nr));
      if (w.has_bias) tile.bias = w.bias.get() + p * nr;
      if (scale != nullptr) tile.scale = scale + p * nr;
      kernels.gemm_tile(tile);
    }, done);
  });
}

size_t swiglu_scratch_floats(const CpuKernels& kernels) { return static_cast<size_t>(kernels.mr * kernels.nr); }

void gemm_swiglu(const CpuKernels& kernels, ThreadPool& pool, ThreadScratch& scratch, const float* a,
                 int64_t lda, int64_t rows, const PackedLinear& gate, const PackedLinear& up, float* c,
                 int64_t ldc) {
  if (rows <= 0) return;
  const int nr = kernels.nr;
  // Both weights stream through the cache per panel, so a block holds half as many panels of each.
  const GemmPlan plan = plan_gemm(rows, gate.panels, 2 * gate.in, kernels.mr, nr, pool.size());
  pool.run(plan.tasks(), [&](int64_t task, int thread) {
    float* gate_tile = scratch.get(thread);  // [mr, nr]: the gate pre-activation, L1-resident
    for_each_tile(plan, task, rows, kernels.mr, [&](int64_t row0, int tile_rows, int64_t p) {
      GemmTile tile;
      tile.a = a + row0 * lda;
      tile.lda = lda;
      tile.k = gate.in;
      tile.rows = tile_rows;
      tile.cols = static_cast<int>(std::min<int64_t>(nr, gate.out - p * nr));
      tile.b = gate.panel(p);
      tile.bias = gate.has_bias ? gate.bias.get() + p * nr : nullptr;
      tile.c = gate_tile;
      tile.ldc = nr;
      kernels.gemm_tile(tile);
      tile.b = up.panel(p);
      tile.bias = up.has_bias ? up.bias.get() + p * nr : nullptr;
      tile.c = c + row0 * ldc + p * nr;
      tile.ldc = ldc;
      tile.epilogue = TileEpilogue::kSwiglu;
      tile.aux = gate_tile;
      tile.ld_aux = nr;
      kernels.gemm_tile(tile);
    });
  });
}

}  // namespace dinov3::cpu
