#include "backend/op_checks.h"

#include <atomic>
#include <initializer_list>
#include <string>
#include <type_traits>

namespace dinov3 {

namespace {
uint64_t next_backend_instance() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
}  // namespace

Backend::Backend() : instance_id_(next_backend_instance()) {}

Status Backend::linear_residual_layer_norm(const DeviceBuffer& x, int64_t rows, const Weight& w,
                                           const Weight& layer_scale, DeviceBuffer& y, const Weight& gamma,
                                           const Weight& beta, float eps, DeviceBuffer& z, const Weight* z_consumer) {
  DINOV3_RETURN_IF_ERROR(op_checks::linear_residual_layer_norm(*this, x, rows, w, layer_scale, y, gamma, beta, z,
                                                               z_consumer));
  DINOV3_RETURN_IF_ERROR(linear(x, rows, w, {Activation::kNone, &layer_scale}, y));
  return layer_norm(y, rows, w.info().out, gamma, beta, eps, z, z_consumer);
}

DeviceBuffer::DeviceBuffer(const Backend& owner, size_t size) : size_(size), owner_(owner.instance_id()) {}

namespace op_checks {
namespace {

// One op's checks: the first failure is kept, with the backend and op named in its message. A message is
// text, or a callable returning it that runs only when its check fails: every op of every forward passes
// through here, and messages built eagerly (string concatenations, one allocation each) took ~0.5% of a
// one-thread ViT-S forward in `perf`.
class Check {
 public:
  Check(const Backend& be, const char* op) : be_(be), op_(op) {}

  Status status() const { return status_; }

  template <class Message>
  Check& that(bool ok, Message&& what) {
    if (!ok && status_.ok()) {
      std::string text;
      if constexpr (std::is_invocable_v<Message>) {
        text = what();
      } else {
        text = what;
      }
      status_ = make_error(ErrorCode::kInvalidArgument, be_.name() + " backend: " + op_ + ": " + text);
    }
    return *this;
  }
  // The product of non-negative sizes, or -1 (failing the check) when one is negative or it overflows.
  int64_t product(std::initializer_list<int64_t> sizes, const char* what) {
    int64_t p = 1;
    for (const int64_t s : sizes) {
      if (s < 0 || __builtin_mul_overflow(p, s, &p)) {
        that(false, [&] { return std::string(what) + " has a negative or overflowing size"; });
        return -1;
      }
    }
    return p;
  }
  Check& buffer(const DeviceBuffer& b, int64_t needed, const char* what) {
    that(b.owner() == be_.instance_id(), [&] { return std::string("buffer '") + what + "' belongs to another backend"; });
    if (needed < 0) return *this;  // product() has already failed the check
    return that(static_cast<uint64_t>(needed) <= b.size(), [&] {
      return std::string("buffer '") + what + "' holds " + std::to_string(b.size()) + " values, the op needs " +
             std::to_string(needed);
    });
  }
  Check& weight(const Weight& w, WeightInfo::Kind kind, const char* what) {
    const WeightInfo& info = w.info();
    that(info.precision == be_.precision(), [&] {
      return std::string("weight '") + what + "' was prepared for " + precision_name(info.precision) +
             ", this backend runs " + precision_name(be_.precision());
    });
    that(info.owner == be_.instance_id(), [&] { return std::string("weight '") + what + "' was prepared by another backend"; });
    return that(info.kind == kind, [&] {
      return std::string("weight '") + what + "' is not " +
             (kind == WeightInfo::Kind::kLinear ? "a linear layer" : "a vector");
    });
  }
  Check& vector(const Weight& w, int64_t needed, const char* what) {
    weight(w, WeightInfo::Kind::kVector, what);
    return that(w.info().out >= needed, [&] {
      return std::string("vector '") + what + "' has " + std::to_string(w.info().out) + " values, the op needs " +
             std::to_string(needed);
    });
  }
  // The linear layer an op hands its output to (LinearEpilogue::consumer): one of this backend's, whose
  // input width is the output's.
  Check& consumer(const Weight* w, int64_t out) {
    if (w == nullptr) return *this;
    weight(*w, WeightInfo::Kind::kLinear, "consumer");
    return that(w->info().in == out, [&] {
      return "the consumer layer takes " + std::to_string(w->info().in) + " inputs, the op writes " +
             std::to_string(out);
    });
  }
  Check& distinct(const DeviceBuffer& a, const DeviceBuffer& b, const char* what) {
    return that(&a != &b, [&] { return std::string(what) + " must be different buffers"; });
  }

