// The DINOv3 ViT forward, written once against the Backend interface (SPEC.md section 1).
#include <algorithm>
#include <chrono>
#include <thread>
#include <cmath>
#include <cstdio>

#include "dinov3/model.h"
#include "dinov3/int8_plan.h"
#include "dinov3/tensor_file.h"
#include "model/checkpoint.h"
#include "util/api_guard.h"
#include "util/fork_epoch.h"
#include "util/finite.h"

namespace dinov3 {

// Parameters as the backend prepared them; shapes in timm's layout.
struct Model::Weights {
  struct Block {
    std::unique_ptr<Weight> norm1_w, norm1_b;  // (D)
    std::unique_ptr<Weight> qkv;               // (3D, D), bias (3D) = [q_bias, 0, v_bias] or none
    std::unique_ptr<Weight> proj;              // (D, D) + bias (D)
    std::unique_ptr<Weight> gamma_1;           // (D) LayerScale after attention
    std::unique_ptr<Weight> norm2_w, norm2_b;  // (D)
    std::unique_ptr<Weight> fc1;               // GELU MLP: (hidden, D) + bias
    std::unique_ptr<Weight> fc1_g, fc1_x;      // SwiGLU MLP: (hidden, D) + bias each
    std::unique_ptr<Weight> fc2;               // (D, hidden) + bias
    std::unique_ptr<Weight> gamma_2;           // (D) LayerScale after the MLP
  };
  std::unique_ptr<Weight> patch;   // (D, C*p*p) + bias: the patch conv as a linear
  std::unique_ptr<Weight> prefix;  // (1+R, D): cls_token then reg_token rows
  std::vector<Block> blocks;
  std::unique_ptr<Weight> norm_w, norm_b;  // (D) final norm
};

// Buffers planned once per input shape and reused by every forward of that shape. Values whose lifetimes
// never overlap share a buffer: the normed stream h is dead once qkv is computed, so the attention output
// goes there; qkv is dead once attention has run, so the MLP's hidden activations go there. Per token row
// that is D + D + max(3D, hidden) floats instead of 5D + hidden (ViT-S: 2304 instead of 3456).
struct Model::Pass {
  std::vector<int> blocks;  // intermediate blocks to return, in the order asked
  bool norm_blocks = false;
  bool keep_embed = false;
  bool mean_pool = true;
};

struct Model::Activations {
  int64_t batch = 0, height = 0, width = 0;
  std::unique_ptr<DeviceBuffer> image;   // (B, C, H, W)
  std::unique_ptr<DeviceBuffer> x;       // (B, T, D) residual stream
  std::unique_ptr<DeviceBuffer> h;       // (B, T, D) normed stream, then attention output
  std::unique_ptr<DeviceBuffer> wide;    // (B, T, max(3D, hidden)): qkv, then the MLP hidden
  std::unique_ptr<DeviceBuffer> rope;    // (P, 2*hd)
  std::unique_ptr<DeviceBuffer> pooled;  // (B, D)
  DeviceBuffer* qkv = nullptr;           // (B, T, 3D) in `wide`
  DeviceBuffer* attn = nullptr;          // (B, T, D) in `h`
  DeviceBuffer* hidden = nullptr;        // (B, T, hidden) in `wide`
};

namespace {

// Floats per token row of the widest activation buffer, the one qkv and the MLP hidden share.
int64_t wide_floats_per_row(const ModelConfig& cfg) { return std::max<int64_t>(3 * cfg.embed_dim, cfg.mlp_hidden); }

// Activation floats per token row (x, h and the shared qkv / hidden buffer; see Model::Activations).
int64_t activation_floats_per_row(const ModelConfig& cfg) { return 2 * cfg.embed_dim + wide_floats_per_row(cfg); }

}  // namespace

Model::Model() = default;
Model::~Model() = default;

std::vector<LinearLayer> linear_layers(const ModelConfig& c) {
  const int64_t d = c.embed_dim, hidden = c.mlp_hidden;
  std::vector<LinearLayer> layers{{"patch_embed.proj", d, c.in_chans * c.patch_size * c.patch_size, false}};
  for (int64_t i = 0; i < c.depth; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    layers.push_back({b + "attn.qkv", 3 * d, d, false});
    layers.push_back({b + "attn.proj", d, d, false});
    if (c.mlp == MlpKind::kGelu) {
      layers.push_back({b + "mlp.fc1", hidden, d, false});
    } else {
      layers.push_back({b + "mlp.fc1_g", hidden, d, true});
      layers.push_back({b + "mlp.fc1_x", hidden, d, false});
    }
    layers.push_back({b + "mlp.fc2", d, hidden, false});
  }
  return layers;
}

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadOptions& options) {
  BackendOptions backend_options = options.backend_options;
  // The plan's precision per layer in loading order; checked against the model's own layers once its config
  // is read, before any weight is prepared (load_unguarded).
  if (const std::shared_ptr<const Int8Plan> plan = options.int8_plan) {
    if (backend_options.precision != Precision::kInt8) {
      return make_error(ErrorCode::kInvalidArgument, "an int8 plan needs precision int8, not " +
                                                         std::string(precision_name(backend_options.precision)));
    }
    backend_options.int8_linear_precision = [plan](int64_t n) {
      return n < static_cast<int64_t>(plan->layers.size()) ? plan->layers[static_cast<size_t>(n)].precision
                                                           : Precision::kInt8;
    };
    // The plan's rounded weights (the backend checks them against each weight it prepares too).
    backend_options.int8_linear_values = [plan](int64_t n) {
      Int8LinearValues v;
      if (n < 0 || n >= static_cast<int64_t>(plan->layers.size())) return v;
      const Int8PlanLayer& l = plan->layers[static_cast<size_t>(n)];
      if (l.q.empty() || l.scale.empty()) return v;
      v.q = l.q.data();
      v.scale = l.scale.data();
      v.out = static_cast<int64_t>(l.scale.size());
      v.in = static_cast<int64_t>(l.q.size() / l.scale.size());
      return v;
    };
  }
  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, create_backend(options.backend, backend_options));
  if (options.op_profile) backend = profile_backend_ops(std::move(backend), options.op_profile);
  return guard_api_call("loading the model",
                        [&] {
                          return load_unguarded(path, std::move(backend), options.int8_plan.get(),
                                                options.digest_linear_weights);
                        });
}

