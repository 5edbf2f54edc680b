// The one table of checkpoint tensors: each weight's role, when a model has it, its shape, and its
// spelling in each checkpoint layout (timm hub, Meta's original .pth, Hugging Face transformers).
// Validation (which tensors a checkpoint must hold), the layouts' shape probing and the loader all read
// this table; no other file spells a tensor name.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dinov3/model.h"
#include "dinov3/tensor.h"

namespace dinov3 {

enum class TensorRole {
  // Whole-model tensors.
  kClsToken,
  kRegisterTokens,
  kPatchWeight,
  kPatchBias,
  kNormWeight,
  kNormBias,
  kRopePeriods,
  // Per-block tensors (spelled with the block index).
  kNorm1Weight,
  kNorm1Bias,
  kQkvWeight,     // fused [3D, D]
  kQWeight,       // split [D, D] each
  kKWeight,
  kVWeight,
  kQBias,
  kKBias,
  kVBias,
  kQkvBias,       // fused [3D], multiplied by kQkvBiasMask
  kQkvBiasMask,
  kProjWeight,
  kProjBias,
  kLayerScale1,
  kLayerScale2,
  kNorm2Weight,
  kNorm2Bias,
  kFc1Weight,     // GELU MLP
  kFc1Bias,
  kGateWeight,    // SwiGLU MLP: silu(gate) * up
  kGateBias,
  kUpWeight,
  kUpBias,
  kFc2Weight,     // the MLP's output projection (both kinds)
  kFc2Bias,
};

constexpr int kLayoutCount = 3;
bool is_block_role(TensorRole role);

struct ExpectedTensor {
  std::string name;
  TensorRole role;
  int64_t block = -1;  // -1 for whole-model tensors
  Shape shape;
};

// The spelling of `role` (of block `block`) in `layout`, when a model of `config` holds it there;
// nullopt when it does not (absent in that layout, or not in this configuration).
std::optional<std::string> tensor_name(CheckpointLayout layout, TensorRole role, int64_t block,
                                       const ModelConfig& config);

// The spelling of `role` in `layout` whatever the configuration (the first row that has one): what a
// layout reads while it works the configuration out from tensor shapes.
std::optional<std::string> any_tensor_name(CheckpointLayout layout, TensorRole role, int64_t block = -1);

// Every tensor a checkpoint of `config` in its layout holds, with its shape.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config);

// Tensors a layout stores for training only (Meta's mask_token and local_cls_norm.*, HF's mask_token):
// accepted and not loaded.
bool is_ignored_tensor(CheckpointLayout layout, const std::string& name);

}  // namespace dinov3