 private:
  const Backend& be_;
  const char* op_;
  Status status_;
};

}  // namespace

WeightInfo linear_info(const Backend& be, int64_t out, int64_t in) {
  return {WeightInfo::Kind::kLinear, out, in, be.precision(), be.instance_id()};
}

WeightInfo vector_info(const Backend& be, int64_t n) {
  return {WeightInfo::Kind::kVector, n, 0, be.precision(), be.instance_id()};
}

namespace {

// upload and download: n floats between host memory and buffer[offset, offset + n).
Status host_copy(const Backend& be, const char* op, const DeviceBuffer& buffer, const char* buffer_name, size_t offset,
                 const float* host, size_t n) {
  Check c(be, op);
  size_t end = 0;
  c.that(!__builtin_add_overflow(offset, n, &end) && end <= static_cast<size_t>(INT64_MAX), "range overflows");
  c.that(n == 0 || host != nullptr, "no host memory");
  return c.buffer(buffer, static_cast<int64_t>(end), buffer_name).status();
}

}  // namespace

Status upload(const Backend& be, const DeviceBuffer& dst, size_t offset, const float* src, size_t n) {
  return host_copy(be, "upload", dst, "destination", offset, src, n);
}

Status download(const Backend& be, const DeviceBuffer& src, size_t offset, const float* dst, size_t n) {
  return host_copy(be, "download", src, "source", offset, dst, n);
}

Status prepare_linear(const Backend& be, const float* w, int64_t out, int64_t in) {
  Check c(be, "prepare_linear");
  c.that(out > 0 && in > 0, [&] { return "shape [" + std::to_string(out) + ", " + std::to_string(in) + "] is empty"; });
  c.product({out, in}, "the weight");
  return c.that(w != nullptr, "no weight data").status();
}

Status prepare_vector(const Backend& be, const float* v, int64_t n) {
  Check c(be, "prepare_vector");
  c.that(n >= 0, [&] { return "negative length " + std::to_string(n); });
  return c.that(n == 0 || v != nullptr, "no vector data").status();
}

Status embed(const Backend& be, const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height,
             int64_t width, int64_t patch, const Weight& patch_linear, const Weight& prefix, int64_t prefix_count,
             int64_t dim, const DeviceBuffer& tokens) {
  Check c(be, "embed");
  c.that(channels > 0 && height > 0 && width > 0 && patch > 0 && dim > 0 && prefix_count >= 0,
         "empty or negative image, patch or token shape");
  if (!c.status().ok()) return c.status();
  c.that(height % patch == 0 && width % patch == 0, [&] {
    return "image " + std::to_string(height) + "x" + std::to_string(width) + " is not a multiple of the patch size " +
           std::to_string(patch);
  });
  c.weight(patch_linear, WeightInfo::Kind::kLinear, "patch");
  const int64_t patch_values = c.product({channels, patch, patch}, "the patch");
  c.that(patch_linear.info().in == patch_values && patch_linear.info().out == dim, [&] {
    return "the patch weight is [" + std::to_string(patch_linear.info().out) + ", " +
           std::to_string(patch_linear.info().in) + "], the patch shape needs [" + std::to_string(dim) + ", " +
           std::to_string(patch_values) + "]";
  });
  c.vector(prefix, c.product({prefix_count, dim}, "prefix"), "prefix");
  int64_t per_image = c.product({height / patch, width / patch}, "the patch grid");
  if (per_image >= 0) c.that(!__builtin_add_overflow(per_image, prefix_count, &per_image), "the token count overflows");
  c.buffer(image, c.product({batch, channels, height, width}, "image"), "image");
  c.buffer(tokens, c.product({batch, per_image, dim}, "tokens"), "tokens");
  return c.distinct(image, tokens, "image and tokens").status();
}

Status layer_norm(const Backend& be, const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma,
                  const Weight& beta, const DeviceBuffer& y, const Weight* consumer) {
  Check c(be, "layer_norm");
  c.that(dim > 0, "dim must be positive");
  c.vector(gamma, dim, "gamma");
  c.vector(beta, dim, "beta");
  const int64_t n = c.product({rows, dim}, "x");
  c.buffer(x, n, "x");
  c.consumer(consumer, dim);
  return c.buffer(y, n, "y").status();  // y may alias x
}

Status linear(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& epilogue,
              const DeviceBuffer& y) {
  Check c(be, "linear");
  c.weight(w, WeightInfo::Kind::kLinear, "w");
  c.buffer(x, c.product({rows, w.info().in}, "x"), "x");
  c.buffer(y, c.product({rows, w.info().out}, "y"), "y");
  c.distinct(x, y, "x and y");
  if (epilogue.residual_scale != nullptr) {
    c.that(epilogue.activation == Activation::kNone, "a residual linear cannot have an activation");
    c.vector(*epilogue.residual_scale, w.info().out, "residual scale");
    c.that(epilogue.consumer == nullptr, "a residual linear's output cannot be handed to a consumer");
  }
  c.consumer(epilogue.consumer, w.info().out);
  if (epilogue.attention_input) {
    c.that(epilogue.residual_scale == nullptr && epilogue.consumer == nullptr,
           "attention's input cannot also be a residual output or a linear layer's input");
  }
  return c.status();
}

Status linear_residual_layer_norm(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& w,
                                  const Weight& layer_scale, const DeviceBuffer& y, const Weight& gamma,
                                  const Weight& beta, const DeviceBuffer& z, const Weight* z_consumer) {
  DINOV3_RETURN_IF_ERROR(linear(be, x, rows, w, {Activation::kNone, &layer_scale}, y));
  DINOV3_RETURN_IF_ERROR(layer_norm(be, y, rows, w.info().out, gamma, beta, z, z_consumer));
  Check c(be, "linear_residual_layer_norm");
  // z over x only row for row: a row tile is normalised once the GEMM has read the last of its input rows.
  if (w.info().in != w.info().out) c.distinct(z, x, "z and x (w not square)");
  return c.distinct(z, y, "z and y").status();
}

Status linear_swiglu(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up,
                     const DeviceBuffer& y, const Weight* consumer) {
  Check c(be, "linear_swiglu");
  c.weight(gate, WeightInfo::Kind::kLinear, "gate");
  c.weight(up, WeightInfo::Kind::kLinear, "up");
  c.that(gate.info().out == up.info().out && gate.info().in == up.info().in, "gate and up shapes differ");
  c.buffer(x, c.product({rows, gate.info().in}, "x"), "x");
  c.buffer(y, c.product({rows, gate.info().out}, "y"), "y");
  c.consumer(consumer, gate.info().out);
  return c.distinct(x, y, "x and y").status();
}

Status attention(const Backend& be, const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads,
                 int64_t head_dim, int64_t prefix_count, const DeviceBuffer& rope, const DeviceBuffer& out,
                 const Weight* consumer) {
  Check c(be, "attention");
  // RoPE rotates the two halves of each head.
  c.that(heads > 0 && head_dim > 0 && head_dim % 2 == 0, "heads must be positive and head_dim positive and even");
  c.that(prefix_count >= 0 && prefix_count <= tokens, "prefix_count must lie in [0, tokens]");
  const int64_t dim = c.product({heads, head_dim}, "heads x head_dim");
  c.buffer(qkv, c.product({batch, tokens, 3, dim}, "qkv"), "qkv");
  c.buffer(rope, c.product({tokens - prefix_count, 2, head_dim}, "rope"), "rope");
  c.buffer(out, c.product({batch, tokens, dim}, "out"), "out");
  c.distinct(qkv, out, "qkv and out");
  c.consumer(consumer, dim);
  return c.distinct(rope, out, "rope and out").status();
}

Status mean_tokens(const Backend& be, const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim,
                   int64_t begin, int64_t end, const DeviceBuffer& out) {
  Check c(be, "mean_tokens");
  c.that(dim > 0 && 0 <= begin && begin < end && end <= tokens, "the token range must be non-empty and inside [0, tokens]");
  c.buffer(x, c.product({batch, tokens, dim}, "x"), "x");
  c.buffer(out, c.product({batch, dim}, "out"), "out");
  return c.distinct(x, out, "x and out").status();
}

}  // namespace op_checks
}  // namespace dinov3