Result<std::unique_ptr<Model>> Model::load(const std::string& path, std::unique_ptr<Backend> backend) {
  return guard_api_call("loading the model", [&] { return load_unguarded(path, std::move(backend)); });
}

Result<std::unique_ptr<Model>> Model::load_unguarded(const std::string& path, std::unique_ptr<Backend> backend,
                                                     const Int8Plan* plan, bool digest) {
  if (!backend) return make_error(ErrorCode::kInvalidArgument, "no backend given");
  DINOV3_ASSIGN_OR_RETURN(Checkpoint ckpt, open_checkpoint(path));
  if (plan != nullptr) DINOV3_RETURN_IF_ERROR(check_int8_plan(*plan, ckpt.config));

  std::unique_ptr<Model> model(new Model());
  model->dir_ = path;
  model->config_ = std::move(ckpt.config);
  model->backend_ = std::move(backend);
  model->weights_info_ = describe_checkpoint(ckpt);

  // Prepare each parameter on the backend, then let its pages go: peak memory stays near one copy.
  auto weights = std::make_unique<Weights>();
  const ModelConfig& cfg = model->config_;
  WeightLoader loader(ckpt.archive, cfg, *model->backend_);
  Sha256 sha;
  const bool check_digest = plan != nullptr && !plan->model_digest.empty();
  digest = digest || check_digest;
  if (digest) loader.digest_linear_layers(&sha);
  using R = TensorRole;
  DINOV3_ASSIGN_OR_RETURN(weights->patch, loader.linear(R::kPatchWeight, R::kPatchBias));
  DINOV3_ASSIGN_OR_RETURN(weights->prefix, loader.prefix_tokens());
  weights->blocks.resize(static_cast<size_t>(cfg.depth));
  for (int64_t i = 0; i < cfg.depth; ++i) {
    Weights::Block& b = weights->blocks[static_cast<size_t>(i)];
    DINOV3_ASSIGN_OR_RETURN(b.norm1_w, loader.vector(R::kNorm1Weight, i));
    DINOV3_ASSIGN_OR_RETURN(b.norm1_b, loader.vector(R::kNorm1Bias, i));
    DINOV3_ASSIGN_OR_RETURN(b.qkv, loader.qkv(i));
    DINOV3_ASSIGN_OR_RETURN(b.proj, loader.linear(R::kProjWeight, R::kProjBias, i));
    DINOV3_ASSIGN_OR_RETURN(b.gamma_1, loader.vector(R::kLayerScale1, i));
    DINOV3_ASSIGN_OR_RETURN(b.norm2_w, loader.vector(R::kNorm2Weight, i));
    DINOV3_ASSIGN_OR_RETURN(b.norm2_b, loader.vector(R::kNorm2Bias, i));
    if (cfg.mlp == MlpKind::kGelu) {
      DINOV3_ASSIGN_OR_RETURN(b.fc1, loader.linear(R::kFc1Weight, R::kFc1Bias, i));
    } else {
      DINOV3_ASSIGN_OR_RETURN(b.fc1_g, loader.linear(R::kGateWeight, R::kGateBias, i));
      DINOV3_ASSIGN_OR_RETURN(b.fc1_x, loader.linear(R::kUpWeight, R::kUpBias, i));
    }
    DINOV3_ASSIGN_OR_RETURN(b.fc2, loader.linear(R::kFc2Weight, R::kFc2Bias, i));
    DINOV3_ASSIGN_OR_RETURN(b.gamma_2, loader.vector(R::kLayerScale2, i));
  }
  DINOV3_ASSIGN_OR_RETURN(weights->norm_w, loader.vector(R::kNormWeight));
  DINOV3_ASSIGN_OR_RETURN(weights->norm_b, loader.vector(R::kNormBias));
  model->weights_ = std::move(weights);
  if (digest) {
    model->linear_digest_ = sha.hex();
    if (!sha.ok()) return make_error(ErrorCode::kInternal, "SHA-256 of the linear layers failed (libcrypto)");
  }
  // Rounded int8 weights and per-layer choices fit the weights they were measured on, not another model
  // with the same layer names and shapes.
  if (check_digest && plan->model_digest != model->linear_digest_) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the int8 plan was calibrated on other weights (linear layers' SHA-256 " +
                          plan->model_digest.substr(0, 12) + "..., this model's " +
                          model->linear_digest_.substr(0, 12) + "...): run dinov3 calibrate for this model");
  }
  return model;
}

