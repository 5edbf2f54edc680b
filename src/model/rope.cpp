// 2-D RoPE for DINOv3 (SPEC.md section 1.3; timm RotaryEmbeddingDinoV3 with normalize_coords='separate',
// Meta's RopePositionEmbedding, HF's DINOv3ViTRopePositionEmbedding: the same table from each layout's periods).
#include <cmath>
#include <cstdio>
#include <new>

#include "model/rope.h"

#include "dinov3/model.h"
#include "util/float_env.h"

namespace dinov3 {

namespace {

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", v);
  return text;
}

}  // namespace

int64_t first_bad_rope_period(const std::vector<double>& periods) {
  for (size_t k = 0; k < periods.size(); ++k) {
    if (!(std::isfinite(periods[k]) && periods[k] > 0.0)) return static_cast<int64_t>(k);
  }
  return -1;
}

std::string describe_rope_period(const std::vector<double>& periods, int64_t k) {
  return "period " + std::to_string(k) + " is " + number(periods[static_cast<size_t>(k)]);
}

Result<std::vector<double>> rope_periods_from_temperature(int64_t head_dim, double temperature) {
  const ScopedDefaultFloatEnv float_env;
  if (head_dim < 4 || head_dim % 4 != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "RoPE: head_dim " + std::to_string(head_dim) + " is not a positive multiple of 4");
  }
  if (!(std::isfinite(temperature) && temperature > 0.0)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "RoPE: the temperature is " + number(temperature) + ", not a positive finite number");
  }
  const int64_t quarter = head_dim / 4, half = head_dim / 2;
  // timm keeps them as a float32 buffer.
  std::vector<double> periods(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k) {
    periods[k] = static_cast<float>(std::pow(temperature, 2.0 * static_cast<double>(k) / static_cast<double>(half)));
  }
  return periods;
}

Result<Tensor> compute_rope_table(int64_t grid_h, int64_t grid_w, const std::vector<double>& periods) {
  const ScopedDefaultFloatEnv float_env;
  if (grid_h < 1 || grid_w < 1 || grid_h > kMaxRopeGridSide || grid_w > kMaxRopeGridSide) {
    return make_error(ErrorCode::kInvalidArgument, "RoPE: a patch grid of " + std::to_string(grid_h) + " x " +
                                                       std::to_string(grid_w) + " (each side must be in [1, " +
                                                       std::to_string(kMaxRopeGridSide) + "])");
  }
  if (periods.empty()) return make_error(ErrorCode::kInvalidArgument, "RoPE: no periods");
  if (const int64_t k = first_bad_rope_period(periods); k >= 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "RoPE: " + describe_rope_period(periods, k) + ", not a positive finite number");
  }
  const int64_t quarter = static_cast<int64_t>(periods.size()), half = 2 * quarter, head_dim = 4 * quarter;
  const double floats = static_cast<double>(grid_h) * static_cast<double>(grid_w) * 2.0 * static_cast<double>(head_dim);
  if (floats > static_cast<double>(int64_t{1} << 32)) {
    return make_error(ErrorCode::kOutOfMemory, "RoPE: a table of " + number(floats) + " values is too large");
  }
  Tensor table;
  try {
    table = Tensor({grid_h * grid_w, 2 * head_dim});
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory, "RoPE: cannot allocate a table of " + number(floats) + " values");
  }
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

Result<Tensor> compute_rope_table(int64_t grid_h, int64_t grid_w, int64_t head_dim, double temperature) {
  DINOV3_ASSIGN_OR_RETURN(const std::vector<double> periods, rope_periods_from_temperature(head_dim, temperature));
  return compute_rope_table(grid_h, grid_w, periods);
}

}  // namespace dinov3
