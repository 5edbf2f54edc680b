// Patch features of one image at a chosen resolution, and the pixel -> patch mapping every picture uses.
#include <algorithm>
#include <cmath>

#include "analysis/pixel_patches.h"
#include "dinov3/analysis.h"
#include "util/float_env.h"

namespace dinov3 {
namespace analysis_detail {
namespace {

// floor(position / patch) when 0 <= position < grid * patch, else -1.
int64_t axis_patch(double position, int patch, int64_t grid) {
  if (!(position >= 0.0) || position >= static_cast<double>(grid * patch)) return -1;
  return std::min<int64_t>(static_cast<int64_t>(std::floor(position / patch)), grid - 1);
}

}  // namespace

int64_t patch_column(const DenseFeatures& f, int x) {
  const InputPosition p = image_to_input(f.geometry, f.image.width, f.image.height, x + 0.5, 0.5);
  return axis_patch(p.u, f.patch_size, f.grid_w);
}

int64_t patch_row(const DenseFeatures& f, int y) {
  const InputPosition p = image_to_input(f.geometry, f.image.width, f.image.height, 0.5, y + 0.5);
  return axis_patch(p.v, f.patch_size, f.grid_h);
}

PixelPatches pixel_patches(const DenseFeatures& f) {
  PixelPatches m;
  m.column.resize(static_cast<size_t>(f.image.width));
  m.row.resize(static_cast<size_t>(f.image.height));
  for (int x = 0; x < f.image.width; ++x) m.column[static_cast<size_t>(x)] = patch_column(f, x);
  for (int y = 0; y < f.image.height; ++y) m.row[static_cast<size_t>(y)] = patch_row(f, y);
  return m;
}

Status check_dense_features(const DenseFeatures& f) {
  if (f.image.width <= 0 || f.image.height <= 0 ||
      f.image.pixels.size() != size_t(f.image.width) * size_t(f.image.height) * 3) {
    return make_error(ErrorCode::kInvalidArgument, f.source + ": dense features without their decoded image");
  }
  // Products through shape_numel, which says -1 where one would overflow (a wrapped product passed).
  if (f.patch_size <= 0 || f.grid_h <= 0 || f.grid_w <= 0 || f.patches.shape.size() != 2 ||
      f.patches.shape[0] != shape_numel({f.grid_h, f.grid_w}) || f.patches.shape[1] <= 0 ||
      f.patches.numel() != shape_numel(f.patches.shape)) {
    return make_error(ErrorCode::kInvalidArgument, f.source + ": patch features " + shape_to_string(f.patches.shape) +
                                                       " do not match a " + std::to_string(f.grid_h) + "x" +
                                                       std::to_string(f.grid_w) + " grid");
  }
  return {};
}

}  // namespace analysis_detail

Result<DenseFeatures> compute_dense_features(Model& model, ImageRGB8 image, const InputSize& size,
                                             const std::string& source) {
  const ScopedDefaultFloatEnv float_env;
  const ModelConfig& c = model.config();
  const int patch = static_cast<int>(c.patch_size);
  Status covers = check_image_covers_a_patch(image.width, image.height, patch);
  if (!covers.ok()) return covers.with_context(source);
  DenseFeatures f;
  f.source = source;
  Result<PreprocessConfig> pc = preprocess_config_for_image(c, size, image.width, image.height);
  if (!pc.ok()) return pc.status().with_context(source);
  f.preprocess = *pc;
  DINOV3_ASSIGN_OR_RETURN(f.geometry, preprocess_geometry(image.width, image.height, f.preprocess));
  Result<Tensor> input = preprocess_image(image, f.preprocess);
  if (!input.ok()) return input.status().with_context(source);
  input->shape.insert(input->shape.begin(), 1);
  DINOV3_ASSIGN_OR_RETURN(ForwardOutput out, model.forward(*input));

  f.patch_size = patch;
  f.grid_h = f.preprocess.height / patch;
  f.grid_w = f.preprocess.width / patch;
  const int64_t D = c.embed_dim, P = f.grid_h * f.grid_w, prefix = c.prefix_tokens();
  f.patches = Tensor({P, D}, std::vector<float>(out.features.data.begin() + prefix * D,
                                                out.features.data.begin() + (prefix + P) * D));
  f.image = std::move(image);
  return f;
}

Result<DenseFeatures> compute_dense_features(Model& model, const std::string& path, const InputSize& size,
                                             const DecodeOptions& options) {
  DINOV3_ASSIGN_OR_RETURN(ImageRGB8 image, decode_image_file(path, options));
  return compute_dense_features(model, std::move(image), size, path);
}

int64_t patch_at_pixel(const DenseFeatures& f, int x, int y) {
  if (x < 0 || y < 0 || x >= f.image.width || y >= f.image.height) return -1;
  const int64_t col = analysis_detail::patch_column(f, x), row = analysis_detail::patch_row(f, y);
  return col < 0 || row < 0 ? -1 : row * f.grid_w + col;
}

Result<int64_t> patch_for_point(const DenseFeatures& f, int x, int y) {
  const std::string point = "point (" + std::to_string(x) + "," + std::to_string(y) + ")";
  if (x < 0 || y < 0 || x >= f.image.width || y >= f.image.height) {
    return make_error(ErrorCode::kInvalidArgument, point + " is outside the " + std::to_string(f.image.width) + "x" +
                                                       std::to_string(f.image.height) + " image " + f.source +
                                                       " (x in [0, " + std::to_string(f.image.width) + "), y in [0, " +
                                                       std::to_string(f.image.height) + "))");
  }
  const int64_t p = patch_at_pixel(f, x, y);
  if (p >= 0) return p;
  // The columns and rows whose centres the model sees (a contiguous range on each axis).
  const analysis_detail::PixelPatches m = analysis_detail::pixel_patches(f);
  auto seen = [](const std::vector<int64_t>& v) {
    const auto first = std::find_if(v.begin(), v.end(), [](int64_t i) { return i >= 0; });
    const auto last = std::find_if(v.rbegin(), v.rend(), [](int64_t i) { return i >= 0; });
    std::string range = "[";
    range += std::to_string(first - v.begin()) + ", " + std::to_string(v.rend() - last) + ")";
    return range;
  };
  return make_error(ErrorCode::kInvalidArgument,
                    point + " of " + f.source + " is cropped away by the preprocessing (" +
                        crop_mode_name(f.preprocess.crop_mode) + " crop to " + std::to_string(f.preprocess.width) +
                        "x" + std::to_string(f.preprocess.height) + "): the model sees x in " + seen(m.column) +
                        ", y in " + seen(m.row) + "; with --long-side it sees all but a rounding margin");
}

}  // namespace dinov3
