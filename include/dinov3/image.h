// Images in, model input out: decoding and timm's eval transform, reproducing Pillow 9.4 and
// torchvision 0.14 to the 8-bit pixel, so that a tensor made here equals the one timm makes in Python.
//
//   decode_image_file    Image.open(path).convert('RGB')      JPEG, PNG, WebP, BMP (format from the bytes)
//   resize_rgb8          Image.resize(size, BICUBIC|BILINEAR)  Pillow's fixed-point separable convolution
//   transform_rgb8       timm's Resize / ResizeKeepRatio + CenterCrop / CenterCropOrPad
//   to_normalized_chw    ToTensor + Normalize
//   encode_png           8-bit RGB pictures out (libpng), for the dense-feature pictures
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
  double rescale_factor = 1.0 / 255.0;  // ToTensor's 1/255 (divides, as torchvision); HF's rescale_factor
  bool normalize = true;                // false: the rescaled values as they are (HF do_normalize false)
  // timm resamples the ResizeKeepRatio of a non-square center crop bilinearly whatever `interpolation`
  // says (it builds that transform without the argument); false keeps `interpolation` there as well.
  bool non_square_center_bilinear = true;
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

// Where transform_rgb8 puts an image_width x image_height image: it is resized to resize_width x
// resize_height, and model input pixel (x, y) is resized pixel (x + offset_x, y + offset_y) (a negative
// offset pads).
struct PreprocessGeometry {
  int resize_width = 0, resize_height = 0;
  int offset_x = 0, offset_y = 0;
  Interpolation interpolation = Interpolation::kBicubic;  // the one the resize uses
};
Result<PreprocessGeometry> preprocess_geometry(int image_width, int image_height, const PreprocessConfig& config);

// The model input position of image position (x, y) (continuous pixel coordinates: pixel (i, j) spans
// [i, i + 1) x [j, j + 1), so its centre is (i + 0.5, j + 0.5)), following Pillow's resize, which maps
// output pixel centres to input positions by the size ratio: u = x * resize_width / image_width -
// offset_x, v likewise. The position is inside the model input when 0 <= u < width and 0 <= v < height.
struct InputPosition {
  double u = 0, v = 0;
};
InputPosition image_to_input(const PreprocessGeometry& g, int image_width, int image_height, double x, double y);

// Normalize's settings are usable: every mean and std finite, every std positive, and every normalised
// value (v - mean) / std for v in [0, 1] finite in float32. kInvalidArgument naming the channel otherwise.
Status check_normalization(const std::array<float, 3>& mean, const std::array<float, 3>& std);

// A PreprocessConfig every image can go through: a positive input size, a finite positive crop_pct whose
// resize size (input size / crop_pct) is within DecodeOptions' default pixel limit, and, when it
// normalises, check_normalization. kInvalidArgument otherwise. preprocess_config_for checks its result
// with it, so a wrong setting is one error before any image rather than the same error for each.
Status check_preprocess_config(const PreprocessConfig& config);

// ToTensor + Normalize: out[c][y][x] = (v / 255 - mean[c]) / std[c] in float32 (v * rescale_factor for
// another rescale factor; no mean/std step when normalize is false). `image` must already be
// config.width x config.height; `out` holds 3 * height * width floats.
Status to_normalized_chw(const ImageRGB8& image, const PreprocessConfig& config, float* out);

// transform_rgb8 + to_normalized_chw: a [3, height, width] tensor.
Result<Tensor> preprocess_image(const ImageRGB8& image, const PreprocessConfig& config);
// decode_image_file + preprocess_image.
Result<Tensor> preprocess_image_file(const std::string& path, const PreprocessConfig& config,
                                     const DecodeOptions& options = {});

// An 8-bit RGB PNG (libpng, default compression, no ancillary chunks).
Result<std::vector<uint8_t>> encode_png(const ImageRGB8& image);
// encode_png written atomically to `path`; an existing file is an error unless `overwrite`.
Status write_png_file(const std::string& path, const ImageRGB8& image, bool overwrite);

// timm's spellings: "bicubic" / "bilinear"; "center" / "squash" / "border". False for anything else.
bool parse_interpolation(const std::string& name, Interpolation* out);
bool parse_crop_mode(const std::string& name, CropMode* out);
const char* interpolation_name(Interpolation interpolation);
const char* crop_mode_name(CropMode mode);

}  // namespace dinov3
