#include "backend/cpu/gemm/packed_linear.h"

#include <algorithm>

namespace dinov3::cpu {

void pack_transposed(const float* m, int64_t ld, int64_t rows, int64_t cols, int nr, float* dst) {
  const int64_t panels = (rows + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    float* panel = dst + p * cols * nr;
    const int64_t valid = std::min<int64_t>(nr, rows - p * nr);
    const float* src = m + p * nr * ld;
    // Contiguous stores along the panel row; the strided loads hit L1 lines the previous k already loaded.
    for (int64_t k = 0; k < cols; ++k) {
      float* out = panel + k * nr;
      for (int64_t j = 0; j < valid; ++j) out[j] = src[j * ld + k];
      for (int64_t j = valid; j < nr; ++j) out[j] = 0.0f;
    }
  }
}

void pack_plain(const float* m, int64_t ld, int64_t rows, int64_t cols, int nr, float* dst) {
  const int64_t panels = (cols + nr - 1) / nr;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t valid = std::min<int64_t>(nr, cols - p * nr);
    for (int64_t k = 0; k < rows; ++k) {
      float* out = dst + (p * rows + k) * nr;
      const float* src = m + k * ld + p * nr;
      std::copy(src, src + valid, out);
      std::fill(out + valid, out + nr, 0.0f);
    }
  }
}

std::unique_ptr<PackedLinear> pack_linear(const float* w, const float* bias, int64_t out, int64_t in, int nr,
                                          WeightArena* arena) {
  auto lin = std::make_unique<PackedLinear>();
  lin->out = out;
  lin->in = in;
  lin->nr = nr;
  lin->panels = (out + nr - 1) / nr;
  const auto bytes = allocate_weight_bytes(arena, static_cast<size_t>(lin->panels * in * nr) * sizeof(float));
  lin->data = std::shared_ptr<float>(bytes, reinterpret_cast<float*>(bytes.get()));
  lin->bias = allocate_aligned(static_cast<size_t>(lin->panels * nr));
  pack_transposed(w, in, out, in, nr, lin->data.get());
  if (bias != nullptr) std::copy(bias, bias + out, lin->bias.get());
  lin->has_bias = bias != nullptr;
  return lin;
}

}  // namespace dinov3::cpu
