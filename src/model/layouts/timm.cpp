// timm hub folders: config.json names the architecture (model_args override it, pretrained_cfg holds the
// preprocessing); the MLP width comes from the weights.
#include "model/layouts/layout.h"

namespace dinov3::layouts {

Result<Checkpoint> open_timm(const std::string& dir, const std::string& config_text) {
  Result<ModelConfig> parsed = parse_model_config(config_text);
  if (!parsed.ok()) return parsed.status().with_context(dir);
  Checkpoint ckpt;
  ckpt.config = std::move(parsed).value();
  ckpt.config.layout = CheckpointLayout::kTimm;
  DINOV3_ASSIGN_OR_RETURN(ckpt.archive, open_folder_weights(dir, &ckpt.format));
  Result<int64_t> hidden = mlp_width_from_tensors(ckpt.archive, ckpt.config);
  if (!hidden.ok()) return hidden.status().with_context(ckpt.archive.path());
  ckpt.config.mlp_hidden = *hidden;
  return ckpt;
}

}  // namespace dinov3::layouts
