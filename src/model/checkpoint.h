// The checkpoint side of loading, for every layout: checking an archive against the tensor table, and
// handing its tensors to a backend by role, one at a time. Which files a layout has and what its
// configuration is are the layouts' business (src/model/layouts/).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dinov3/backend.h"
#include "dinov3/model.h"
#include "dinov3/tensor_file.h"
#include "model/tensor_table.h"
#include "util/sha256.h"

namespace dinov3 {

// A checkpoint opened by its layout: the configuration (with the layout's defaults) and the tensors.
struct Checkpoint {
  ModelConfig config;
  TensorArchive archive;
  std::string format;  // "safetensors", "safetensors (N shards)", "pytorch", "pth"
};

// Recognises the layout of `path` (a folder, or a Meta .pth file) from its files, opens it and checks
// every tensor against the configuration (names, shapes, dtypes; unknown tensors are errors).
Result<Checkpoint> open_checkpoint(const std::string& path);

// Checks the archive holds exactly the tensors the table gives for `config` (plus the layout's ignored
// training-only tensors), with the expected shapes and floating dtypes. Errors name the tensor.
Status check_checkpoint(const TensorArchive& archive, const ModelConfig& config);

// The MLP width, read from block 0's first MLP weight (the configuration's MLP kind says which).
Result<int64_t> mlp_width_from_tensors(const TensorArchive& archive, const ModelConfig& config);

WeightsInfo describe_checkpoint(const Checkpoint& checkpoint);

// Converts each tensor to float32 once, prepares it on the backend and releases its pages.
class WeightLoader {
 public:
  WeightLoader(const TensorArchive& archive, const ModelConfig& config, Backend& backend)
      : archive_(archive), config_(config), backend_(backend) {}

  // From now on every linear layer (linear(), qkv()) also goes into `digest`, as the backend receives it:
  // out and in (int64), the float32 weight [out, in], then the bias (zeros when there is none).
  void digest_linear_layers(Sha256* digest) { digest_ = digest; }

  Result<std::unique_ptr<Weight>> vector(TensorRole role, int64_t block = -1);
  // weight [out, in...] and its bias, or none when the configuration has no such bias.
  Result<std::unique_ptr<Weight>> linear(TensorRole weight, TensorRole bias, int64_t block = -1);
  // The fused [3D, D] qkv projection, from a fused weight or q/k/v parts, with its bias assembled from
  // what the layout stores (q/k/v biases, or Meta's qkv.bias x bias_mask); no bias when there is none.
  Result<std::unique_ptr<Weight>> qkv(int64_t block);
  // cls_token rows then register rows, as one (1+R, D) vector.
  Result<std::unique_ptr<Weight>> prefix_tokens();

 private:
  Result<Tensor> take(TensorRole role, int64_t block);
  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* bias, int64_t out, int64_t in);
  const TensorArchive& archive_;
  const ModelConfig& config_;
  Backend& backend_;
  Sha256* digest_ = nullptr;
};

}  // namespace dinov3
