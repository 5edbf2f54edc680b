// From image files to model input, with the preprocessing the model's own config asks for.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
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
// max(p, p * floor(x / p + 1/2)). With p = 16: 500 -> 496, 700 -> 704, 8 -> 16, 7 -> 16. At most the
// largest multiple of p an int holds; 0 for a patch size below 1.
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

// Scales each of `rows` vectors of `width` floats to unit L2 norm (an all-zero vector stays zero): embed's
// --normalize, and Python's embed(normalize=True).
void l2_normalize_rows(float* data, size_t rows, size_t width);

// Decodes and preprocesses image files on worker threads, a bounded distance ahead of the consumer, and
// hands them out in input order: the decode-ahead stage of `dinov3 embed` and of Python's Model.embed.
// An unreadable file is an item with ok == false and the reason, never an error of the whole run.
// One consumer thread calls take(); the workers stop and are joined when the prefetcher is destroyed.
// A prefetcher belongs to the process that made it: a process forked from that one has none of its worker
// threads, so there take() gives every index an item with ok == false that says so (instead of waiting
// forever), and destroying it leaves its memory alone (its lock may have been held by a thread that the
// fork did not copy) instead of joining threads that do not exist.
class ImagePrefetcher {
 public:
  struct Item {
    bool ok = false;
    std::string reason;  // why the file was skipped ("photo.jpg: truncated JPEG data")
    Tensor chw;          // [3, height, width] when ok
  };

  // Starts `workers` threads over paths[first, end). At most `window` items are decoded ahead of the
  // last one taken.
  ImagePrefetcher(std::vector<std::string> paths, size_t first, size_t window, int workers,
                  const PreprocessConfig& config, const DecodeOptions& options = {});
  ~ImagePrefetcher();
  ImagePrefetcher(const ImagePrefetcher&) = delete;
  ImagePrefetcher& operator=(const ImagePrefetcher&) = delete;

  const std::vector<std::string>& paths() const;
  // Whether this is the process that made the prefetcher (false in a process forked from it).
  bool in_own_process() const;
  // The item for paths()[index], waiting for it if needed. Indices are taken in increasing order, each
  // once; skipping ahead drops the paths in between. An index past the end, already taken or before
  // `first` gives an item with ok == false and the reason.
  Item take(size_t index);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dinov3
