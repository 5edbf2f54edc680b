// Meta's original checkpoints (facebookresearch/dinov3): one torch.save .pth of the state_dict and no
// configuration. The architecture is read from tensor shapes, the head dim from the stored RoPE periods
// (hd = 4 * len(periods)), which are also what RoPE is built from (stored bf16-rounded, as Meta's code uses
// them). Defaults are Meta's: the CLS token as the pooled output (model(x)), and the recommended transform,
// Resize((256, 256)) on a PIL image (Pillow bilinear, aspect not kept), ToTensor, ImageNet normalisation;
// the satellite weights (sat493m, which only the file name tells) normalise with their own mean and std.
#include <cmath>
#include <filesystem>

#include "model/layouts/layout.h"

namespace dinov3::layouts {
namespace {

constexpr CheckpointLayout kMeta = CheckpointLayout::kMeta;

Status meta_error(const std::string& what) { return make_error(ErrorCode::kFormatError, what); }

const RawTensor* find(const TensorArchive& archive, TensorRole role, int64_t block = -1) {
  const std::optional<std::string> name = any_tensor_name(kMeta, role, block);
  return name ? archive.find(*name) : nullptr;
}

std::string name_of(TensorRole role, int64_t block = -1) { return any_tensor_name(kMeta, role, block).value_or("?"); }

// Architecture from the tensors: what Meta's DinoVisionTransformer was built with.
Status read_architecture(const TensorArchive& archive, ModelConfig* c) {
  const RawTensor* patch = find(archive, TensorRole::kPatchWeight);
  if (patch == nullptr) {
    return meta_error("no tensor '" + name_of(TensorRole::kPatchWeight) +
                      "': not a DINOv3 checkpoint in Meta's layout");
  }
  if (patch->shape.size() != 4 || patch->shape[2] != patch->shape[3] || patch->shape[0] <= 0 || patch->shape[1] <= 0 ||
      patch->shape[2] <= 0)
    return meta_error("tensor '" + patch->name + "' has shape " + shape_to_string(patch->shape) + ", expected [D, C, p, p]");
  c->embed_dim = patch->shape[0];
  c->in_chans = patch->shape[1];
  c->patch_size = patch->shape[2];

  const RawTensor* regs = find(archive, TensorRole::kRegisterTokens);
  c->num_reg_tokens = regs != nullptr && regs->shape.size() == 3 ? regs->shape[1] : 0;

  c->depth = 0;
  while (find(archive, TensorRole::kNorm1Weight, c->depth) != nullptr) ++c->depth;
  if (c->depth == 0) return meta_error("no transformer blocks (no '" + name_of(TensorRole::kNorm1Weight, 0) + "')");

  if (find(archive, TensorRole::kGateWeight, 0) != nullptr) {
    c->mlp = MlpKind::kSwiGlu;
  } else if (find(archive, TensorRole::kFc1Weight, 0) != nullptr) {
    c->mlp = MlpKind::kGelu;
  } else {
    return meta_error("block 0 has no MLP ('" + name_of(TensorRole::kFc1Weight, 0) + "' or '" +
                      name_of(TensorRole::kGateWeight, 0) + "')");
  }
  DINOV3_ASSIGN_OR_RETURN(c->mlp_hidden, mlp_width_from_tensors(archive, *c));
  // Optional biases, as Meta's constructor flags (qkv_bias, proj_bias, ffn_bias) leave them.
  c->q_bias = c->v_bias = find(archive, TensorRole::kQkvBias, 0) != nullptr;
  c->k_bias = false;  // stored in qkv.bias, zeroed by bias_mask (mask_k_bias)
  c->proj_bias = find(archive, TensorRole::kProjBias, 0) != nullptr;
  c->mlp_bias = find(archive, c->mlp == MlpKind::kGelu ? TensorRole::kFc1Bias : TensorRole::kGateBias, 0) != nullptr;

  // The head dimension is not stored anywhere but in the number of RoPE periods.
  const RawTensor* periods = find(archive, TensorRole::kRopePeriods);
  if (periods == nullptr) {
    return meta_error("no tensor '" + name_of(TensorRole::kRopePeriods) +
                      "': the head dimension and RoPE of a Meta checkpoint come from it");
  }
  if (periods->shape.size() != 1 || periods->shape[0] <= 0 || c->embed_dim % (4 * periods->shape[0]) != 0) {
    return meta_error("tensor '" + periods->name + "' has shape " + shape_to_string(periods->shape) +
                      ": 4 x its length must divide the embedding dimension " + std::to_string(c->embed_dim));
  }
  c->num_heads = c->embed_dim / (4 * periods->shape[0]);
  DINOV3_ASSIGN_OR_RETURN(const Tensor values, archive.load_f32(*periods));
  c->rope_periods.assign(values.data.begin(), values.data.end());  // check_checkpoint checks their values
  c->architecture = architecture_name_for(*c);
  return {};
}

}  // namespace

Result<Checkpoint> open_meta(const std::string& pth_path) {
  Checkpoint ckpt;
  Result<TensorArchive> archive = open_pytorch_bin(pth_path);
  if (!archive.ok()) {
    return make_error(archive.status().code(),
                      archive.status().message() + " (a single file is read as Meta's torch.save .pth checkpoint)");
  }
  ckpt.archive = std::move(archive).value();
  ckpt.format = "pth";
  ModelConfig& c = ckpt.config;
  c.layout = kMeta;
  c.ln_eps = 1e-5f;  // Meta's released models all use norm_layer 'layernormbf16' (eps 1e-5)
  Status st = read_architecture(ckpt.archive, &c);
  if (!st.ok()) return st.with_context(pth_path);

  c.global_pool = PoolMode::kToken;
  DataConfig& d = c.data;
  d.height = d.width = 256;
  d.interpolation = "bilinear";
  d.crop_mode = "squash";
  d.crop_pct = 1.0;
  d.source = "Meta's transform (Resize((256, 256)), ImageNet mean/std)";
  if (std::filesystem::path(pth_path).filename().string().find("sat493m") != std::string::npos) {
    d.mean = {0.430f, 0.411f, 0.296f};
    d.std = {0.213f, 0.156f, 0.143f};
    d.source = "Meta's transform (Resize((256, 256)), SAT-493M mean/std)";
  }
  return ckpt;
}

}  // namespace dinov3::layouts
