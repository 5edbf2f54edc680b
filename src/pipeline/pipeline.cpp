#include "dinov3/pipeline.h"

#include <algorithm>

#include "util/alloc_guard.h"

namespace dinov3 {

Result<PreprocessConfig> preprocess_config_for(const ModelConfig& config, int size) {
  const DataConfig& d = config.data;
  PreprocessConfig p;
  if (!parse_interpolation(d.interpolation, &p.interpolation)) {
    return make_error(ErrorCode::kUnsupported, "pretrained_cfg.interpolation '" + d.interpolation +
                                                   "' is not supported (bicubic or bilinear)");
  }
  if (!parse_crop_mode(d.crop_mode, &p.crop_mode)) {
    return make_error(ErrorCode::kUnsupported, "pretrained_cfg.crop_mode '" + d.crop_mode +
                                                   "' is not supported (center, squash or border)");
  }
  if (d.channels != 3) {
    return make_error(ErrorCode::kUnsupported, "images give 3 channels, the model takes " + std::to_string(d.channels));
  }
  p.height = static_cast<int>(size > 0 ? size : d.height);
  p.width = static_cast<int>(size > 0 ? size : d.width);
  if (p.height % config.patch_size != 0 || p.width % config.patch_size != 0) {
    return make_error(ErrorCode::kInvalidArgument, "input size " + std::to_string(p.height) + "x" +
                                                       std::to_string(p.width) + " is not a multiple of the patch size " +
                                                       std::to_string(config.patch_size));
  }
  p.crop_pct = d.crop_pct;
  p.mean = d.mean;
  p.std = d.std;
  return p;
}

Result<Tensor> load_image_batch(const std::vector<std::string>& paths, const PreprocessConfig& config,
                                const DecodeOptions& options) {
  if (paths.empty()) return make_error(ErrorCode::kInvalidArgument, "no images given");
  return guard_allocations("loading images", [&]() -> Result<Tensor> {
    const int64_t per_image = 3 * static_cast<int64_t>(config.height) * config.width;
    Tensor batch({static_cast<int64_t>(paths.size()), 3, config.height, config.width});
    for (size_t i = 0; i < paths.size(); ++i) {
      DINOV3_ASSIGN_OR_RETURN(Tensor one, preprocess_image_file(paths[i], config, options));
      std::copy(one.data.begin(), one.data.end(), batch.data.begin() + static_cast<int64_t>(i) * per_image);
    }
    return batch;
  });
}

}  // namespace dinov3
