// From image files to model input, with the preprocessing the model's own config asks for.
#pragma once

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

}  // namespace dinov3