Status Model::prepare_activations(int64_t batch, int64_t height, int64_t width) {
  if (acts_ && acts_->batch == batch && acts_->height == height && acts_->width == width) return {};
  const ModelConfig& cfg = config_;
  const int64_t T = cfg.tokens_for(height, width), D = cfg.embed_dim;
  const int64_t gh = height / cfg.patch_size, gw = width / cfg.patch_size, hd = cfg.head_dim();
  acts_.reset();  // free the old plan before allocating the new one
  auto a = std::make_unique<Activations>();
  auto alloc = [&](std::unique_ptr<DeviceBuffer>* dst, int64_t n) -> Status {
    DINOV3_ASSIGN_OR_RETURN(*dst, backend_->allocate(static_cast<size_t>(n)));
    return {};
  };
  DINOV3_RETURN_IF_ERROR(alloc(&a->image, batch * cfg.in_chans * height * width));
  DINOV3_RETURN_IF_ERROR(alloc(&a->x, batch * T * D));
  DINOV3_RETURN_IF_ERROR(alloc(&a->h, batch * T * D));
  DINOV3_RETURN_IF_ERROR(alloc(&a->wide, batch * T * wide_floats_per_row(cfg)));
  a->qkv = a->wide.get();
  a->attn = a->h.get();
  a->hidden = a->wide.get();
  DINOV3_RETURN_IF_ERROR(alloc(&a->rope, gh * gw * 2 * hd));
  DINOV3_RETURN_IF_ERROR(alloc(&a->pooled, batch * D));
  DINOV3_ASSIGN_OR_RETURN(const Tensor rope, cfg.rope_periods.empty()
                                                 ? compute_rope_table(gh, gw, hd, cfg.rope_temperature)
                                                 : compute_rope_table(gh, gw, cfg.rope_periods));
  DINOV3_RETURN_IF_ERROR(backend_->upload(*a->rope, 0, rope.ptr(), rope.data.size()));
  a->batch = batch;
  a->height = height;
  a->width = width;
  acts_ = std::move(a);
  return {};
}

