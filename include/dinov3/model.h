// A DINOv3 ViT loaded from any checkpoint layout a user holds (timm hub folder, Meta's original .pth,
// Hugging Face transformers folder) and run on a backend.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dinov3/backend.h"
#include "dinov3/op_profile.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

enum class MlpKind { kGelu, kSwiGlu };

// The checkpoint layouts, recognised from the files themselves (SPEC.md, "Checkpoint names").
enum class CheckpointLayout {
  kTimm,         // timm hub folder: config.json (architecture, model_args, pretrained_cfg) + weights
  kMeta,         // Meta's original release: one torch.save .pth of the state_dict, no config
  kHuggingFace,  // transformers DINOv3ViTModel folder: config.json (model_type dinov3_vit) + safetensors
};
const char* layout_name(CheckpointLayout layout);  // "timm", "meta", "hf"
enum class PoolMode { kDefault, kAvg, kToken };  // kDefault: the config's global_pool

const char* pool_mode_name(PoolMode mode);
bool pool_mode_from_name(const std::string& name, PoolMode* out);

// How images are preprocessed for this model, as its layout's own code does: timm's pretrained_cfg,
// Meta's recommended transform, or HF's preprocessor_config.json.
struct DataConfig {
  int64_t channels = 3, height = 256, width = 256;
  std::string interpolation = "bicubic";
  double crop_pct = 1.0;
  std::string crop_mode = "center";
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};
  double rescale_factor = 1.0 / 255.0;  // pixel scale before normalising (ToTensor's 1/255; HF rescale_factor)
  bool normalize = true;                // subtract mean, divide by std (HF do_normalize)
  std::string source = "pretrained_cfg";  // where these settings come from, for info and reports
};

struct ModelConfig {
  CheckpointLayout layout = CheckpointLayout::kTimm;
  std::string architecture;  // timm name, e.g. vit_small_patch16_dinov3 (Meta/HF: the matching timm name,
                             // or "dinov3_vit" when no timm architecture has these dimensions)
  int64_t embed_dim = 0;     // D
  int64_t depth = 0;         // blocks
  int64_t num_heads = 0;     // nh; head_dim = D / nh
  int64_t mlp_hidden = 0;    // read from the weights
  MlpKind mlp = MlpKind::kGelu;
  bool q_bias = false;       // biases on q, k, v (timm's _qkvb: q and v; Meta: qkv.bias x bias_mask,
  bool k_bias = false;       //   counted as q and v; HF: query_bias, key_bias, value_bias)
  bool v_bias = false;
  bool proj_bias = true;     // attention output projection bias
  bool mlp_bias = true;      // MLP linear biases
  int64_t num_reg_tokens = 4;
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  float ln_eps = 1e-5f;
  double rope_temperature = 100.0;
  // RoPE periods, head_dim / 4 of them, as the layout's code builds them: timm's float32
  // temperature ** (4k / hd), Meta's stored bf16-rounded values, HF's 1 / inv_freq. Empty: timm's.
  std::vector<double> rope_periods;
  PoolMode global_pool = PoolMode::kAvg;  // the layout's default pooling (timm: global_pool; Meta, HF: token)
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
// The timm architecture with these dimensions (embed_dim, depth, heads, MLP kind, q/v bias), else "dinov3_vit".
std::string architecture_name_for(const ModelConfig& config);

// Multiply-adds x 2 of one image's forward at height x width (linears, patch embed, attention matmuls).
double forward_flops(const ModelConfig& config, int64_t height, int64_t width);

// timm's RoPE periods: float32(temperature ** (2k / (hd/2))) for k < hd/4. An error for a head_dim that is not
// a positive multiple of 4 or a temperature that is not a positive finite number (an extreme one may still give
// periods that round to 0 or infinity in float32: compute_rope_table and check_checkpoint refuse those).
Result<std::vector<double>> rope_periods_from_temperature(int64_t head_dim, double temperature);
// The RoPE table for a gh x gw patch grid: [gh*gw, 2*head_dim], sin (first head_dim values) then cos,
// from head_dim / 4 periods. An error for a grid side below 1 or above kMaxRopeGridSide, no periods, or a
// period that is not a positive finite number.
inline constexpr int64_t kMaxRopeGridSide = 1 << 16;
Result<Tensor> compute_rope_table(int64_t grid_h, int64_t grid_w, const std::vector<double>& periods);
Result<Tensor> compute_rope_table(int64_t grid_h, int64_t grid_w, int64_t head_dim, double temperature);

// One linear layer of the model, as the backend prepares it.
struct LinearLayer {
  std::string name;          // timm's module name: patch_embed.proj, blocks.N.attn.qkv, blocks.N.mlp.fc2, ...
  int64_t out = 0, in = 0;   // weight shape
  bool tied_to_next = false;  // takes the next layer's precision too (SwiGLU's gate and up run as one product)
};
// The linear layers in the order the backend prepares them (the order BackendOptions::int8_linear_precision
// counts): the patch embedding, then per block attn.qkv, attn.proj, mlp.fc1 (SwiGLU: mlp.fc1_g and mlp.fc1_x,
// tied) and mlp.fc2. `config` as a loaded model holds it (mlp_hidden read from the weights).
std::vector<LinearLayer> linear_layers(const ModelConfig& config);

struct Int8Plan;  // dinov3/int8_plan.h

struct LoadOptions {
  std::string backend = default_backend_name();
  BackendOptions backend_options;
  // With precision int8: which linear layers run int8 and which stay bf16 (dinov3/int8_plan.h). Loading
  // fails when the plan names other layers than the model has. Unset: every linear layer int8.
  std::shared_ptr<const Int8Plan> int8_plan;
  // When set, every backend op of this model's forwards is timed into it (dinov3/op_profile.h).
  std::shared_ptr<OpProfile> op_profile;
  // Compute Model::linear_weights_digest() (one SHA-256 pass over the linear layers as they load). A plan
  // that carries a digest has it computed and compared whatever this says.
  bool digest_linear_weights = false;
};

struct ForwardOptions {
  PoolMode pool = PoolMode::kDefault;
  // timm's forward_intermediates: outputs of these blocks ([B, T, D] each); negative counts from the end.
  std::vector<int> intermediate_blocks;
  bool norm_intermediates = false;  // apply the final norm to them, as timm's norm=True
  bool keep_embed = false;          // also return the tokens entering block 0
};

// The non-negative block indices of `intermediate_blocks` for a model of `config.depth` blocks (negative
// ones count from the end); kInvalidArgument naming the first out of range. forward checks them so too.
Result<std::vector<int>> intermediate_block_indices(const ModelConfig& config, const std::vector<int>& blocks);

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
  std::string path;          // the file the weights came from (a sharded checkpoint: its index)
  std::string format;        // "safetensors", "safetensors (N shards)", "pytorch" or "pth"
  std::string dtype;         // stored dtype(s), e.g. "F32" or "BF16"
  int64_t parameters = 0;    // elements across all tensors
  int64_t bytes = 0;         // bytes of those tensors as stored
};

