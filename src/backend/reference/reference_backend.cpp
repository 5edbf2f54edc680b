// The reference backend: plain loops a reviewer can check against SPEC.md line by line.
// Every reduction (dot products, means, variances, softmax sums) accumulates in double; results are
// stored as float32. Speed is not a goal here; being obviously right is.
#include "backend/reference/reference_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "backend/op_checks.h"
#include "util/api_guard.h"
#include "util/cpu_info.h"
#include "util/float_env.h"

namespace dinov3 {
namespace {

class HostBuffer final : public DeviceBuffer {
 public:
  HostBuffer(const Backend& owner, size_t n) : DeviceBuffer(owner, n), values(n, 0.0f) {}
  std::vector<float> values;
};

struct HostLinear final : public Weight {
  int64_t out = 0, in = 0;  // as info() says
  std::vector<float> w;     // [out, in]
  std::vector<float> bias;  // [out], zeros when the layer has none
};

struct HostVector final : public Weight {
  std::vector<float> v;
};

// Every buffer and weight reaching these has passed op_checks: this backend made it, so the casts hold.
const float* data_of(const DeviceBuffer& b) { return static_cast<const HostBuffer&>(b).values.data(); }
float* data_of(DeviceBuffer& b) { return static_cast<HostBuffer&>(b).values.data(); }
const HostLinear& linear_of(const Weight& w) { return static_cast<const HostLinear&>(w); }
const HostVector& vector_of(const Weight& w) { return static_cast<const HostVector&>(w); }

double gelu_erf(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
double silu(double x) { return x / (1.0 + std::exp(-x)); }

// y[j] = sum_i x[i] * rows[j * ld + i] over i < n, for j < N, each sum in double in the order of i. The N
// sums run side by side only so that the core overlaps them: each is the same chain of roundings as alone.
template <int N>
void dots(const float* x, const float* rows, int64_t ld, int64_t n, double* y) {
  double acc[N] = {};
  for (int64_t i = 0; i < n; ++i) {
    const double xi = x[i];
    for (int j = 0; j < N; ++j) acc[j] += xi * rows[j * ld + i];
  }
  for (int j = 0; j < N; ++j) y[j] = acc[j];
}

// Calls f(r, x . row r) for each of `count` rows of length n (ld apart), four at a time.
template <class F>
void for_each_dot(const float* x, const float* rows, int64_t ld, int64_t n, int64_t count, F&& f) {
  constexpr int kSideBySide = 4;
  double y[kSideBySide];
  int64_t r = 0;
  for (; r + kSideBySide <= count; r += kSideBySide) {
    dots<kSideBySide>(x, rows + r * ld, ld, n, y);
    for (int j = 0; j < kSideBySide; ++j) f(r + j, y[j]);
  }
  for (; r < count; ++r) {
    dots<1>(x, rows + r * ld, ld, n, y);
    f(r, y[0]);
  }
}

// Calls f(o, y) for every output o of a linear layer on row x: y = sum_i x[i] * w[o, i] + b[o], in double.
template <class F>
void for_each_output(const float* x, const HostLinear& w, F&& f) {
  for_each_dot(x, w.w.data(), w.in, w.in, w.out, [&](int64_t o, double acc) { f(o, acc + w.bias[o]); });
}

// Every op runs its loops in the default floating-point environment, whatever the caller set
// (util/float_env.h): the oracle gives the same numbers in any program.
class ReferenceBackend final : public Backend {
 public:
  std::string name() const override { return "reference"; }
  std::string device() const override { return cpu_brand_string() + " (scalar reference loops)"; }

  Result<std::unique_ptr<DeviceBuffer>> allocate(size_t n) override {
    const auto out_of_memory = [n] {
      return make_error(ErrorCode::kOutOfMemory, "reference backend: cannot allocate " + std::to_string(n) + " floats");
    };
    try {
      return std::unique_ptr<DeviceBuffer>(new HostBuffer(*this, n));
    } catch (const std::bad_alloc&) {
      return out_of_memory();
    } catch (const std::length_error&) {  // more floats than a std::vector holds
      return out_of_memory();
    }
  }

  Status upload(DeviceBuffer& dst, size_t offset, const float* src, size_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::upload(*this, dst, offset, src, n));
    if (n > 0) std::memcpy(data_of(dst) + offset, src, n * sizeof(float));
    return {};
  }

  Status download(const DeviceBuffer& src, size_t offset, float* dst, size_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::download(*this, src, offset, dst, n));
    if (n > 0) std::memcpy(dst, data_of(src) + offset, n * sizeof(float));
    return {};
  }

  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* bias, int64_t out,
                                                 int64_t in) override {
    DINOV3_RETURN_IF_ERROR(op_checks::prepare_linear(*this, w, out, in));
    return guard_api_call("reference backend: a linear weight", [&]() -> Result<std::unique_ptr<Weight>> {
      auto lin = std::make_unique<HostLinear>();
      lin->out = out;
      lin->in = in;
      lin->w.assign(w, w + out * in);
      lin->bias.assign(static_cast<size_t>(out), 0.0f);
      if (bias != nullptr) std::copy(bias, bias + out, lin->bias.begin());
      lin->set_info(op_checks::linear_info(*this, out, in));
      return std::unique_ptr<Weight>(std::move(lin));
    });
  }