namespace {

// Activation values a forward would hold; beyond this the input is absurd rather than large.
constexpr int64_t kMaxActivationValues = int64_t{1} << 34;

Status check_input(const ModelConfig& cfg, const Tensor& input) {
  if (input.shape.size() != 4) {
    return make_error(ErrorCode::kInvalidArgument,
                      "input must be [B, C, H, W], got " + shape_to_string(input.shape));
  }
  const int64_t B = input.shape[0], C = input.shape[1], H = input.shape[2], W = input.shape[3];
  const int64_t numel = shape_numel(input.shape);
  if (numel < 0) {
    return make_error(ErrorCode::kInvalidArgument, "input shape " + shape_to_string(input.shape) +
                                                       " is invalid: a negative dimension, or too many values");
  }
  if (numel != input.numel()) {
    return make_error(ErrorCode::kInvalidArgument, "input data holds " + std::to_string(input.numel()) +
                                                       " values, shape " + shape_to_string(input.shape) + " needs " +
                                                       std::to_string(numel));
  }
  if (B <= 0 || H <= 0 || W <= 0) {
    return make_error(ErrorCode::kInvalidArgument, "input " + shape_to_string(input.shape) + " has an empty dimension");
  }
  if (C != cfg.in_chans) {
    return make_error(ErrorCode::kInvalidArgument, "input has " + std::to_string(C) + " channels, the model takes " +
                                                       std::to_string(cfg.in_chans));
  }
  if (H % cfg.patch_size != 0 || W % cfg.patch_size != 0) {
    return make_error(ErrorCode::kInvalidArgument, "input size " + std::to_string(H) + "x" + std::to_string(W) +
                                                       " is not a multiple of the patch size " +
                                                       std::to_string(cfg.patch_size));
  }
  const int64_t T = cfg.tokens_for(H, W);
  if (T > kMaxActivationValues / B / wide_floats_per_row(cfg)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "input " + shape_to_string(input.shape) + " is too large (" + std::to_string(B * T) + " tokens)");
  }
  // A NaN or infinity reaches every output through attention: an error here, not NaN features.
  if (const int64_t i = first_non_finite(input.ptr(), input.numel()); i >= 0) {
    const int64_t per_image = C * H * W, at = i % per_image;
    return make_error(ErrorCode::kInvalidArgument,
                      "input holds " + std::string(std::isnan(input.ptr()[i]) ? "NaN" : "an infinity") + " (image " +
                          std::to_string(i / per_image) + ", channel " + std::to_string(at / (H * W)) + ", row " +
                          std::to_string(at % (H * W) / W) + ", column " + std::to_string(at % W) + ")");
  }
  return {};
}

}  // namespace

