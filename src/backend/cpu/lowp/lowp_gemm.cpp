#include "backend/cpu/lowp/lowp_gemm.h"

#include <algorithm>
#include <new>
#include <string>

#include "backend/cpu/gemm/gemm.h"

namespace dinov3::cpu::lowp {
namespace {

constexpr int64_t kConvertRowsPerTask = 16;
constexpr int kMaxMr = 14;

int mr_of(const LowpKernels& k, Precision p) { return p == Precision::kInt8 ? k.int8_mr : k.bf16_mr; }

}  // namespace

Result<const uint16_t*> bf16_rows(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, const float* a,
                                  int64_t lda, int64_t rows, int64_t cols, int64_t ld) {
  DINOV3_RETURN_IF_ERROR(staging.reserve(rows, ld * 2));
  auto* dst = reinterpret_cast<uint16_t*>(staging.rows_data());
  pool.run((rows + kConvertRowsPerTask - 1) / kConvertRowsPerTask, [&](int64_t task, int) {
    const int64_t r0 = task * kConvertRowsPerTask, n = std::min(kConvertRowsPerTask, rows - r0);
    kernels.to_bf16_rows(a + r0 * lda, lda, n, cols, ld, dst + r0 * ld);
  });
  return static_cast<const uint16_t*>(dst);
}

namespace {

// The rows the tiles read: the caller's bf16 copy where it has one for a bf16 weight, else a[0, rows)
// converted into staging as w's kernels expect it.
Result<const uint8_t*> prepare_rows(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging,
                                    const float* a, int64_t lda, int64_t rows, const LowpLinear& w,
                                    const uint16_t* bf16_in) {
  if (w.precision == Precision::kBF16) {
    const uint16_t* in = bf16_in;
    if (in == nullptr) {
      DINOV3_ASSIGN_OR_RETURN(in, bf16_rows(kernels, pool, staging, a, lda, rows, w.in, w.k_pad));
    }
    return reinterpret_cast<const uint8_t*>(in);
  }
  const int64_t row_bytes = w.k_pad * element_bytes(w.precision);
  DINOV3_RETURN_IF_ERROR(staging.reserve(rows, row_bytes));
  pool.run((rows + kConvertRowsPerTask - 1) / kConvertRowsPerTask, [&](int64_t task, int) {
    const int64_t r0 = task * kConvertRowsPerTask, n = std::min(kConvertRowsPerTask, rows - r0);
    kernels.to_u8_rows(a + r0 * lda, lda, n, w.in, w.k_pad, staging.u8_rows(r0, row_bytes));
  });
  return static_cast<const uint8_t*>(staging.rows_data());
}

// Points t at rows [row0, row0 + tile_rows) and panel p of w; the caller fills the epilogue fields. Every
// field that depends on the tile is assigned here (t is reused across a task's tiles: for_each_thread_tile).
// a_rows: what prepare_rows returned.
void aim_tile(LowpTile& t, LowpStaging& staging, const uint8_t* a_rows, const LowpLinear& w, int64_t row0,
              int tile_rows, int64_t p) {
  const int64_t row_bytes = w.k_pad * element_bytes(w.precision);
  t.a = a_rows + row0 * row_bytes;
  t.lda = row_bytes;
  t.b = w.panel(p);
  t.k_groups = w.k_pad / k_group(w.precision);
  if (w.precision == Precision::kInt8) {
    const U8Rows rows = staging.u8_rows(row0, row_bytes);
    t.row_scale = rows.scale;
    t.row_zero = rows.zero;
    t.outliers = rows.outliers;
    t.outlier_index = rows.outlier_index;
    t.outlier_value = rows.outlier_value;
    t.col_scale = w.col_scale.get() + p * kNr;
    t.col_sum = w.col_sum.get() + p * kNr;
    t.ld_channel_q = w.panels * kNr;
    t.channel_q = reinterpret_cast<const int8_t*>(w.channel_q.get()) + p * kNr;
    t.channel_scale = w.channel_scale.get();
  }
  t.out.rows = tile_rows;
  t.out.cols = static_cast<int>(std::min<int64_t>(kNr, w.out - p * kNr));
  t.out.bias = w.has_bias ? w.bias.get() + p * kNr : nullptr;
}

// Where tile t (rows from row0, panel p) stores: c, and the bf16 copy when there is one; the copy alone when
// copies.out_only.
void set_destination(LowpTile& t, float* c, int64_t ldc, const Bf16Copies& copies, int64_t row0, int64_t p) {
  const bool copy_only = copies.out_only && copies.out != nullptr;
  t.out.c = copy_only ? nullptr : c + row0 * ldc + p * kNr;
  t.out.ldc = ldc;
  if (copies.out != nullptr) {
    t.out.c_bf16 = copies.out + row0 * copies.ld_out + p * kNr;
    t.out.ldc_bf16 = copies.ld_out;
  }
}

// Runs fn(tiles, row0, tile_rows, panel, thread) for every tile, blocked like the float32 GEMM (gemm.h's
// plan). tiles: two LowpTile, blank at the start of each task and handed to every tile of it, so a tile call
// costs no fresh 240-byte tile (which g++ clears with `rep stosq`: ~30 cycles a call, measured on attention's
// short tiles); fn must set, for every tile, each field it sets for any (aim_tile does for its own).
template <class Fn>
void for_each_thread_tile(ThreadPool& pool, int64_t rows, const LowpLinear& w, int mr, int64_t k_weight, Fn&& fn,
                          const RowsDone* done = nullptr) {
  // plan_gemm sizes panel blocks in float32 units of K; hand it the panel's size in 4-byte lanes.
  const GemmPlan plan = plan_gemm(rows, w.panels, k_weight * w.k_pad * element_bytes(w.precision) / 4, mr, kNr,
                                  pool.size());
  pool.run(plan.tasks(), [&](int64_t task, int thread) {
    LowpTile tiles[2];
    cpu::for_each_tile(
        plan, task, rows, mr, [&](int64_t row0, int tile_rows, int64_t p) { fn(tiles, row0, tile_rows, p, thread); },
        done);
  });
}

}  // namespace

Status LowpStaging::reserve(int64_t rows, int64_t row_bytes) {
  try {
    if (rows * row_bytes > data_bytes_) {
      data_ = allocate_bytes(static_cast<size_t>(rows * row_bytes));
      data_bytes_ = rows * row_bytes;
    }
    if (rows > row_count_) {
      const auto n = static_cast<size_t>(rows);
      scales_ = allocate_aligned(n);
      outlier_values_ = allocate_aligned(n * kMaxOutliers);
      zeros_ = std::make_unique<int32_t[]>(n);
      outliers_ = std::make_unique<int32_t[]>(n);
      outlier_indices_ = std::make_unique<int32_t[]>(n * kMaxOutliers);
      row_count_ = rows;
    }
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory,
                      "cpu backend: cannot allocate " + std::to_string(rows * row_bytes) + " bytes of converted activations");
  }
  return {};
}

