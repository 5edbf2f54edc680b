// The backend interface: every op the DINOv3 forward needs, and nothing else.
//
// The model (src/model/) is written once against this interface. A backend owns its memory
// (DeviceBuffer), prepares weights once at load into whatever layout its kernels want (Weight), and
// runs ops on buffers. The reference backend (src/backend/reference/) is the oracle: plain loops,
// reductions in double. New devices add a folder under src/backend/ and one line in registry.cpp.
//
// All activations are float32 and row-major. Shapes are passed explicitly with each op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

enum class Precision { kF32, kBF16, kInt8 };
const char* precision_name(Precision p);  // "fp32", "bf16", "int8"
bool precision_from_name(const std::string& name, Precision* out);

class Backend;

// Memory a backend computes on: `size` float32 values, belonging to the backend that allocated it. A
// backend refuses buffers it did not allocate (its ops check every argument; see src/backend/op_checks.h).
class DeviceBuffer {
 public:
  DeviceBuffer(const Backend& owner, size_t size);
  virtual ~DeviceBuffer() = default;
  size_t size() const { return size_; }
  uint64_t owner() const { return owner_; }  // Backend::instance_id() of the allocating backend

 private:
  size_t size_;
  uint64_t owner_;
};

// What a prepared weight is, whatever layout its backend chose for it: the argument checks read shapes
// from here, and a backend refuses a weight it did not prepare, or one prepared for another precision.
struct WeightInfo {
  enum class Kind { kLinear, kVector };
  Kind kind = Kind::kVector;
  int64_t out = 0;  // a linear layer's output features, or a vector's length
  int64_t in = 0;   // a linear layer's input features; 0 for a vector
  Precision precision = Precision::kF32;
  uint64_t owner = 0;  // Backend::instance_id() of the preparing backend
};

// A parameter prepared once at load (repacked, converted, uploaded: the backend's choice).
class Weight {
 public:
  virtual ~Weight() = default;
  const WeightInfo& info() const { return info_; }
  // Set once, by the backend that prepared the weight.
  void set_info(const WeightInfo& info) { info_ = info; }

 private:
  WeightInfo info_;
};

enum class Activation { kNone, kGelu };  // GELU is the exact erf form

// What a linear layer does with y_tmp = x W^T + b before storing it.
struct LinearEpilogue {
  Activation activation = Activation::kNone;  // y = act(y_tmp)
  // When set: y += layer_scale * y_tmp (LayerScale + residual add; `activation` must be kNone).
  const Weight* residual_scale = nullptr;
  // When set: y's only reader is the next op, a linear layer with this weight taking y as its input x
  // (an MLP's hidden layer). A backend may then keep y in just the form that layer reads (the cpu backend:
  // only bf16 for a bf16 layer), so y read any other way (download, another op) may come back rounded to
  // that form. Unset (the default): y holds every value as computed. Needs residual_scale unset.
  const Weight* consumer = nullptr;
  // When set: y's only reader is the next op, attention, taking y as its qkv. A backend may then keep y in
  // just the form its attention reads (the cpu backend in bf16 and int8: only bf16, so q, k and v are rounded
  // to bf16 before RoPE, as its attention then does with any qkv), so y read any other way may come back
  // rounded to that form. Needs residual_scale and consumer unset.
  bool attention_input = false;
};

// A linear layer's int8 values chosen outside the backend: w[n][k] ~ scale[n] * q[n][k], q row-major
// [out, in]. int8 plans carry them (calibration rounds the weights against the calibration images' inputs,
// dinov3/int8_plan.h).
struct Int8LinearValues {
  const int8_t* q = nullptr;  // nullptr: none
  const float* scale = nullptr;
  int64_t out = 0, in = 0;
};

struct BackendOptions {
  int threads = 0;                       // 0: one per core; the cpu backend takes at most max(256, 4 x cores)
  Precision precision = Precision::kF32;
  // Per-layer mixed precision (int8 plans, dinov3/int8_plan.h, set it through LoadOptions::int8_plan): with
  // precision kInt8, the precision (kInt8 or kBF16) of the n-th linear layer prepared, counting from 0 in
  // the model's loading order (linear_layers() in dinov3/model.h). Unset: every one int8. Backends without
  // reduced precision ignore it.
  std::function<Precision(int64_t n)> int8_linear_precision;
  // With precision kInt8: the n-th linear layer's int8 values (counted as above), used instead of the
  // backend's own rounding of its weights when that layer runs int8; q == nullptr: none, the backend rounds
  // them itself. They must have the layer's shape. Backends without int8 ignore it.
  std::function<Int8LinearValues(int64_t n)> int8_linear_values;
};

class Backend {
 public:
  Backend();
  virtual ~Backend() = default;
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Distinct for every backend object a process creates: what buffers and weights record as their owner.
  uint64_t instance_id() const { return instance_id_; }

  virtual std::string name() const = 0;
  // Human-readable device: "CPU Intel(R) Xeon(R) ..., avx512f" or a GPU's name.
  virtual std::string device() const = 0;
  virtual Precision precision() const { return Precision::kF32; }
  virtual int threads() const { return 1; }
  // Rows (batch x tokens) this backend prefers per forward pass, given the activation floats the model
  // keeps per row; a larger batch runs as consecutive sub-batches of at most this many rows (at least one
  // image each). 0: no limit.
  virtual int64_t max_rows_per_pass(int64_t floats_per_row) const { return 0; }