Result<std::vector<int>> intermediate_block_indices(const ModelConfig& config, const std::vector<int>& blocks) {
  std::vector<int> indices;
  for (const int idx : blocks) {
    const int64_t block = idx < 0 ? idx + config.depth : idx;
    if (block < 0 || block >= config.depth) {
      return make_error(ErrorCode::kInvalidArgument, "intermediate block " + std::to_string(idx) +
                                                         " is out of range for " + std::to_string(config.depth) +
                                                         " blocks");
    }
    indices.push_back(static_cast<int>(block));
  }
  return indices;
}

Result<std::unique_lock<std::mutex>> Model::lock_for_call(const char* what) {
  std::unique_lock<std::mutex> lock(mutex_, std::try_to_lock);
  if (!lock.owns_lock()) {
    // Held by a thread of this process: wait for it. Held with another process's epoch: this process was
    // forked while that thread ran a call, and it never lets go here. The holder stores its epoch just after
    // taking the lock, so a stale value is looked at again for a moment before it counts.
    const uint64_t here = fork_epoch();
    for (int i = 0; i < 100 && holder_epoch_.load(std::memory_order_acquire) != here; ++i) {
      std::this_thread::sleep_for(std::chrono::microseconds(10));
    }
    if (holder_epoch_.load(std::memory_order_acquire) != here && !lock.try_lock()) {
      return make_error(ErrorCode::kUnsupported,
                        std::string(what) + ": another thread was inside this model when this process was forked, "
                                            "and fork copies no other thread, so the model stays locked here: load "
                                            "it again in this process (or fork while no thread uses it)");
    }
    if (!lock.owns_lock()) lock.lock();
  }
  holder_epoch_.store(fork_epoch(), std::memory_order_release);
  return lock;
}

Result<ForwardOutput> Model::forward(const Tensor& input, const ForwardOptions& options) {
  DINOV3_ASSIGN_OR_RETURN(std::unique_lock<std::mutex> lock, lock_for_call("forward"));
  return guard_api_call("forward", [&] { return forward_unguarded(input, options); });
}

Status Model::set_stop_check(std::function<bool()> check) {
  DINOV3_ASSIGN_OR_RETURN(std::unique_lock<std::mutex> lock, lock_for_call("set_stop_check"));
  stop_check_ = std::move(check);
  return {};
}

