// The checkpoint side of loading: which file holds the weights, which tensors a config implies (one
// name table), checking them, and handing them to a backend one at a time.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dinov3/backend.h"
#include "dinov3/model.h"
#include "dinov3/tensor_file.h"

namespace dinov3 {

struct CheckpointFile {
  TensorArchive archive;
  std::string format;  // "safetensors" or "pytorch"
};

// model.safetensors when present, else pytorch_model.bin.
Result<CheckpointFile> open_checkpoint(const std::string& dir);

struct ExpectedTensor {
  std::string name;
  Shape shape;
};

// Every tensor a timm DINOV3 checkpoint of this config holds, with its shape.
std::vector<ExpectedTensor> expected_tensors(const ModelConfig& cfg);

// Reads the MLP width from the weights into cfg->mlp_hidden, then checks the archive holds exactly the
// expected tensors with the expected shapes and floating dtypes. Errors name the tensor.
Status check_checkpoint(const TensorArchive& archive, ModelConfig* cfg);

WeightsInfo describe_checkpoint(const CheckpointFile& file);

// Converts each tensor to float32 once, prepares it on the backend and releases its pages.
class WeightLoader {
 public:
  WeightLoader(const TensorArchive& archive, Backend& backend) : archive_(archive), backend_(backend) {}

  Result<std::unique_ptr<Weight>> vector(const std::string& name);
  Result<std::unique_ptr<Weight>> linear(const std::string& weight, const std::string& bias);
  // attn.qkv.weight, with bias [q_bias, 0, v_bias] when the checkpoint has q/v biases.
  Result<std::unique_ptr<Weight>> qkv(const std::string& block_prefix, bool has_bias, int64_t dim);
  // cls_token rows then reg_token rows, as one (1+R, D) vector.
  Result<std::unique_ptr<Weight>> prefix_tokens(bool has_registers, int64_t dim);

 private:
  Result<Tensor> take(const std::string& name);
  const TensorArchive& archive_;
  Backend& backend_;
};

}  // namespace dinov3
