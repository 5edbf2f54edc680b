#include "model/checkpoint.h"

#include <set>

#include "model/rope.h"
#include "util/finite.h"

namespace dinov3 {
namespace {

bool is_floating(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64; }

Status format_error(const std::string& what) { return make_error(ErrorCode::kFormatError, what); }

}  // namespace

Result<int64_t> mlp_width_from_tensors(const TensorArchive& archive, const ModelConfig& config) {
  const TensorRole role = config.mlp == MlpKind::kGelu ? TensorRole::kFc1Weight : TensorRole::kGateWeight;
  const std::string name = *tensor_name(config.layout, role, 0, config);
  const RawTensor* t = archive.find(name);
  if (t == nullptr) {
    return format_error("missing tensor '" + name + "' (a " + (config.mlp == MlpKind::kGelu ? "GELU" : "SwiGLU") +
                        " MLP was expected)");
  }
  if (t->shape.size() != 2 || t->shape[0] <= 0 || t->shape[1] != config.embed_dim) {
    return format_error("tensor '" + name + "' has shape " + shape_to_string(t->shape) + ", expected [hidden, " +
                        std::to_string(config.embed_dim) + "]");
  }
  return t->shape[0];
}

Status check_checkpoint(const TensorArchive& archive, const ModelConfig& config) {
  // A config's temperature of 1e-300 gives periods that round to 0 in float32.
  if (const int64_t k = first_bad_rope_period(config.rope_periods); k >= 0) {
    return format_error("RoPE " + describe_rope_period(config.rope_periods, k) +
                        ": the periods (from the configuration's RoPE temperature or theta, or a Meta checkpoint's "
                        "periods tensor) must be positive finite numbers");
  }
  const std::vector<ExpectedTensor> expected = expected_tensors(config);
  std::set<std::string> names;
  for (const auto& e : expected) {
    names.insert(e.name);
    const RawTensor* raw = archive.find(e.name);
    if (raw == nullptr) {
      return format_error("missing tensor '" + e.name + "' (expected shape " + shape_to_string(e.shape) + ")");
    }
    if (raw->shape != e.shape) {
      return format_error("tensor '" + e.name + "' has shape " + shape_to_string(raw->shape) + ", expected " +
                          shape_to_string(e.shape) + " (the configuration and the weights disagree)");
    }
    if (!is_floating(raw->dtype)) {
      return format_error("tensor '" + e.name + "' has dtype " + dtype_name(raw->dtype) +
                          ", expected F32, F16, BF16 or F64");
    }
  }
  for (const auto& raw : archive.tensors()) {
    if (names.count(raw.name) == 0 && !is_ignored_tensor(config.layout, raw.name)) {
      return format_error("unexpected tensor '" + raw.name + "' with shape " + shape_to_string(raw.shape) +
                          " (not part of a " + layout_name(config.layout) + " " + config.architecture +
                          " checkpoint with this configuration)");
    }
  }
  return {};
}

WeightsInfo describe_checkpoint(const Checkpoint& checkpoint) {
  WeightsInfo info;
  info.path = checkpoint.archive.path();
  info.format = checkpoint.format;
  std::set<std::string> dtypes;
  for (const auto& raw : checkpoint.archive.tensors()) {
    info.parameters += raw.numel();
    info.bytes += static_cast<int64_t>(raw.numel() * dtype_size(raw.dtype));
    dtypes.insert(dtype_name(raw.dtype));
  }
  for (const auto& d : dtypes) info.dtype += (info.dtype.empty() ? "" : "+") + d;
  return info;
}

Result<Tensor> WeightLoader::take(TensorRole role, int64_t block) {
  const std::optional<std::string> name = tensor_name(config_.layout, role, block, config_);
  const RawTensor* raw = name ? archive_.find(*name) : nullptr;
  if (raw == nullptr) return format_error("missing tensor '" + name.value_or("?") + "'");
  DINOV3_ASSIGN_OR_RETURN(Tensor t, archive_.load_f32(*raw));
  archive_.release(*raw);
  // A NaN or infinity in a parameter is a broken file (it would reach every output): an error, not NaN
  // features. (Meta's LinearKMaskedBias starts its bias mask as NaN until initialised.)
  if (const int64_t at = first_non_finite(t.ptr(), t.numel()); at >= 0)
    return format_error("tensor '" + *name + "' holds a non-finite value at " + std::to_string(at));
  return t;
}

Result<std::unique_ptr<Weight>> WeightLoader::prepare_linear(const float* w, const float* bias, int64_t out,
                                                             int64_t in) {
  if (digest_ != nullptr) {
    const int64_t shape[2] = {out, in};
    digest_->update(shape, sizeof(shape));
    digest_->update(w, static_cast<size_t>(out * in) * sizeof(float));
    // No bias is a bias of zeros (it computes the same): layouts that store zeros and those that store
    // nothing give the same digest.
    const std::vector<float> zeros(bias == nullptr ? static_cast<size_t>(out) : 0, 0.0f);
    digest_->update(bias != nullptr ? bias : zeros.data(), static_cast<size_t>(out) * sizeof(float));
  }
  return backend_.prepare_linear(w, bias, out, in);
}

Result<std::unique_ptr<Weight>> WeightLoader::vector(TensorRole role, int64_t block) {
  DINOV3_ASSIGN_OR_RETURN(Tensor t, take(role, block));
  return backend_.prepare_vector(t.ptr(), t.numel());
}

Result<std::unique_ptr<Weight>> WeightLoader::linear(TensorRole weight, TensorRole bias, int64_t block) {
  DINOV3_ASSIGN_OR_RETURN(Tensor w, take(weight, block));
  // Conv weights (D, C, p, p) are a linear over (c, ky, kx)-ordered patches: same bytes.
  const int64_t out = w.shape[0], in = w.numel() / out;
  if (!tensor_name(config_.layout, bias, block, config_)) return prepare_linear(w.ptr(), nullptr, out, in);
  DINOV3_ASSIGN_OR_RETURN(Tensor b, take(bias, block));
  return prepare_linear(w.ptr(), b.ptr(), out, in);
}

Result<std::unique_ptr<Weight>> WeightLoader::qkv(int64_t block) {
  const ModelConfig& c = config_;
  const int64_t D = c.embed_dim;
  auto has = [&](TensorRole role) { return tensor_name(c.layout, role, block, c).has_value(); };

  Tensor w;
  if (has(TensorRole::kQkvWeight)) {
    DINOV3_ASSIGN_OR_RETURN(w, take(TensorRole::kQkvWeight, block));
  } else {
    w = Tensor({3 * D, D});
    const TensorRole parts[] = {TensorRole::kQWeight, TensorRole::kKWeight, TensorRole::kVWeight};
    for (int p = 0; p < 3; ++p) {
      DINOV3_ASSIGN_OR_RETURN(Tensor part, take(parts[p], block));
      std::copy(part.data.begin(), part.data.end(), w.data.begin() + p * D * D);
    }
  }

  std::vector<float> bias;
  if (has(TensorRole::kQkvBias)) {
    DINOV3_ASSIGN_OR_RETURN(Tensor b, take(TensorRole::kQkvBias, block));
    DINOV3_ASSIGN_OR_RETURN(Tensor mask, take(TensorRole::kQkvBiasMask, block));
    bias.resize(static_cast<size_t>(3 * D));
    for (int64_t i = 0; i < 3 * D; ++i) bias[i] = b.data[i] * mask.data[i];  // take() checked both finite
  } else {
    const TensorRole parts[] = {TensorRole::kQBias, TensorRole::kKBias, TensorRole::kVBias};
    for (int p = 0; p < 3; ++p) {
      if (!has(parts[p])) continue;
      if (bias.empty()) bias.assign(static_cast<size_t>(3 * D), 0.0f);  // parts without a bias stay 0
      DINOV3_ASSIGN_OR_RETURN(Tensor part, take(parts[p], block));
      std::copy(part.data.begin(), part.data.end(), bias.begin() + p * D);
    }
  }
  return prepare_linear(w.ptr(), bias.empty() ? nullptr : bias.data(), 3 * D, D);
}

Result<std::unique_ptr<Weight>> WeightLoader::prefix_tokens() {
  DINOV3_ASSIGN_OR_RETURN(Tensor cls, take(TensorRole::kClsToken, -1));
  std::vector<float> rows = cls.data;
  if (config_.num_reg_tokens > 0) {
    DINOV3_ASSIGN_OR_RETURN(Tensor reg, take(TensorRole::kRegisterTokens, -1));
    rows.insert(rows.end(), reg.data.begin(), reg.data.end());
  }
  return backend_.prepare_vector(rows.data(), static_cast<int64_t>(rows.size()));
}

}  // namespace dinov3