Status gemm_linear_lowp(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, const float* a,
                        int64_t lda, int64_t rows, const LowpLinear& w, TileEpilogue epilogue, const float* scale,
                        float* c, int64_t ldc, const Bf16Copies& copies, const RowsDone* done) {
  if (rows <= 0) return {};
  DINOV3_ASSIGN_OR_RETURN(const uint8_t* a_rows, prepare_rows(kernels, pool, staging, a, lda, rows, w, copies.in));
  const bool int8 = w.precision == Precision::kInt8;
  const auto tile_fn = int8 ? kernels.gemm_u8s8_tile : kernels.gemm_bf16_tile;
  for_each_thread_tile(pool, rows, w, mr_of(kernels, w.precision), 1,
                       [&](LowpTile* tiles, int64_t row0, int tile_rows, int64_t p, int) {
    LowpTile& t = tiles[0];
    aim_tile(t, staging, a_rows, w, row0, tile_rows, p);
    set_destination(t, c, ldc, copies, row0, p);
    t.out.epilogue = epilogue;
    if (scale != nullptr) t.out.scale = scale + p * kNr;
    tile_fn(t);
  }, done);
  return {};
}

size_t swiglu_scratch_floats_lowp() { return static_cast<size_t>(kMaxMr * kNr); }

Status gemm_swiglu_lowp(const LowpKernels& kernels, ThreadPool& pool, LowpStaging& staging, ThreadScratch& scratch,
                        const float* a, int64_t lda, int64_t rows, const LowpLinear& gate, const LowpLinear& up,
                        float* c, int64_t ldc, const Bf16Copies& copies) {
  if (rows <= 0) return {};
  if (gate.precision != up.precision) {
    return make_error(ErrorCode::kInvalidArgument, "cpu backend: a SwiGLU layer's two weights need one precision");
  }
  DINOV3_ASSIGN_OR_RETURN(const uint8_t* a_rows,
                          prepare_rows(kernels, pool, staging, a, lda, rows, gate, copies.in));
  const auto tile_fn = gate.precision == Precision::kInt8 ? kernels.gemm_u8s8_tile : kernels.gemm_bf16_tile;
  // Both weights stream through the cache per panel, so a block holds half as many panels of each.
  for_each_thread_tile(pool, rows, gate, mr_of(kernels, gate.precision), 2,
                [&](LowpTile* tiles, int64_t row0, int tile_rows, int64_t p, int thread) {
                  float* gate_tile = scratch.get(thread);  // [mr, 32]: the gate pre-activation, L1-resident
                  LowpTile& t = tiles[0];
                  aim_tile(t, staging, a_rows, gate, row0, tile_rows, p);
                  t.out.c = gate_tile;
                  t.out.ldc = kNr;
                  tile_fn(t);
                  LowpTile& u = tiles[1];
                  aim_tile(u, staging, a_rows, up, row0, tile_rows, p);
                  set_destination(u, c, ldc, copies, row0, p);
                  u.out.epilogue = TileEpilogue::kSwiglu;
                  u.out.aux = gate_tile;
                  u.out.ld_aux = kNr;
                  tile_fn(u);
                });
  return {};
}

}  // namespace dinov3::cpu::lowp