Result<ForwardOutput> Model::forward_unguarded(const Tensor& input, const ForwardOptions& options) {
  const ModelConfig& cfg = config_;
  DINOV3_RETURN_IF_ERROR(check_input(cfg, input));
  const int64_t B = input.shape[0], H = input.shape[2], W = input.shape[3];
  const int64_t D = cfg.embed_dim, T = cfg.tokens_for(H, W);

  Pass pass;
  DINOV3_ASSIGN_OR_RETURN(pass.blocks, intermediate_block_indices(cfg, options.intermediate_blocks));
  pass.norm_blocks = options.norm_intermediates;
  pass.keep_embed = options.keep_embed;
  if (PoolMode m; !pool_mode_from_name(pool_mode_name(options.pool), &m)) {  // a cast of another number
    return make_error(ErrorCode::kInvalidArgument, "forward: pool mode " + std::to_string(static_cast<int>(options.pool)) +
                                                       " is none of default, avg and token");
  }
  const PoolMode pool = options.pool == PoolMode::kDefault ? cfg.global_pool : options.pool;
  pass.mean_pool = pool != PoolMode::kToken;

  // A backend may prefer fewer rows per pass (activations that stay in its caches): the batch then runs
  // as consecutive sub-batches through the same planned buffers, each image's numbers unchanged.
  const int64_t max_rows = backend_->max_rows_per_pass(activation_floats_per_row(cfg));
  const int64_t chunk = max_rows > 0 ? std::clamp<int64_t>(max_rows / T, 1, B) : B;
  DINOV3_RETURN_IF_ERROR(prepare_activations(chunk, H, W));

  ForwardOutput out;
  out.features = Tensor({B, T, D});
  out.pooled = Tensor({B, D});
  if (options.keep_embed) out.embed = Tensor({B, T, D});
  for (int block : pass.blocks) out.intermediates.push_back({block, Tensor({B, T, D})});
  const int64_t image_values = cfg.in_chans * H * W;
  for (int64_t b0 = 0; b0 < B; b0 += chunk) {
    const int64_t n = std::min(chunk, B - b0);
    DINOV3_RETURN_IF_ERROR(run_pass(input.ptr() + b0 * image_values, n, H, W, b0, pass, &out));
  }
  if (pool == PoolMode::kToken) {
    for (int64_t b = 0; b < B; ++b) std::copy_n(out.features.ptr() + b * T * D, D, out.pooled.ptr() + b * D);
  }
  // Finite inputs can still overflow float32 on the way (values near 1e38 square to infinity in the
  // LayerNorm): an error naming the image, never NaN features with an OK status.
  std::vector<const Tensor*> outputs = {&out.features, &out.pooled};
  for (const Intermediate& im : out.intermediates) outputs.push_back(&im.tokens);
  for (const Tensor* t : outputs) {
    if (const int64_t i = first_non_finite(t->ptr(), t->numel()); i >= 0) {
      const int64_t b = i / (t->numel() / B);
      const float* x = input.ptr() + b * image_values;
      float largest = 0.0f;
      for (int64_t k = 0; k < image_values; ++k) largest = std::max(largest, std::fabs(x[k]));
      char what[160];
      std::snprintf(what, sizeof(what), "forward: image %lld gives NaN or infinity: its input values (largest |x| %g)",
                    static_cast<long long>(b), static_cast<double>(largest));
      return make_error(ErrorCode::kInvalidArgument, std::string(what) + " overflow float32 arithmetic; preprocessed "
                                                                         "pixels are a few units at most");
    }
  }
  return out;
}

