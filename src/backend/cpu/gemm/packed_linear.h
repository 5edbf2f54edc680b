// A linear layer's weight repacked once at load for the micro-kernel: K-major panels of `nr` output
// columns, panel p holding W[p*nr + j][k] at data[(p*in + k)*nr + j], zero-padded past `out`. The bias is
// kept apart (zero-padded to whole panels) and added in the kernel's store. A reduced-precision variant
// adds another panel element type with the same panel geometry.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/weight_arena.h"
#include "dinov3/backend.h"

namespace dinov3::cpu {

struct PackedLinear final : public Weight {
  int64_t out = 0, in = 0;
  int nr = 0;
  int64_t panels = 0;
  std::shared_ptr<float> data;  // [panels][in][nr], in the backend's WeightArena
  AlignedPtr bias;  // [panels * nr]
  bool has_bias = false;

  const float* panel(int64_t p) const { return data.get() + p * in * nr; }
};

// w: [out, in] row-major (PyTorch layout); bias: [out] or nullptr. Throws std::bad_alloc.
std::unique_ptr<PackedLinear> pack_linear(const float* w, const float* bias, int64_t out, int64_t in, int nr,
                                          WeightArena* arena = nullptr);

// Packs rows [0, rows) of a row-major matrix m (row stride ld, `cols` columns used) as the B operand of
// C = A · m^T, i.e. panels over the rows of m: dst[(p*cols + k)*nr + j] = m[p*nr + j][k], zero past `rows`.
void pack_transposed(const float* m, int64_t ld, int64_t rows, int64_t cols, int nr, float* dst);

// Packs a row-major matrix m [rows, cols] (row stride ld) as the B operand of C = A · m, panels over its
// columns: dst[(p*rows + k)*nr + j] = m[k][p*nr + j], zero past `cols`.
void pack_plain(const float* m, int64_t ld, int64_t rows, int64_t cols, int nr, float* dst);

}  // namespace dinov3::cpu
