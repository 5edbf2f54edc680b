// From image files to model input, with the preprocessing the model's own config asks for.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "dinov3/image.h"
#include "dinov3/model.h"

namespace dinov3 {

// timm's eval transform settings from config.json's pretrained_cfg. `size` > 0 overrides the input
// size (square), keeping the crop ratio and interpolation.
Result<PreprocessConfig> preprocess_config_for(const ModelConfig& config, int size = 0);

// Decodes and preprocesses each file into one [B, 3, H, W] batch. The first failing file's error names it.
Result<Tensor> load_image_batch(const std::vector<std::string>& paths, const PreprocessConfig& config,
                                const DecodeOptions& options = {});

// ---- choosing the resolution (`--size S`, `--long-side L`) -------------------------------------------

// The model input size a caller asks for; at most one of the two is set, 0 means not given.
struct InputSize {
  int size = 0;       // S: a square input, each side round_to_patch(S)
  int long_side = 0;  // L: aspect ratio kept; the longer side round_to_patch(L), the shorter
                      // round_to_patch(L * shorter / longer) of the image's own sides
  bool given() const { return size != 0 || long_side != 0; }
};

// The one rounding rule: the nearest multiple of the patch size p, halves rounded up, at least one patch:
// max(p, p * floor(x / p + 1/2)). With p = 16: 500 -> 496, 700 -> 704, 8 -> 16, 7 -> 16.
int round_to_patch(double x, int patch_size);

// Largest side (pixels) an InputSize may ask for: an 8192 x 8192 input already holds 262,149 tokens.
constexpr int kMaxInputSide = 8192;

// Dense features need at least one patch of real pixels: an image narrower or shorter than one patch is
// an error naming its size.
Status check_image_covers_a_patch(int image_width, int image_height, int patch_size);

// {height, width} of the model input for an image_width x image_height image under `size` (see
// InputSize). Errors: both S and L given, a value <= 0, a side over kMaxInputSide, an image smaller than
// one patch.
Result<std::array<int, 2>> dense_input_size(const InputSize& size, int image_width, int image_height, int patch_size);

// preprocess_config_for(config) with the model input size replaced by dense_input_size when
// `size.given()`; the layout's interpolation, crop_pct, crop mode, mean and std stay as they are, and a
// center crop keeps that interpolation at a non-square size too (timm would switch to bilinear there).
// So with crop_pct 1 the image is resized to cover H x W (center: shorter-side ratio, then the rounding's
// excess cropped), squashed to H x W (squash), or fitted inside and padded (border).
Result<PreprocessConfig> preprocess_config_for_image(const ModelConfig& config, const InputSize& size, int image_width,
                                                     int image_height);

// For outputs that need one size for every image (embed): the square config of --size (no check of the
// images' own sizes), the model's own without a size; --long-side is an error.
Result<PreprocessConfig> preprocess_config_for_size(const ModelConfig& config, const InputSize& size);

// Like load_image_batch, each image preprocessed with preprocess_config_for_image. The images must come
// out the same size to form one batch (--long-side on images of different aspect ratios does not).
Result<Tensor> load_image_batch(const std::vector<std::string>& paths, const ModelConfig& config,
                                const InputSize& size, const DecodeOptions& options = {});

}  // namespace dinov3
