// A DINOv3 ViT (timm's Eva with rope_type='dinov3') loaded from a timm hub folder and run on a backend.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dinov3/backend.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

enum class MlpKind { kGelu, kSwiGlu };
enum class PoolMode { kDefault, kAvg, kToken };  // kDefault: the config's global_pool

const char* pool_mode_name(PoolMode mode);
bool pool_mode_from_name(const std::string& name, PoolMode* out);

// pretrained_cfg: how timm preprocesses images for this model.
struct DataConfig {
  int64_t channels = 3, height = 256, width = 256;
  std::string interpolation = "bicubic";
  double crop_pct = 1.0;
  std::string crop_mode = "center";
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
};

struct ModelConfig {
  std::string architecture;  // timm name, e.g. vit_small_patch16_dinov3
  int64_t embed_dim = 0;     // D
  int64_t depth = 0;         // blocks
  int64_t num_heads = 0;     // nh; head_dim = D / nh
  int64_t mlp_hidden = 0;    // read from the weights
  MlpKind mlp = MlpKind::kGelu;
  bool qkv_bias = false;     // the _qkvb variants: q_bias and v_bias (k has none)
  int64_t num_reg_tokens = 4;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  float ln_eps = 1e-5f;
  double rope_temperature = 100.0;
  PoolMode global_pool = PoolMode::kAvg;
  DataConfig data;

  int64_t head_dim() const { return num_heads > 0 ? embed_dim / num_heads : 0; }
  int64_t prefix_tokens() const { return 1 + num_reg_tokens; }
  int64_t tokens_for(int64_t height, int64_t width) const {
    return prefix_tokens() + (height / patch_size) * (width / patch_size);
  }
};

// The eleven timm DINOv3 ViT architectures this engine knows.
std::vector<std::string> known_architectures();

// Parses config.json text (timm hub format) into a config. Tensor-derived fields (mlp_hidden) stay 0
// until the weights are checked.
Result<ModelConfig> parse_model_config(const std::string& json_text);

// Multiply-adds x 2 of one image's forward at height x width (linears, patch embed, attention matmuls).
double forward_flops(const ModelConfig& config, int64_t height, int64_t width);

// The RoPE table for a gh x gw patch grid: [gh*gw, 2*head_dim], sin (first head_dim values) then cos.
Tensor compute_rope_table(int64_t grid_h, int64_t grid_w, int64_t head_dim, double temperature);

struct LoadOptions {
  std::string backend = default_backend_name();
  BackendOptions backend_options;
};

struct ForwardOptions {
  PoolMode pool = PoolMode::kDefault;
  // timm's forward_intermediates: outputs of these blocks ([B, T, D] each); negative counts from the end.
  std::vector<int> intermediate_blocks;
  bool norm_intermediates = false;  // apply the final norm to them, as timm's norm=True
  bool keep_embed = false;          // also return the tokens entering block 0
};

struct Intermediate {
  int block = 0;  // non-negative block index
  Tensor tokens;  // [B, T, D]
};

struct ForwardOutput {
  Tensor features;                          // [B, T, D]: forward_features (final norm applied)
  Tensor pooled;                            // [B, D]
  std::vector<Intermediate> intermediates;  // in the order asked
  Tensor embed;                             // [B, T, D] when keep_embed
};

struct WeightsInfo {
  std::string path;          // the file the weights came from
  std::string format;        // "safetensors" or "pytorch"
  std::string dtype;         // stored dtype(s), e.g. "F32" or "BF16"
  int64_t parameters = 0;    // elements across all tensors
  int64_t bytes = 0;         // bytes of those tensors as stored
};

class Model {
 public:
  // Loads a timm hub folder (config.json + model.safetensors, or pytorch_model.bin when that is the
  // only weights file) onto the named backend.
  static Result<std::unique_ptr<Model>> load(const std::string& dir, const LoadOptions& options = {});
  // Same, onto a backend the caller created.
  static Result<std::unique_ptr<Model>> load(const std::string& dir, std::unique_ptr<Backend> backend);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const WeightsInfo& weights_info() const { return weights_info_; }
  Backend& backend() { return *backend_; }
  const std::string& directory() const { return dir_; }

  // input: [B, C, H, W] normalised pixels, H and W multiples of the patch size. Calls are serialised.
  Result<ForwardOutput> forward(const Tensor& input, const ForwardOptions& options = {});

 private:
  struct Weights;
  struct Activations;
  struct Pass {
    std::vector<int> blocks;  // intermediate blocks to return, in the order asked
    bool norm_blocks = false;
    bool keep_embed = false;
    bool mean_pool = true;
  };
  Model();
  // load and forward without the boundary that turns allocation failures into statuses.
  static Result<std::unique_ptr<Model>> load_unguarded(const std::string& dir, std::unique_ptr<Backend> backend);
  Result<ForwardOutput> forward_unguarded(const Tensor& input, const ForwardOptions& options);
  Status prepare_activations(int64_t batch, int64_t height, int64_t width);
  // One pass of n images through every block; outputs land at images [b0, b0 + n) of `out`.
  Status run_pass(const float* images, int64_t n, int64_t height, int64_t width, int64_t b0, const Pass& pass,
                  ForwardOutput* out);

  std::string dir_;
  ModelConfig config_;
  WeightsInfo weights_info_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Weights> weights_;
  std::unique_ptr<Activations> acts_;
  std::mutex mutex_;
};

}  // namespace dinov3
