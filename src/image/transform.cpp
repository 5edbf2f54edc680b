// timm's eval geometry (transforms_imagenet_eval in timm 1.0 on torchvision 0.14), ToTensor and
// Normalize. The crop is folded into the resize: only the pixels that survive it are computed.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "dinov3/image.h"
#include "image/decoders.h"
#include "image/resample.h"
#include "util/api_guard.h"

namespace dinov3 {
namespace {

// Python's round() of a float: to the nearest integer, ties to even.
double python_round(double v) {
  const double lower = std::floor(v);
  const double frac = v - lower;
  if (frac > 0.5) return lower + 1;
  if (frac < 0.5) return lower;
  return std::fmod(lower, 2.0) == 0.0 ? lower : lower + 1;
}

// Where the crop of one axis starts in the resized image: torchvision's CenterCrop (and timm's
// CenterCropOrPad) pads a too-small side by (crop - size) // 2 in front, otherwise starts at
// int(round((size - crop) / 2.0)).
int crop_offset(int size, int crop) {
  if (crop > size) return -((crop - size) / 2);
  return static_cast<int>(python_round((size - crop) / 2.0));
}

// The color of output pixels outside the resized image: the mean color for kBorder, else black.
std::array<uint8_t, 3> fill_color(const PreprocessConfig& config) {
  std::array<uint8_t, 3> fill{0, 0, 0};
  if (config.crop_mode != CropMode::kBorder) return fill;
  for (int c = 0; c < 3; ++c) {
    fill[c] = static_cast<uint8_t>(std::clamp(python_round(255.0 * config.mean[c]), 0.0, 255.0));
  }
  return fill;
}

Status normalize_table(const PreprocessConfig& config, float (&table)[3][256]);  // below

// The geometry's part of check_preprocess_config.
Status check_crop(const PreprocessConfig& config) {
  if (config.height <= 0 || config.width <= 0) {
    return make_error(ErrorCode::kInvalidArgument, "preprocess: the input size must be positive");
  }
  if (!(config.crop_pct > 0.0) || !std::isfinite(config.crop_pct)) {
    return make_error(ErrorCode::kInvalidArgument, "preprocess: crop_pct must be a positive number");
  }
  if (config.crop_mode != CropMode::kCenter && config.crop_mode != CropMode::kSquash &&
      config.crop_mode != CropMode::kBorder) {
    return make_error(ErrorCode::kInvalidArgument, "preprocess: crop mode " +
                                                       std::to_string(static_cast<int>(config.crop_mode)) +
                                                       " is none of center, squash and border");
  }
  const double scale_h = std::floor(config.height / config.crop_pct);
  const double scale_w = std::floor(config.width / config.crop_pct);
  if (scale_h < 1 || scale_w < 1) {
    char what[160];
    std::snprintf(what, sizeof(what), "preprocess: crop_pct %g resizes a %dx%d input to nothing", config.crop_pct,
                  config.width, config.height);
    return make_error(ErrorCode::kInvalidArgument, what);
  }
  const double resize_pixels = scale_h * scale_w;
  if (const int64_t limit = DecodeOptions{}.max_pixels; resize_pixels > static_cast<double>(limit)) {
    char what[160];
    std::snprintf(what, sizeof(what), "preprocess: crop_pct %g resizes to more than %lld pixels for a %dx%d input",
                  config.crop_pct, static_cast<long long>(limit), config.width, config.height);
    return make_error(ErrorCode::kInvalidArgument, what);
  }
  return {};
}

}  // namespace

Status check_preprocess_config(const PreprocessConfig& config) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_RETURN_IF_ERROR(check_crop(config));
  float table[3][256];
  return normalize_table(config, table);
}

