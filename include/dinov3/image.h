// Images in, model input out: decoding and timm's eval transform, reproducing Pillow 9.4 and
// torchvision 0.14 to the 8-bit pixel, so that a tensor made here equals the one timm makes in Python.
//
//   decode_image_file    Image.open(path).convert('RGB')      JPEG, PNG, WebP, BMP (format from the bytes)
//   resize_rgb8          Image.resize(size, BICUBIC|BILINEAR)  Pillow's fixed-point separable convolution
//   transform_rgb8       timm's Resize / ResizeKeepRatio + CenterCrop / CenterCropOrPad
//   to_normalized_chw    ToTensor + Normalize
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

// 8-bit RGB pixels, row-major, interleaved (HWC): pixel (x, y) starts at pixels[(y * width + x) * 3].
struct ImageRGB8 {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;
};

struct DecodeOptions {
  // Rotate/flip by the EXIF orientation tag as ImageOps.exif_transpose does. Off by default because
  // timm's loader applies no orientation.
  bool exif_transpose = false;
  // Images with more pixels are refused before any pixel memory is allocated. The default is the limit
  // above which Pillow raises DecompressionBombError (2 * Image.MAX_IMAGE_PIXELS).
  int64_t max_pixels = 178956970;
};

// Decodes JPEG, PNG, WebP or BMP, recognised by their leading bytes, and converts to RGB with Pillow's
// rules: L and LA replicate the gray level, alpha is dropped (never composited), palettes are looked
// up, 16-bit samples become 8-bit as Pillow's modes do, CMYK follows Adobe's inverted convention.
// Errors name the file: "photo.jpg: truncated JPEG data".
Result<ImageRGB8> decode_image_file(const std::string& path, const DecodeOptions& options = {});
// Same, for bytes already in memory; messages carry no file name.
Result<ImageRGB8> decode_image_memory(const uint8_t* data, size_t size, const DecodeOptions& options = {});

enum class Interpolation { kBicubic, kBilinear };
enum class CropMode {
  kCenter,  // shorter side to the resize size, then center crop (timm's default)
  kSquash,  // both sides to the resize size, aspect ratio not kept, then center crop
  kBorder,  // longer side to the resize size, then pad with the mean color to the crop size
};

struct PreprocessConfig {
  int height = 256, width = 256;  // the model's input size (the crop)
  Interpolation interpolation = Interpolation::kBicubic;
  double crop_pct = 1.0;  // resize size = floor(crop size / crop_pct)
  CropMode crop_mode = CropMode::kCenter;
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

// Which implementation of the resampling kernels runs. Every one gives identical pixels; forcing one
// lets tests compare them and benchmarks time them.
enum class ResampleKernel { kAuto, kScalar, kAvx2 };
bool resample_kernel_available(ResampleKernel kernel);

// Pillow's Image.resize((out_w, out_h), BICUBIC or BILINEAR) on an RGB image, bit for bit.
Result<ImageRGB8> resize_rgb8(const ImageRGB8& in, int out_w, int out_h, Interpolation interpolation,
                              ResampleKernel kernel = ResampleKernel::kAuto);

// timm's eval geometry for `config`: resize, then crop (and pad, for kBorder or small images) to
// config.height x config.width. 8-bit in, 8-bit out.
Result<ImageRGB8> transform_rgb8(const ImageRGB8& in, const PreprocessConfig& config);

// Normalize's settings are usable: every mean and std finite, every std positive, and every normalised
// value (v - mean) / std for v in [0, 1] finite in float32. kInvalidArgument naming the channel otherwise.
Status check_normalization(const std::array<float, 3>& mean, const std::array<float, 3>& std);

// ToTensor + Normalize: out[c][y][x] = (v / 255 - mean[c]) / std[c] in float32. `image` must already be
// config.width x config.height; `out` holds 3 * height * width floats.
Status to_normalized_chw(const ImageRGB8& image, const PreprocessConfig& config, float* out);

// decode_image_file + transform_rgb8 + to_normalized_chw: a [3, height, width] tensor.
Result<Tensor> preprocess_image_file(const std::string& path, const PreprocessConfig& config,
                                     const DecodeOptions& options = {});

// timm's spellings: "bicubic" / "bilinear"; "center" / "squash" / "border". False for anything else.
bool parse_interpolation(const std::string& name, Interpolation* out);
bool parse_crop_mode(const std::string& name, CropMode* out);
const char* interpolation_name(Interpolation interpolation);
const char* crop_mode_name(CropMode mode);

}  // namespace dinov3
