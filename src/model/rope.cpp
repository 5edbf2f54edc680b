// 2-D RoPE for DINOv3 (SPEC.md section 1.3; timm RotaryEmbeddingDinoV3 with normalize_coords='separate',
// Meta's RopePositionEmbedding, HF's DINOv3ViTRopePositionEmbedding: the same table from each layout's periods).
#include <cmath>

#include "dinov3/model.h"
#include "util/float_env.h"

namespace dinov3 {

std::vector<double> rope_periods_from_temperature(int64_t head_dim, double temperature) {
  const ScopedDefaultFloatEnv float_env;
  const int64_t quarter = head_dim / 4, half = head_dim / 2;
  // timm keeps them as a float32 buffer.
  std::vector<double> periods(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k) {
    periods[k] = static_cast<float>(std::pow(temperature, 2.0 * static_cast<double>(k) / static_cast<double>(half)));
  }
  return periods;
}

Tensor compute_rope_table(int64_t grid_h, int64_t grid_w, const std::vector<double>& periods) {
  const ScopedDefaultFloatEnv float_env;
  const int64_t quarter = static_cast<int64_t>(periods.size()), half = 2 * quarter, head_dim = 4 * quarter;
  Tensor table({grid_h * grid_w, 2 * head_dim});
  std::vector<double> angles(static_cast<size_t>(half));
  for (int64_t i = 0; i < grid_h; ++i) {
    for (int64_t j = 0; j < grid_w; ++j) {
      // Patch centres normalised to [0, 1] per axis, then mapped to [-1, 1].
      const double ch = 2.0 * ((static_cast<double>(i) + 0.5) / static_cast<double>(grid_h)) - 1.0;
      const double cw = 2.0 * ((static_cast<double>(j) + 0.5) / static_cast<double>(grid_w)) - 1.0;
      for (int64_t k = 0; k < quarter; ++k) {
        angles[k] = 2.0 * M_PI * ch / periods[k];
        angles[quarter + k] = 2.0 * M_PI * cw / periods[k];
      }
      float* row = table.ptr() + (i * grid_w + j) * 2 * head_dim;
      // Angles tiled twice across the head: [a_0 .. a_{hd/2-1}, a_0 .. a_{hd/2-1}].
      for (int64_t d = 0; d < head_dim; ++d) {
        row[d] = static_cast<float>(std::sin(angles[d % half]));
        row[head_dim + d] = static_cast<float>(std::cos(angles[d % half]));
      }
    }
  }
  return table;
}

Tensor compute_rope_table(int64_t grid_h, int64_t grid_w, int64_t head_dim, double temperature) {
  return compute_rope_table(grid_h, grid_w, rope_periods_from_temperature(head_dim, temperature));
}

}  // namespace dinov3
