// From image files to model input, with the preprocessing the model's own config asks for.
#pragma once

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

// Scales each of `rows` vectors of `width` floats to unit L2 norm (an all-zero vector stays zero): embed's
// --normalize, and Python's embed(normalize=True).
void l2_normalize_rows(float* data, size_t rows, size_t width);

// Decodes and preprocesses image files on worker threads, a bounded distance ahead of the consumer, and
// hands them out in input order: the decode-ahead stage of `dinov3 embed` and of Python's Model.embed.
// An unreadable file is an item with ok == false and the reason, never an error of the whole run.
// One consumer thread calls take(); the workers stop and are joined when the prefetcher is destroyed.
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
  // The item for paths()[index], waiting for it if needed. Indices are taken in increasing order.
  Item take(size_t index);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace dinov3