  Result<std::unique_ptr<Weight>> prepare_vector(const float* v, int64_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::prepare_vector(*this, v, n));
    return guard_api_call("reference backend: a vector weight", [&]() -> Result<std::unique_ptr<Weight>> {
      auto vec = std::make_unique<HostVector>();
      vec->v.assign(v, v + n);
      vec->set_info(op_checks::vector_info(*this, n));
      return std::unique_ptr<Weight>(std::move(vec));
    });
  }

  Status embed(const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height, int64_t width,
               int64_t patch, const Weight& patch_linear, const Weight& prefix, int64_t prefix_count,
               int64_t dim, DeviceBuffer& tokens) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(op_checks::embed(*this, image, batch, channels, height, width, patch, patch_linear, prefix,
                                            prefix_count, dim, tokens));
    const HostLinear& pw = linear_of(patch_linear);
    const std::vector<float>& pre = vector_of(prefix).v;
    const int64_t gh = height / patch, gw = width / patch, tokens_per_image = prefix_count + gh * gw;
    const float* img = data_of(image);
    float* out = data_of(tokens);
    std::vector<float> pixels(static_cast<size_t>(channels * patch * patch));
    for (int64_t b = 0; b < batch; ++b) {
      float* seq = out + b * tokens_per_image * dim;
      std::copy(pre.begin(), pre.begin() + prefix_count * dim, seq);
      for (int64_t i = 0; i < gh; ++i) {
        for (int64_t j = 0; j < gw; ++j) {
          // Gather the patch in the conv weight's (c, ky, kx) order, then it is one linear row.
          size_t k = 0;
          for (int64_t c = 0; c < channels; ++c)
            for (int64_t ky = 0; ky < patch; ++ky)
              for (int64_t kx = 0; kx < patch; ++kx)
                pixels[k++] = img[((b * channels + c) * height + i * patch + ky) * width + j * patch + kx];
          float* token = seq + (prefix_count + i * gw + j) * dim;
          for_each_output(pixels.data(), pw, [&](int64_t o, double v) { token[o] = static_cast<float>(v); });
        }
      }
    }
    return {};
  }

  Status layer_norm(const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma, const Weight& beta,
                    float eps, DeviceBuffer& y, const Weight* consumer = nullptr) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(op_checks::layer_norm(*this, x, rows, dim, gamma, beta, y, consumer));
    const float* g = vector_of(gamma).v.data();
    const float* be = vector_of(beta).v.data();
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = data_of(x) + r * dim;
      float* out = data_of(y) + r * dim;
      double mean = 0.0;
      for (int64_t i = 0; i < dim; ++i) mean += in[i];
      mean /= static_cast<double>(dim);
      double var = 0.0;
      for (int64_t i = 0; i < dim; ++i) var += (in[i] - mean) * (in[i] - mean);
      var /= static_cast<double>(dim);  // biased variance, as torch's layer_norm
      const double inv_std = 1.0 / std::sqrt(var + static_cast<double>(eps));
      for (int64_t i = 0; i < dim; ++i) out[i] = static_cast<float>((in[i] - mean) * inv_std * g[i] + be[i]);
    }
    return {};
  }

  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& weight, const LinearEpilogue& epilogue,
                DeviceBuffer& y) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(op_checks::linear(*this, x, rows, weight, epilogue, y));
    const HostLinear& w = linear_of(weight);
    const float* scale = epilogue.residual_scale ? vector_of(*epilogue.residual_scale).v.data() : nullptr;
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = data_of(x) + r * w.in;
      float* out = data_of(y) + r * w.out;
      for_each_output(in, w, [&](int64_t o, double v) {
        if (scale != nullptr) {
          out[o] = static_cast<float>(out[o] + static_cast<double>(scale[o]) * v);
        } else {
          out[o] = static_cast<float>(epilogue.activation == Activation::kGelu ? gelu_erf(v) : v);
        }
      });
    }
    return {};
  }

  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up, DeviceBuffer& y,
                       const Weight* consumer = nullptr) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(op_checks::linear_swiglu(*this, x, rows, gate, up, y, consumer));
    const HostLinear& wg = linear_of(gate);
    const HostLinear& wx = linear_of(up);
    std::vector<double> gated(static_cast<size_t>(wg.out));
    for (int64_t r = 0; r < rows; ++r) {
      const float* in = data_of(x) + r * wg.in;
      float* out = data_of(y) + r * wg.out;
      for_each_output(in, wg, [&](int64_t o, double v) { gated[o] = silu(v); });
      for_each_output(in, wx, [&](int64_t o, double v) { out[o] = static_cast<float>(gated[o] * v); });
    }
    return {};
  }

  Status attention(const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                   int64_t prefix_count, const DeviceBuffer& rope, DeviceBuffer& out,
                   const Weight* consumer = nullptr) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(
        op_checks::attention(*this, qkv, batch, tokens, heads, head_dim, prefix_count, rope, out, consumer));
    const int64_t dim = heads * head_dim, half = head_dim / 2;
    const float* table = data_of(rope);
    // q and k of one head, RoPE applied, as float32 (what the model computes before the matmul).
    std::vector<float> q(static_cast<size_t>(tokens * head_dim)), k(q.size());
    std::vector<double> scores(static_cast<size_t>(tokens));
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
    for (int64_t b = 0; b < batch; ++b) {
      const float* base = data_of(qkv) + b * tokens * 3 * dim;
      for (int64_t h = 0; h < heads; ++h) {
        for (int64_t t = 0; t < tokens; ++t) {
          const float* qt = base + t * 3 * dim + h * head_dim;
          const float* kt = qt + dim;
          for (int64_t d = 0; d < head_dim; ++d) {
            if (t < prefix_count) {
              q[t * head_dim + d] = qt[d];
              k[t * head_dim + d] = kt[d];
              continue;
            }
            const float* sin_row = table + (t - prefix_count) * 2 * head_dim;
            const float* cos_row = sin_row + head_dim;
            // rotate_half(v)[d] = -v[d + half] for the first half, v[d - half] for the second.
            const int64_t partner = d < half ? d + half : d - half;
            const double sign = d < half ? -1.0 : 1.0;
            q[t * head_dim + d] = static_cast<float>(qt[d] * static_cast<double>(cos_row[d]) +
                                                     sign * qt[partner] * static_cast<double>(sin_row[d]));
            k[t * head_dim + d] = static_cast<float>(kt[d] * static_cast<double>(cos_row[d]) +
                                                     sign * kt[partner] * static_cast<double>(sin_row[d]));
          }
        }
        for (int64_t t = 0; t < tokens; ++t) {
          double max_score = -std::numeric_limits<double>::infinity();
          for_each_dot(q.data() + t * head_dim, k.data(), head_dim, head_dim, tokens, [&](int64_t s, double dot) {
            scores[s] = dot * scale;
            max_score = std::max(max_score, scores[s]);
          });
          double sum = 0.0;
          for (int64_t s = 0; s < tokens; ++s) {
            scores[s] = std::exp(scores[s] - max_score);
            sum += scores[s];
          }
          float* o = data_of(out) + (b * tokens + t) * dim + h * head_dim;
          // Each output in double in the order of s; eight of them side by side (one v row's neighbours).
          const float* v = base + 2 * dim + h * head_dim;
          for (int64_t d0 = 0; d0 < head_dim; d0 += 8) {
            const int64_t n = std::min<int64_t>(8, head_dim - d0);
            double acc[8] = {};
            for (int64_t s = 0; s < tokens; ++s) {
              const float* vs = v + s * 3 * dim + d0;
              for (int64_t j = 0; j < n; ++j) acc[j] += scores[s] * vs[j];
            }
            for (int64_t j = 0; j < n; ++j) o[d0 + j] = static_cast<float>(acc[j] / sum);
          }
        }
      }
    }
    return {};
  }

  Status mean_tokens(const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim, int64_t begin,
                     int64_t end, DeviceBuffer& out) override {
    const ScopedDefaultFloatEnv float_env;
    DINOV3_RETURN_IF_ERROR(op_checks::mean_tokens(*this, x, batch, tokens, dim, begin, end, out));
    for (int64_t b = 0; b < batch; ++b) {
      for (int64_t d = 0; d < dim; ++d) {
        double acc = 0.0;
        for (int64_t t = begin; t < end; ++t) acc += data_of(x)[(b * tokens + t) * dim + d];
        data_of(out)[b * dim + d] = static_cast<float>(acc / static_cast<double>(end - begin));
      }
    }
    return {};
  }
};

}  // namespace

Result<std::unique_ptr<Backend>> create_reference_backend(const BackendOptions& options) {
  if (options.precision != Precision::kF32) {
    return make_error(ErrorCode::kUnsupported, std::string("the reference backend computes in fp32 only, not ") +
                                                   precision_name(options.precision));
  }
  return std::unique_ptr<Backend>(new ReferenceBackend());
}

}  // namespace dinov3