Result<PreprocessGeometry> preprocess_geometry(int width, int height, const PreprocessConfig& config) {
  const ScopedDefaultFloatEnv float_env;
  DINOV3_RETURN_IF_ERROR(check_crop(config));
  if (width < 1 || height < 1) {
    return make_error(ErrorCode::kInvalidArgument, "preprocess: a " + std::to_string(width) + "x" +
                                                       std::to_string(height) + " image has no pixels to resize");
  }
  const double scale_h = std::floor(config.height / config.crop_pct);
  const double scale_w = std::floor(config.width / config.crop_pct);
  PreprocessGeometry g;
  g.interpolation = config.interpolation;
  double new_h = 0, new_w = 0;
  // ResizeKeepRatio: scale both sides by one ratio, taken from the longer (border) or the shorter
  // (center, non-square) side, and round each size.
  auto keep_ratio = [&](bool longest) {
    const double ratio_h = height / scale_h, ratio_w = width / scale_w;
    const double ratio = longest ? std::max(ratio_h, ratio_w) : std::min(ratio_h, ratio_w);
    new_h = python_round(height / ratio);
    new_w = python_round(width / ratio);
  };
  switch (config.crop_mode) {
    case CropMode::kCenter:
      if (scale_h == scale_w) {
        // torchvision Resize(int): the shorter side becomes `scale`, the longer int(scale * long / short).
        const double scale = scale_h;
        if (width <= height) {
          new_w = scale;
          new_h = std::trunc(scale * height / width);
        } else {
          new_h = scale;
          new_w = std::trunc(scale * width / height);
        }
      } else {
        keep_ratio(false);
        // timm builds this ResizeKeepRatio without passing the interpolation, so it uses its default.
        if (config.non_square_center_bilinear) g.interpolation = Interpolation::kBilinear;
      }
      break;
    case CropMode::kSquash:
      new_h = scale_h;
      new_w = scale_w;
      break;
    case CropMode::kBorder:
      keep_ratio(true);
      break;
  }
  constexpr double kMaxSide = 1 << 30;
  if (!(new_w >= 1 && new_h >= 1 && new_w <= kMaxSide && new_h <= kMaxSide)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "preprocess: a " + std::to_string(width) + "x" + std::to_string(height) +
                          " image cannot be resized for this input size (its aspect ratio is too extreme)");
  }
  g.resize_width = static_cast<int>(new_w);
  g.resize_height = static_cast<int>(new_h);
  g.offset_x = crop_offset(g.resize_width, config.width);
  g.offset_y = crop_offset(g.resize_height, config.height);
  return g;
}

InputPosition image_to_input(const PreprocessGeometry& g, int image_width, int image_height, double x, double y) {
  const ScopedDefaultFloatEnv float_env;
  return {x * g.resize_width / image_width - g.offset_x, y * g.resize_height / image_height - g.offset_y};
}

namespace {

Result<ImageRGB8> transform_unguarded(const ImageRGB8& in, const PreprocessConfig& config) {
  if (in.width <= 0 || in.height <= 0 || in.pixels.size() != size_t(in.width) * size_t(in.height) * 3) {
    return make_error(ErrorCode::kInvalidArgument,
                      "preprocess: the image is empty or its pixel buffer has the wrong size");
  }
  DINOV3_ASSIGN_OR_RETURN(const PreprocessGeometry g, preprocess_geometry(in.width, in.height, config));
  // The part of the output covered by the resized image, in resized coordinates.
  image_detail::OutputWindow window;
  window.x = std::max(0, g.offset_x);
  window.y = std::max(0, g.offset_y);
  window.width = std::min(g.resize_width, g.offset_x + config.width) - window.x;
  window.height = std::min(g.resize_height, g.offset_y + config.height) - window.y;
  DINOV3_ASSIGN_OR_RETURN(ImageRGB8 resized, image_detail::resize_window(in, g.resize_width, g.resize_height, window,
                                                                         g.interpolation, ResampleKernel::kAuto));
  if (window.width == config.width && window.height == config.height) return resized;

  ImageRGB8 out;
  DINOV3_RETURN_IF_ERROR(image_detail::allocate_image(config.width, config.height, &out));
  const std::array<uint8_t, 3> fill = fill_color(config);
  for (size_t i = 0; i < out.pixels.size(); i += 3) std::memcpy(&out.pixels[i], fill.data(), 3);
  const int dst_x = window.x - g.offset_x, dst_y = window.y - g.offset_y;
  for (int y = 0; y < window.height; ++y) {
    std::memcpy(&out.pixels[(size_t(dst_y + y) * out.width + dst_x) * 3], &resized.pixels[size_t(y) * window.width * 3],
                size_t(window.width) * 3);
  }
  return out;
}

}  // namespace

Result<ImageRGB8> transform_rgb8(const ImageRGB8& in, const PreprocessConfig& config) {
  return guard_api_call("preprocess", [&] { return transform_unguarded(in, config); });
}