class Model {
 public:
  // Loads a checkpoint onto the named backend. `path` is a timm hub folder (config.json +
  // model.safetensors, or pytorch_model.bin when that is the only weights file), a Hugging Face
  // transformers folder (config.json with model_type dinov3_vit + model.safetensors or shards with
  // model.safetensors.index.json, preprocessor_config.json), or Meta's original .pth file (or a folder
  // holding exactly one). The layout is recognised from the files, not their names.
  static Result<std::unique_ptr<Model>> load(const std::string& path, const LoadOptions& options = {});
  // Same, onto a backend the caller created.
  static Result<std::unique_ptr<Model>> load(const std::string& path, std::unique_ptr<Backend> backend);

  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const WeightsInfo& weights_info() const { return weights_info_; }
  Backend& backend() { return *backend_; }
  const std::string& directory() const { return dir_; }  // the path the model was loaded from
  // SHA-256 (hex) of the linear layers' float32 weights and biases (zeros where there is none) in
  // linear_layers() order, as the backend received them (so the same for every layout and file dtype of
  // the same weights); empty unless
  // LoadOptions::digest_linear_weights or a plan asked for it. An int8 plan records its model's.
  const std::string& linear_weights_digest() const { return linear_digest_; }

  // input: [B, C, H, W] normalised pixels, H and W multiples of the patch size. Calls are serialised.
  Result<ForwardOutput> forward(const Tensor& input, const ForwardOptions& options = {});

  // A check every forward pass runs on its caller's thread before each transformer block: when it returns
  // true the pass stops there and the call returns kCancelled; the model stays usable. Python's binding sets
  // one that runs the interpreter's signal handlers, so Ctrl-C stops a long call. Empty (the default): none.
  // Waits for a forward in progress.
  Status set_stop_check(std::function<bool()> check);
  // Both calls above take the model's lock. In a process forked while another thread was inside one of
  // them, that thread is not there and the lock is never let go: they are errors there (kUnsupported)
  // instead of waiting forever.

 private:
  // Defined in src/model/model.cpp: the weights as the backend prepared them, the activation plan for the
  // last input shape, and what one forward pass returns.
  struct Weights;
  struct Activations;
  struct Pass;
  Model();
  // load and forward without the boundary that turns allocation failures into statuses. A plan is checked
  // against the checkpoint's config before any weight is prepared, and against the weights' digest (when
  // it carries one) once they are.
  static Result<std::unique_ptr<Model>> load_unguarded(const std::string& path, std::unique_ptr<Backend> backend,
                                                       const Int8Plan* plan = nullptr, bool digest = false);
  Result<ForwardOutput> forward_unguarded(const Tensor& input, const ForwardOptions& options);
  Status prepare_activations(int64_t batch, int64_t height, int64_t width);
  // One pass of n images through every block; outputs land at images [b0, b0 + n) of `out`.
  Status run_pass(const float* images, int64_t n, int64_t height, int64_t width, int64_t b0, const Pass& pass,
                  ForwardOutput* out);

  std::string dir_;
  ModelConfig config_;
  WeightsInfo weights_info_;
  std::string linear_digest_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Weights> weights_;
  std::unique_ptr<Activations> acts_;
  std::function<bool()> stop_check_;
  std::mutex mutex_;
  std::atomic<uint64_t> holder_epoch_{0};  // fork_epoch() of the thread that last took mutex_
  Result<std::unique_lock<std::mutex>> lock_for_call(const char* what);
};

}  // namespace dinov3