  // ---- memory -------------------------------------------------------------------------------------
  virtual Result<std::unique_ptr<DeviceBuffer>> allocate(size_t n_floats) = 0;
  // Copies n floats between host memory and buffer[offset, offset + n).
  virtual Status upload(DeviceBuffer& dst, size_t offset, const float* src, size_t n) = 0;
  virtual Status download(const DeviceBuffer& src, size_t offset, float* dst, size_t n) = 0;

  // ---- weights (host pointers are valid only during the call) ------------------------------------
  // w: [out, in] as stored by PyTorch; bias: [out] or nullptr.
  virtual Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* bias, int64_t out,
                                                         int64_t in) = 0;
  // A plain vector (LayerNorm weight or bias, LayerScale gamma, prefix tokens).
  virtual Result<std::unique_ptr<Weight>> prepare_vector(const float* v, int64_t n) = 0;

  // ---- ops ----------------------------------------------------------------------------------------
  // tokens[b, t, :] for t < prefix_count: prefix[t*dim .. (t+1)*dim) (cls, then registers);
  // tokens[b, prefix_count + i*gw + j, :] = conv2d(image, patch, stride patch)[b, :, i, j], where the
  // patch weight is a linear [dim, channels*patch*patch] over (c, ky, kx)-ordered pixels plus bias.
  // image: [batch, channels, height, width]; tokens: [batch, prefix_count + (h/patch)*(w/patch), dim].
  virtual Status embed(const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height,
                       int64_t width, int64_t patch, const Weight& patch_linear, const Weight& prefix,
                       int64_t prefix_count, int64_t dim, DeviceBuffer& tokens) = 0;

  // y[r, :] = (x[r, :] - mean) / sqrt(var + eps) * gamma + beta over `dim`; y may alias x.
  // consumer: as LinearEpilogue::consumer.
  virtual Status layer_norm(const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma,
                            const Weight& beta, float eps, DeviceBuffer& y, const Weight* consumer = nullptr) = 0;

  // x: [rows, in]; y: [rows, out]. See LinearEpilogue.
  virtual Status linear(const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& epilogue,
                        DeviceBuffer& y) = 0;

  // A residual linear layer and the LayerNorm that reads its result, as one op (every transformer block's
  // projection and second MLP layer are followed by the next LayerNorm):
  //   y += layer_scale * (x w^T + b)                                  (linear() with residual_scale)
  //   z = LayerNorm(y) over w's out values with gamma, beta, eps      (layer_norm(y, ..., z, z_consumer))
  // z must not be y, and may be x only when w is square (in == out). The default checks the arguments as
  // this backend's own and runs the two ops; a backend may fuse them (the cpu backend normalises a block of
  // rows as soon as its last output column is stored, saving the LayerNorm's own pass). A backend wrapping
  // another one overrides it to forward.
  virtual Status linear_residual_layer_norm(const DeviceBuffer& x, int64_t rows, const Weight& w,
                                            const Weight& layer_scale, DeviceBuffer& y, const Weight& gamma,
                                            const Weight& beta, float eps, DeviceBuffer& z,
                                            const Weight* z_consumer = nullptr);

  // SwiGLU MLP input half: y = silu(x Wg^T + bg) * (x Wx^T + bx). x: [rows, in]; y: [rows, hidden].
  // consumer: as LinearEpilogue::consumer.
  virtual Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up,
                               DeviceBuffer& y, const Weight* consumer = nullptr) = 0;

  // Multi-head self-attention with 2-D RoPE on the patch tokens.
  // qkv: [batch, tokens, 3*heads*head_dim] (q | k | v, head n at columns [n*hd, (n+1)*hd) of each third).
  // rope: [tokens - prefix_count, 2*head_dim]: sin (first head_dim values) then cos, applied to q and k
  // of tokens t >= prefix_count as v*cos + rotate_half(v)*sin, rotate_half([a, b]) = [-b, a].
  // out: [batch, tokens, heads*head_dim] = softmax(q k^T / sqrt(head_dim)) v, heads concatenated.
  // consumer: as LinearEpilogue::consumer.
  virtual Status attention(const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads,
                           int64_t head_dim, int64_t prefix_count, const DeviceBuffer& rope,
                           DeviceBuffer& out, const Weight* consumer = nullptr) = 0;

  // out[b, :] = mean of x[b, t, :] over t in [begin, end). x: [batch, tokens, dim]; out: [batch, dim].
  virtual Status mean_tokens(const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim, int64_t begin,
                             int64_t end, DeviceBuffer& out) = 0;

  // Things a user should know about how this backend runs, each one line (a slow fallback kernel, a
  // setting that was not honoured). The library never prints them; the CLI's reports do.
  virtual std::vector<std::string> notes() const { return {}; }

 private:
  uint64_t instance_id_;
};

// ---- registry ---------------------------------------------------------------------------------------
using BackendFactory = std::function<Result<std::unique_ptr<Backend>>(const BackendOptions&)>;

// Backends built into the library: "reference", "cpu" (the default), plus any registered at run time.
std::vector<std::string> backend_names();
const char* default_backend_name();
Result<std::unique_ptr<Backend>> create_backend(const std::string& name, const BackendOptions& options = {});
// Adds a backend (tests register instrumented ones); replaces an existing one of the same name.
void register_backend(const std::string& name, BackendFactory factory);

}  // namespace dinov3