Status check_normalization(const std::array<float, 3>& mean, const std::array<float, 3>& std) {
  for (int c = 0; c < 3; ++c) {
    char which[96];
    std::snprintf(which, sizeof(which), "normalize: channel %d has mean %g and std %g", c, mean[c], std[c]);
    if (!std::isfinite(mean[c]) || !std::isfinite(std[c]) || !(std[c] > 0.0f))
      return make_error(ErrorCode::kInvalidArgument, std::string(which) + "; both must be finite and std positive");
    // The output is monotonic in the pixel value, so its two ends bound every normalised value.
    for (const float v : {0.0f, 1.0f}) {
      if (!std::isfinite((v - mean[c]) / std[c]))
        return make_error(ErrorCode::kInvalidArgument, std::string(which) + "; the normalised values overflow float32");
    }
  }
  return {};
}

namespace {

// ToTensor divides by 255 in float32, Normalize subtracts and divides in float32: a table of the 256
// possible results per channel gives exactly those values. An error when one is not finite.
Status normalize_table(const PreprocessConfig& config, float (&table)[3][256]) {
  if (config.normalize) DINOV3_RETURN_IF_ERROR(check_normalization(config.mean, config.std));
  const bool to_tensor = config.rescale_factor == 1.0 / 255.0;
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      const float scaled = to_tensor ? static_cast<float>(v) / 255.0f
                                     : static_cast<float>(static_cast<float>(v) * static_cast<float>(config.rescale_factor));
      table[c][v] = config.normalize ? (scaled - config.mean[c]) / config.std[c] : scaled;
      if (!std::isfinite(table[c][v])) {
        return make_error(ErrorCode::kInvalidArgument, "normalize: rescale factor " + std::to_string(config.rescale_factor) +
                                                           " gives values that are not finite");
      }
    }
  }
  return {};
}

}  // namespace

Status to_normalized_chw(const ImageRGB8& image, const PreprocessConfig& config, float* out) {
  const ScopedDefaultFloatEnv float_env;
  if (image.width != config.width || image.height != config.height ||
      image.pixels.size() != size_t(image.width) * size_t(image.height) * 3) {
    return make_error(ErrorCode::kInvalidArgument,
                      "normalize: image is " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                          ", expected " + std::to_string(config.width) + "x" + std::to_string(config.height));
  }
  float table[3][256];
  DINOV3_RETURN_IF_ERROR(normalize_table(config, table));
  const size_t plane = size_t(image.width) * size_t(image.height);
  const uint8_t* px = image.pixels.data();
  for (size_t i = 0; i < plane; ++i) {
    out[i] = table[0][px[3 * i]];
    out[plane + i] = table[1][px[3 * i + 1]];
    out[2 * plane + i] = table[2][px[3 * i + 2]];
  }
  return {};
}

Result<Tensor> preprocess_image(const ImageRGB8& image, const PreprocessConfig& config) {
  DINOV3_ASSIGN_OR_RETURN(const ImageRGB8 input, transform_rgb8(image, config));
  return guard_api_call("preprocess", [&]() -> Result<Tensor> {
    Tensor tensor({3, config.height, config.width});
    DINOV3_RETURN_IF_ERROR(to_normalized_chw(input, config, tensor.ptr()));
    return tensor;
  });
}

Result<Tensor> preprocess_image_file(const std::string& path, const PreprocessConfig& config,
                                     const DecodeOptions& options) {
  DINOV3_ASSIGN_OR_RETURN(const ImageRGB8 image, decode_image_file(path, options));
  Result<Tensor> tensor = preprocess_image(image, config);
  if (!tensor.ok()) return tensor.status().with_context(path);
  return tensor;
}

bool parse_interpolation(const std::string& name, Interpolation* out) {
  if (name == "bicubic") {
    *out = Interpolation::kBicubic;
  } else if (name == "bilinear") {
    *out = Interpolation::kBilinear;
  } else {
    return false;
  }
  return true;
}

bool parse_crop_mode(const std::string& name, CropMode* out) {
  if (name == "center") {
    *out = CropMode::kCenter;
  } else if (name == "squash") {
    *out = CropMode::kSquash;
  } else if (name == "border") {
    *out = CropMode::kBorder;
  } else {
    return false;
  }
  return true;
}

const char* interpolation_name(Interpolation interpolation) {
  return interpolation == Interpolation::kBicubic ? "bicubic" : "bilinear";
}

const char* crop_mode_name(CropMode mode) {
  switch (mode) {
    case CropMode::kCenter: return "center";
    case CropMode::kSquash: return "squash";
    case CropMode::kBorder: return "border";
  }
  return "center";
}

}  // namespace dinov3
