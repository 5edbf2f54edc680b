#include "model/checkpoint.h"

#include <set>
#include <sys/stat.h>

namespace dinov3 {
namespace {

bool regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

bool is_floating(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64; }

}  // namespace

Result<CheckpointFile> open_checkpoint(const std::string& dir) {
  const std::string st_path = dir + "/model.safetensors", bin_path = dir + "/pytorch_model.bin";
  if (regular_file(st_path)) {
    DINOV3_ASSIGN_OR_RETURN(TensorArchive archive, open_safetensors(st_path));
    return CheckpointFile{std::move(archive), "safetensors"};
  }
  if (regular_file(bin_path)) {
    DINOV3_ASSIGN_OR_RETURN(TensorArchive archive, open_pytorch_bin(bin_path));
    return CheckpointFile{std::move(archive), "pytorch"};
  }
  return make_error(ErrorCode::kNotFound, dir + ": no weights file (expected model.safetensors or pytorch_model.bin)");
}

std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg) {
  const int64_t D = cfg.embed_dim, hidden = cfg.mlp_hidden, p = cfg.patch_size;
  std::vector<ExpectedTensor> t = {
      {"cls_token", {1, 1, D}},
      {"patch_embed.proj.weight", {D, cfg.in_chans, p, p}},
      {"patch_embed.proj.bias", {D}},
      {"norm.weight", {D}},
      {"norm.bias", {D}},
  };
  if (cfg.num_reg_tokens > 0) t.push_back({"reg_token", {1, cfg.num_reg_tokens, D}});
  for (int64_t i = 0; i < cfg.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    for (const char* n : {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "gamma_1", "gamma_2",
                          "attn.proj.bias", "mlp.fc2.bias"})
      t.push_back({b + n, {D}});
    t.push_back({b + "attn.qkv.weight", {3 * D, D}});
    t.push_back({b + "attn.proj.weight", {D, D}});
    if (cfg.qkv_bias) {
      t.push_back({b + "attn.q_bias", {D}});
      t.push_back({b + "attn.v_bias", {D}});
    }
    if (cfg.mlp == MlpKind::kGelu) {
      t.push_back({b + "mlp.fc1.weight", {hidden, D}});
      t.push_back({b + "mlp.fc1.bias", {hidden}});
    } else {
      for (const char* n : {"mlp.fc1_g", "mlp.fc1_x"}) {
        t.push_back({b + n + ".weight", {hidden, D}});
        t.push_back({b + n + ".bias", {hidden}});
      }
    }
    t.push_back({b + "mlp.fc2.weight", {D, hidden}});
  }
  return t;
}

Status check_checkpoint(const TensorArchive& archive, ModelConfig* cfg) {
  // The MLP width is not in the architecture table in a form timm users override reliably; the
  // weights say it, and every block is then checked against block 0.
  const std::string first = cfg->mlp == MlpKind::kGelu ? "blocks.0.mlp.fc1.weight" : "blocks.0.mlp.fc1_g.weight";
  if (const RawTensor* fc1 = archive.find(first); fc1 != nullptr && fc1->shape.size() == 2 && fc1->shape[0] > 0) {
    cfg->mlp_hidden = fc1->shape[0];
  } else if (fc1 == nullptr) {
    return make_error(ErrorCode::kFormatError, "missing tensor '" + first + "' (the " + cfg->architecture +
                                                   " architecture has a " +
                                                   (cfg->mlp == MlpKind::kGelu ? "GELU" : "SwiGLU") + " MLP)");
  } else {
    return make_error(ErrorCode::kFormatError, "tensor '" + first + "' has shape " + shape_to_string(fc1->shape) +
                                                   ", expected [hidden, " + std::to_string(cfg->embed_dim) + "]");
  }
  const std::vector<ExpectedTensor> expected = expected_tensors(*cfg);
  std::set<std::string> names;
  for (const auto& e : expected) {
    names.insert(e.name);
    const RawTensor* raw = archive.find(e.name);
    if (raw == nullptr) {
      return make_error(ErrorCode::kFormatError, "missing tensor '" + e.name + "' (expected shape " +
                                                     shape_to_string(e.shape) + ")");
    }
    if (raw->shape != e.shape) {
      return make_error(ErrorCode::kFormatError, "tensor '" + e.name + "' has shape " + shape_to_string(raw->shape) +
                                                     ", expected " + shape_to_string(e.shape));
    }
    if (!is_floating(raw->dtype)) {
      return make_error(ErrorCode::kFormatError, "tensor '" + e.name + "' has dtype " + dtype_name(raw->dtype) +
                                                     ", expected F32, F16, BF16 or F64");
    }
  }
  for (const auto& raw : archive.tensors()) {
    if (names.count(raw.name) == 0) {
      return make_error(ErrorCode::kFormatError, "unexpected tensor '" + raw.name + "' with shape " +
                                                     shape_to_string(raw.shape) + " (not part of " +
                                                     cfg->architecture + " with this config)");
    }
  }
  return {};
}

