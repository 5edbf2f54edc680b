// Finding a model: a folder, or a hub id looked up offline in the Hugging Face cache and /opt/atomgit.
#pragma once

#include <string>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

constexpr const char* kDefaultModelId = "timm/vit_small_patch16_dinov3.lvd1689m";

struct ModelLocation {
  std::string dir;                    // the folder holding config.json and the weights (or the file given)
  std::vector<std::string> searched;  // every place looked at, in order
};

// `spec` is a folder or a checkpoint file such as Meta's .pth (used as is when it exists) or a hub id
// "owner/name". A hub id is looked up, in order, in $HF_HUB_CACHE, else $HF_HOME/hub, else
// ~/.cache/huggingface/hub (models--owner--name/snapshots/<revision>/, the revision named by refs/main,
// else the only or newest snapshot), then in /opt/atomgit/weight/<name>. The error lists where it looked and how to get weights.
Result<ModelLocation> resolve_model(const std::string& spec);

}  // namespace dinov3
