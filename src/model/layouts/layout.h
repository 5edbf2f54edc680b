// One file per checkpoint layout: each recognises its files, works out the configuration (from a config
// file or from tensor shapes) and gives the layout's own defaults (pooling, preprocessing). Nothing
// outside src/model/layouts/ knows which layouts exist; tensor names live in model/tensor_table.h.
#pragma once

#include <string>

#include "model/checkpoint.h"

namespace dinov3::layouts {

// A timm hub folder: config.json (architecture, model_args, pretrained_cfg) + weights.
Result<Checkpoint> open_timm(const std::string& dir, const std::string& config_text);
// A Hugging Face transformers folder: config.json (model_type dinov3_vit), weights, preprocessor_config.json.
Result<Checkpoint> open_hf(const std::string& dir, const std::string& config_text);
// Meta's original release: one torch.save .pth of the state_dict.
Result<Checkpoint> open_meta(const std::string& pth_path);

// The weights of a folder: model.safetensors, else the shards of model.safetensors.index.json, else
// pytorch_model.bin. `format` gets the format's name.
Result<TensorArchive> open_folder_weights(const std::string& dir, std::string* format);

// Preprocessing settings every layout must satisfy (finite mean, positive finite std, a positive size).
Status check_data_config(const DataConfig& data);

}  // namespace dinov3::layouts
