#include "model/tensor_table.h"

#include <array>

namespace dinov3 {
namespace {

// When a configuration holds the tensor.
enum class When { kAlways, kRegisters, kQBias, kKBias, kVBias, kProjBias, kGelu, kGeluBias, kSwiGlu, kSwiGluBias };
// Its shape, from the configuration.
enum class Dims { kCls, kRegisters, kPatch, kD, k3D, kDxD, k3DxD, kHxD, kH, kDxH, kPeriods };

struct Row {
  TensorRole role;
  When when;
  Dims dims;
  // Spelling in the timm, Meta and Hugging Face layouts, in CheckpointLayout order; "" where the layout
  // has no such tensor; "{}" stands for the block index.
  std::array<const char*, kLayoutCount> names;
};

using R = TensorRole;
using W = When;
using S = Dims;

constexpr Row kTable[] = {
    {R::kClsToken, W::kAlways, S::kCls, {"cls_token", "cls_token", "embeddings.cls_token"}},
    {R::kRegisterTokens, W::kRegisters, S::kRegisters, {"reg_token", "storage_tokens", "embeddings.register_tokens"}},
    {R::kPatchWeight, W::kAlways, S::kPatch,
     {"patch_embed.proj.weight", "patch_embed.proj.weight", "embeddings.patch_embeddings.weight"}},
    {R::kPatchBias, W::kAlways, S::kD,
     {"patch_embed.proj.bias", "patch_embed.proj.bias", "embeddings.patch_embeddings.bias"}},
    {R::kNormWeight, W::kAlways, S::kD, {"norm.weight", "norm.weight", "norm.weight"}},
    {R::kNormBias, W::kAlways, S::kD, {"norm.bias", "norm.bias", "norm.bias"}},
    {R::kRopePeriods, W::kAlways, S::kPeriods, {"", "rope_embed.periods", ""}},

    {R::kNorm1Weight, W::kAlways, S::kD, {"blocks.{}.norm1.weight", "blocks.{}.norm1.weight", "layer.{}.norm1.weight"}},
    {R::kNorm1Bias, W::kAlways, S::kD, {"blocks.{}.norm1.bias", "blocks.{}.norm1.bias", "layer.{}.norm1.bias"}},
    {R::kQkvWeight, W::kAlways, S::k3DxD, {"blocks.{}.attn.qkv.weight", "blocks.{}.attn.qkv.weight", ""}},
    {R::kQWeight, W::kAlways, S::kDxD, {"", "", "layer.{}.attention.q_proj.weight"}},
    {R::kKWeight, W::kAlways, S::kDxD, {"", "", "layer.{}.attention.k_proj.weight"}},
    {R::kVWeight, W::kAlways, S::kDxD, {"", "", "layer.{}.attention.v_proj.weight"}},
    {R::kQBias, W::kQBias, S::kD, {"blocks.{}.attn.q_bias", "", "layer.{}.attention.q_proj.bias"}},
    {R::kKBias, W::kKBias, S::kD, {"", "", "layer.{}.attention.k_proj.bias"}},
    {R::kVBias, W::kVBias, S::kD, {"blocks.{}.attn.v_bias", "", "layer.{}.attention.v_proj.bias"}},
    {R::kQkvBias, W::kQBias, S::k3D, {"", "blocks.{}.attn.qkv.bias", ""}},
    {R::kQkvBiasMask, W::kQBias, S::k3D, {"", "blocks.{}.attn.qkv.bias_mask", ""}},
    {R::kProjWeight, W::kAlways, S::kDxD,
     {"blocks.{}.attn.proj.weight", "blocks.{}.attn.proj.weight", "layer.{}.attention.o_proj.weight"}},
    {R::kProjBias, W::kProjBias, S::kD,
     {"blocks.{}.attn.proj.bias", "blocks.{}.attn.proj.bias", "layer.{}.attention.o_proj.bias"}},
    {R::kLayerScale1, W::kAlways, S::kD, {"blocks.{}.gamma_1", "blocks.{}.ls1.gamma", "layer.{}.layer_scale1.lambda1"}},
    {R::kLayerScale2, W::kAlways, S::kD, {"blocks.{}.gamma_2", "blocks.{}.ls2.gamma", "layer.{}.layer_scale2.lambda1"}},
    {R::kNorm2Weight, W::kAlways, S::kD, {"blocks.{}.norm2.weight", "blocks.{}.norm2.weight", "layer.{}.norm2.weight"}},
    {R::kNorm2Bias, W::kAlways, S::kD, {"blocks.{}.norm2.bias", "blocks.{}.norm2.bias", "layer.{}.norm2.bias"}},
    {R::kFc1Weight, W::kGelu, S::kHxD, {"blocks.{}.mlp.fc1.weight", "blocks.{}.mlp.fc1.weight", "layer.{}.mlp.up_proj.weight"}},
    {R::kFc1Bias, W::kGeluBias, S::kH, {"blocks.{}.mlp.fc1.bias", "blocks.{}.mlp.fc1.bias", "layer.{}.mlp.up_proj.bias"}},
    {R::kGateWeight, W::kSwiGlu, S::kHxD,
     {"blocks.{}.mlp.fc1_g.weight", "blocks.{}.mlp.w1.weight", "layer.{}.mlp.gate_proj.weight"}},
    {R::kGateBias, W::kSwiGluBias, S::kH, {"blocks.{}.mlp.fc1_g.bias", "blocks.{}.mlp.w1.bias", "layer.{}.mlp.gate_proj.bias"}},
    {R::kUpWeight, W::kSwiGlu, S::kHxD, {"blocks.{}.mlp.fc1_x.weight", "blocks.{}.mlp.w2.weight", "layer.{}.mlp.up_proj.weight"}},
    {R::kUpBias, W::kSwiGluBias, S::kH, {"blocks.{}.mlp.fc1_x.bias", "blocks.{}.mlp.w2.bias", "layer.{}.mlp.up_proj.bias"}},
    {R::kFc2Weight, W::kGelu, S::kDxH, {"blocks.{}.mlp.fc2.weight", "blocks.{}.mlp.fc2.weight", "layer.{}.mlp.down_proj.weight"}},
    {R::kFc2Weight, W::kSwiGlu, S::kDxH, {"blocks.{}.mlp.fc2.weight", "blocks.{}.mlp.w3.weight", "layer.{}.mlp.down_proj.weight"}},
    {R::kFc2Bias, W::kGeluBias, S::kD, {"blocks.{}.mlp.fc2.bias", "blocks.{}.mlp.fc2.bias", "layer.{}.mlp.down_proj.bias"}},
    {R::kFc2Bias, W::kSwiGluBias, S::kD, {"blocks.{}.mlp.fc2.bias", "blocks.{}.mlp.w3.bias", "layer.{}.mlp.down_proj.bias"}},
};

// Training-only tensors, by exact name or (ending in '.') by prefix, per layout.
struct Ignored {
  CheckpointLayout layout;
  const char* name;
};
constexpr Ignored kIgnored[] = {
    {CheckpointLayout::kMeta, "mask_token"},
    {CheckpointLayout::kMeta, "local_cls_norm."},  // the 7B's second CLS norm, used in training only
    {CheckpointLayout::kHuggingFace, "embeddings.mask_token"},
};

bool holds(When when, const ModelConfig& c) {
  const bool gelu = c.mlp == MlpKind::kGelu;
  switch (when) {
    case When::kAlways: return true;
    case When::kRegisters: return c.num_reg_tokens > 0;
    case When::kQBias: return c.q_bias;
    case When::kKBias: return c.k_bias;
    case When::kVBias: return c.v_bias;
    case When::kProjBias: return c.proj_bias;
    case When::kGelu: return gelu;
    case When::kGeluBias: return gelu && c.mlp_bias;
    case When::kSwiGlu: return !gelu;
    case When::kSwiGluBias: return !gelu && c.mlp_bias;
  }
  return false;
}

Shape shape_of(Dims dims, const ModelConfig& c) {
  const int64_t D = c.embed_dim, H = c.mlp_hidden;
  switch (dims) {
    case Dims::kCls: return {1, 1, D};
    case Dims::kRegisters: return {1, c.num_reg_tokens, D};
    case Dims::kPatch: return {D, c.in_chans, c.patch_size, c.patch_size};
    case Dims::kD: return {D};
    case Dims::k3D: return {3 * D};
    case Dims::kDxD: return {D, D};
    case Dims::k3DxD: return {3 * D, D};
    case Dims::kHxD: return {H, D};
    case Dims::kH: return {H};
    case Dims::kDxH: return {D, H};
    case Dims::kPeriods: return {c.head_dim() / 4};
  }
  return {};
}

std::string spell(const char* pattern, int64_t block) {
  std::string name = pattern;
  if (const auto at = name.find("{}"); at != std::string::npos) name.replace(at, 2, std::to_string(block));
  return name;
}

const char* spelling(const Row& row, CheckpointLayout layout) { return row.names[static_cast<size_t>(layout)]; }

}  // namespace

bool is_block_role(TensorRole role) { return role >= TensorRole::kNorm1Weight; }

std::optional<std::string> tensor_name(CheckpointLayout layout, TensorRole role, int64_t block,
                                       const ModelConfig& config) {
  for (const Row& row : kTable) {
    if (row.role != role || *spelling(row, layout) == '\0' || !holds(row.when, config)) continue;
    return spell(spelling(row, layout), block);
  }
  return std::nullopt;
}

std::optional<std::string> any_tensor_name(CheckpointLayout layout, TensorRole role, int64_t block) {
  for (const Row& row : kTable) {
    if (row.role == role && *spelling(row, layout) != '\0') return spell(spelling(row, layout), block);
  }
  return std::nullopt;
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& config) {
  std::vector<ExpectedTensor> out;
  auto add = [&](const Row& row, int64_t block) {
    out.push_back({spell(spelling(row, config.layout), block), row.role, block, shape_of(row.dims, config)});
  };
  for (const Row& row : kTable) {
    if (is_block_role(row.role) || *spelling(row, config.layout) == '\0' || !holds(row.when, config)) continue;
    add(row, -1);
  }
  for (int64_t i = 0; i < config.depth; ++i) {
    for (const Row& row : kTable) {
      if (!is_block_role(row.role) || *spelling(row, config.layout) == '\0' || !holds(row.when, config)) continue;
      add(row, i);
    }
  }
  return out;
}

bool is_ignored_tensor(CheckpointLayout layout, const std::string& name) {
  for (const Ignored& ig : kIgnored) {
    if (ig.layout != layout) continue;
    const std::string pattern = ig.name;
    if (pattern.back() == '.' ? name.rfind(pattern, 0) == 0 : name == pattern) return true;
  }
  return false;
}

}  // namespace dinov3