WeightsInfo describe_checkpoint(const CheckpointFile& file) {
  WeightsInfo info;
  info.path = file.archive.path();
  info.format = file.format;
  std::set<std::string> dtypes;
  for (const auto& raw : file.archive.tensors()) {
    info.parameters += raw.numel();
    info.bytes += static_cast<int64_t>(raw.numel() * dtype_size(raw.dtype));
    dtypes.insert(dtype_name(raw.dtype));
  }
  for (const auto& d : dtypes) info.dtype += (info.dtype.empty() ? "" : "+") + d;
  return info;
}

Result<Tensor> WeightLoader::take(const std::string& name) {
  const RawTensor* raw = archive_.find(name);
  if (raw == nullptr) return make_error(ErrorCode::kFormatError, "missing tensor '" + name + "'");
  DINOV3_ASSIGN_OR_RETURN(Tensor t, archive_.load_f32(*raw));
  archive_.release(*raw);
  return t;
}

Result<std::unique_ptr<Weight>> WeightLoader::vector(const std::string& name) {
  DINOV3_ASSIGN_OR_RETURN(Tensor t, take(name));
  return backend_.prepare_vector(t.ptr(), t.numel());
}

Result<std::unique_ptr<Weight>> WeightLoader::linear(const std::string& weight, const std::string& bias) {
  DINOV3_ASSIGN_OR_RETURN(Tensor w, take(weight));
  DINOV3_ASSIGN_OR_RETURN(Tensor b, take(bias));
  // Conv weights (D, C, p, p) are a linear over (c, ky, kx)-ordered patches: same bytes.
  const int64_t out = w.shape[0], in = w.numel() / out;
  return backend_.prepare_linear(w.ptr(), b.ptr(), out, in);
}

Result<std::unique_ptr<Weight>> WeightLoader::qkv(const std::string& block_prefix, bool has_bias, int64_t dim) {
  DINOV3_ASSIGN_OR_RETURN(Tensor w, take(block_prefix + "attn.qkv.weight"));
  if (!has_bias) return backend_.prepare_linear(w.ptr(), nullptr, 3 * dim, dim);
  DINOV3_ASSIGN_OR_RETURN(Tensor q_bias, take(block_prefix + "attn.q_bias"));
  DINOV3_ASSIGN_OR_RETURN(Tensor v_bias, take(block_prefix + "attn.v_bias"));
  std::vector<float> bias(static_cast<size_t>(3 * dim), 0.0f);  // k has no bias
  std::copy(q_bias.data.begin(), q_bias.data.end(), bias.begin());
  std::copy(v_bias.data.begin(), v_bias.data.end(), bias.begin() + 2 * dim);
  return backend_.prepare_linear(w.ptr(), bias.data(), 3 * dim, dim);
}

Result<std::unique_ptr<Weight>> WeightLoader::prefix_tokens(bool has_registers, int64_t dim) {
  DINOV3_ASSIGN_OR_RETURN(Tensor cls, take("cls_token"));
  std::vector<float> rows = cls.data;
  if (has_registers) {
    DINOV3_ASSIGN_OR_RETURN(Tensor reg, take("reg_token"));
    rows.insert(rows.end(), reg.data.begin(), reg.data.end());
  }
  return backend_.prepare_vector(rows.data(), static_cast<int64_t>(rows.size()));
}

}  // namespace dinov3