Status Model::run_pass(const float* images, int64_t n, int64_t H, int64_t W, int64_t b0, const Pass& pass,
                       ForwardOutput* out) {
  const ModelConfig& cfg = config_;
  const int64_t D = cfg.embed_dim, T = cfg.tokens_for(H, W), rows = n * T, prefix = cfg.prefix_tokens();
  Activations& a = *acts_;
  Backend& be = *backend_;
  const Weights& w = *weights_;
  // Copies the pass's n rows of a [*, T, D] buffer into images [b0, b0 + n) of `dst`.
  auto download = [&](const DeviceBuffer& buf, int64_t row_values, Tensor* dst) {
    return be.download(buf, 0, dst->ptr() + b0 * row_values, static_cast<size_t>(n * row_values));
  };

  DINOV3_RETURN_IF_ERROR(be.upload(*a.image, 0, images, static_cast<size_t>(n * cfg.in_chans * H * W)));
  DINOV3_RETURN_IF_ERROR(be.embed(*a.image, n, cfg.in_chans, H, W, cfg.patch_size, *w.patch, *w.prefix, prefix, D, *a.x));
  if (pass.keep_embed) DINOV3_RETURN_IF_ERROR(download(*a.x, T * D, &out->embed));

  // Each residual linear layer runs with the LayerNorm that reads its result (norm2 after proj, writing h over
  // the attention output, row for row; after fc2 the next block's norm1, or the final norm), except where an
  // intermediate output needs a.h first.
  bool h_ready = false;  // a.h already holds the LayerNorm the next step reads
  for (int64_t i = 0; i < cfg.depth; ++i) {
    if (stop_check_ && stop_check_()) {
      return make_error(ErrorCode::kCancelled, "forward: stopped by the caller's stop check before block " +
                                                   std::to_string(i) + " of " + std::to_string(cfg.depth));
    }
    const Weights::Block& b = w.blocks[static_cast<size_t>(i)];
    // x = x + gamma_1 * proj(attn(norm1(x)))
    if (!h_ready) {
      DINOV3_RETURN_IF_ERROR(be.layer_norm(*a.x, rows, D, *b.norm1_w, *b.norm1_b, cfg.ln_eps, *a.h, b.qkv.get()));
    }
    // qkv's only reader is attention: the backend may keep it in the form its attention reads.
    LinearEpilogue to_attention;
    to_attention.attention_input = true;
    DINOV3_RETURN_IF_ERROR(be.linear(*a.h, rows, *b.qkv, to_attention, *a.qkv));
    DINOV3_RETURN_IF_ERROR(
        be.attention(*a.qkv, n, T, cfg.num_heads, cfg.head_dim(), prefix, *a.rope, *a.attn, b.proj.get()));
    // x = x + gamma_2 * mlp(norm2(x))
    const Weight* mlp_in = cfg.mlp == MlpKind::kGelu ? b.fc1.get() : b.fc1_g.get();
    DINOV3_RETURN_IF_ERROR(be.linear_residual_layer_norm(*a.attn, rows, *b.proj, *b.gamma_1, *a.x, *b.norm2_w,
                                                         *b.norm2_b, cfg.ln_eps, *a.h, mlp_in));
    // The hidden layer's only reader is fc2: the backend may keep it in the form fc2 reads.
    if (cfg.mlp == MlpKind::kGelu) {
      DINOV3_RETURN_IF_ERROR(be.linear(*a.h, rows, *b.fc1, {Activation::kGelu, nullptr, b.fc2.get()}, *a.hidden));
    } else {
      DINOV3_RETURN_IF_ERROR(be.linear_swiglu(*a.h, rows, *b.fc1_g, *b.fc1_x, *a.hidden, b.fc2.get()));
    }
    const bool intermediate = std::find(pass.blocks.begin(), pass.blocks.end(), i) != pass.blocks.end();
    if (!intermediate) {
      const bool last = i + 1 == cfg.depth;
      const Weights::Block* next = last ? nullptr : &w.blocks[static_cast<size_t>(i + 1)];
      DINOV3_RETURN_IF_ERROR(be.linear_residual_layer_norm(
          *a.hidden, rows, *b.fc2, *b.gamma_2, *a.x, last ? *w.norm_w : *next->norm1_w,
          last ? *w.norm_b : *next->norm1_b, cfg.ln_eps, *a.h, last ? nullptr : next->qkv.get()));
      h_ready = true;
      continue;
    }
    DINOV3_RETURN_IF_ERROR(be.linear(*a.hidden, rows, *b.fc2, {Activation::kNone, b.gamma_2.get()}, *a.x));
    h_ready = false;
    for (size_t k = 0; k < pass.blocks.size(); ++k) {
      if (pass.blocks[k] != i) continue;
      if (pass.norm_blocks) {
        DINOV3_RETURN_IF_ERROR(be.layer_norm(*a.x, rows, D, *w.norm_w, *w.norm_b, cfg.ln_eps, *a.h));
        DINOV3_RETURN_IF_ERROR(download(*a.h, T * D, &out->intermediates[k].tokens));
      } else {
        DINOV3_RETURN_IF_ERROR(download(*a.x, T * D, &out->intermediates[k].tokens));
      }
    }
  }

  if (!h_ready) DINOV3_RETURN_IF_ERROR(be.layer_norm(*a.x, rows, D, *w.norm_w, *w.norm_b, cfg.ln_eps, *a.h));
  DINOV3_RETURN_IF_ERROR(download(*a.h, T * D, &out->features));
  if (pass.mean_pool) {
    DINOV3_RETURN_IF_ERROR(be.mean_tokens(*a.h, n, T, D, prefix, T, *a.pooled));
    DINOV3_RETURN_IF_ERROR(download(*a.pooled, D, &out->pooled));
  }
  return {};
}

}  // namespace dinov3
