// The model input size for patch features at a chosen resolution: one rounding rule, one function from
// (--size | --long-side, image size) to H x W, and the preprocessing built from it.
#include <algorithm>
#include <cmath>
#include <limits>

#include "dinov3/pipeline.h"
#include "util/float_env.h"

namespace dinov3 {

int round_to_patch(double x, int patch_size) {
  const ScopedDefaultFloatEnv float_env;
  if (patch_size < 1) return 0;
  // Clamped so the product stays an int: sizes past that are refused by check_input_size anyway.
  const double most = std::floor(static_cast<double>(std::numeric_limits<int>::max()) / patch_size);
  const double multiples = std::clamp(std::floor(x / patch_size + 0.5), 1.0, most);
  return static_cast<int>(std::isnan(multiples) ? 1.0 : multiples) * patch_size;
}

Status check_image_covers_a_patch(int image_width, int image_height, int patch_size) {
  if (image_width < patch_size || image_height < patch_size) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the image is " + std::to_string(image_width) + "x" + std::to_string(image_height) +
                          " pixels, smaller than one " + std::to_string(patch_size) + "x" + std::to_string(patch_size) +
                          " patch: its patch features would describe no pixels of their own");
  }
  return {};
}

namespace {

// The checks that do not need the image: at most one of S and L, positive, within kMaxInputSide.
Status check_input_size(const InputSize& size, int patch_size) {
  if (size.size != 0 && size.long_side != 0) {
    return make_error(ErrorCode::kInvalidArgument, "give --size or --long-side, not both");
  }
  if (size.size < 0 || size.long_side < 0) {
    return make_error(ErrorCode::kInvalidArgument, std::string(size.size < 0 ? "--size" : "--long-side") +
                                                       " must be a positive number of pixels");
  }
  if (patch_size <= 0) return make_error(ErrorCode::kInvalidArgument, "the patch size must be positive");
  const int requested = std::max(size.size, size.long_side);
  if (round_to_patch(std::min(requested, 2 * kMaxInputSide), patch_size) > kMaxInputSide) {
    return make_error(ErrorCode::kInvalidArgument,
                      std::string(size.size > 0 ? "--size " : "--long-side ") + std::to_string(requested) +
                          " is over the largest input side, " + std::to_string(kMaxInputSide) + " pixels");
  }
  return {};
}

PreprocessConfig with_size(PreprocessConfig p, int height, int width) {
  p.height = height;
  p.width = width;
  p.non_square_center_bilinear = false;
  return p;
}

}  // namespace

Result<std::array<int, 2>> dense_input_size(const InputSize& size, int image_width, int image_height, int patch_size) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_RETURN_IF_ERROR(check_input_size(size, patch_size));
  DINOV3_RETURN_IF_ERROR(check_image_covers_a_patch(image_width, image_height, patch_size));
  if (size.long_side == 0) {
    const int side = round_to_patch(size.size, patch_size);
    return std::array<int, 2>{side, side};
  }
  const int longer = std::max(image_width, image_height), shorter = std::min(image_width, image_height);
  const int long_out = round_to_patch(size.long_side, patch_size);
  const int short_out = round_to_patch(static_cast<double>(size.long_side) * shorter / longer, patch_size);
  if (image_width >= image_height) return std::array<int, 2>{short_out, long_out};
  return std::array<int, 2>{long_out, short_out};
}

Result<PreprocessConfig> preprocess_config_for_size(const ModelConfig& config, const InputSize& size) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_ASSIGN_OR_RETURN(const PreprocessConfig p, preprocess_config_for(config));
  if (!size.given()) return p;
  DINOV3_RETURN_IF_ERROR(check_input_size(size, static_cast<int>(config.patch_size)));
  if (size.long_side != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "--long-side gives each image the grid of its own aspect ratio, and this output needs one size "
                      "for all images: use --size");
  }
  const int side = round_to_patch(size.size, static_cast<int>(config.patch_size));
  return with_size(p, side, side);
}

Result<PreprocessConfig> preprocess_config_for_image(const ModelConfig& config, const InputSize& size, int image_width,
                                                     int image_height) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_ASSIGN_OR_RETURN(const PreprocessConfig p, preprocess_config_for(config));
  if (!size.given()) return p;
  DINOV3_ASSIGN_OR_RETURN(const auto hw, dense_input_size(size, image_width, image_height,
                                                          static_cast<int>(config.patch_size)));
  return with_size(p, hw[0], hw[1]);
}

Result<Tensor> load_image_batch(const std::vector<std::string>& paths, const ModelConfig& config,
                                const InputSize& size, const DecodeOptions& options) {
  if (!size.given()) {
    DINOV3_ASSIGN_OR_RETURN(const PreprocessConfig p, preprocess_config_for(config));
    return load_image_batch(paths, p, options);
  }
  if (paths.empty()) return make_error(ErrorCode::kInvalidArgument, "no images given");
  Tensor batch;
  for (size_t i = 0; i < paths.size(); ++i) {
    DINOV3_ASSIGN_OR_RETURN(const ImageRGB8 image, decode_image_file(paths[i], options));
    Result<PreprocessConfig> p = preprocess_config_for_image(config, size, image.width, image.height);
    if (!p.ok()) return p.status().with_context(paths[i]);
    if (i == 0) {
      batch = Tensor({static_cast<int64_t>(paths.size()), 3, p->height, p->width});
    } else if (p->height != batch.shape[2] || p->width != batch.shape[3]) {
      return make_error(ErrorCode::kInvalidArgument,
                        paths[i] + " comes out " + std::to_string(p->width) + "x" + std::to_string(p->height) + " but " +
                            paths[0] + " " + std::to_string(batch.shape[3]) + "x" + std::to_string(batch.shape[2]) +
                            ": one batch needs one size (run them separately, or use --size)");
    }
    Result<Tensor> one = preprocess_image(image, *p);
    if (!one.ok()) return one.status().with_context(paths[i]);
    std::copy(one->data.begin(), one->data.end(), batch.data.begin() + static_cast<int64_t>(i) * one->numel());
  }
  return batch;
}

}  // namespace dinov3
