// LoadOptions::op_profile's backend wrapper (dinov3/op_profile.h).
#include "dinov3/op_profile.h"

#include <chrono>
#include <utility>

#include "backend/forwarding_backend.h"

namespace dinov3 {

std::vector<OpStat> OpProfile::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void OpProfile::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.clear();
}

void OpProfile::add(const std::string& op, double seconds, double flops) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (OpStat& s : stats_) {
    if (s.op != op) continue;
    ++s.calls;
    s.seconds += seconds;
    s.flops += flops;
    return;
  }
  stats_.push_back({op, 1, seconds, flops});
}

namespace {

std::string shape(int64_t in, int64_t out) { return std::to_string(in) + "->" + std::to_string(out); }

// 2 flops per multiply-add of x [rows, in] w^T, as forward_flops counts them.
double linear_flops(int64_t rows, const Weight& w) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(w.info().in) * static_cast<double>(w.info().out);
}

class ProfilingBackend final : public ForwardingBackend {
 public:
  ProfilingBackend(std::unique_ptr<Backend> inner, std::shared_ptr<OpProfile> profile)
      : ForwardingBackend(std::move(inner)), profile_(std::move(profile)) {}

  Status upload(DeviceBuffer& d, size_t o, const float* s, size_t n) override {
    return timed("upload", 0, [&] { return inner().upload(d, o, s, n); });
  }
  Status download(const DeviceBuffer& s, size_t o, float* d, size_t n) override {
    return timed("download", 0, [&] { return inner().download(s, o, d, n); });
  }
  Status embed(const DeviceBuffer& image, int64_t b, int64_t c, int64_t h, int64_t w, int64_t p, const Weight& pl,
               const Weight& pre, int64_t pc, int64_t d, DeviceBuffer& tokens) override {
    const int64_t patches = p > 0 ? b * (h / p) * (w / p) : 0;
    const std::string op = "patch_embed " + std::to_string(p) + "x" + std::to_string(p) + "x" + std::to_string(c) +
                           "->" + std::to_string(d);
    return timed(op, linear_flops(patches, pl), [&] { return inner().embed(image, b, c, h, w, p, pl, pre, pc, d, tokens); });
  }
  Status layer_norm(const DeviceBuffer& x, int64_t r, int64_t d, const Weight& g, const Weight& b, float eps,
                    DeviceBuffer& y, const Weight* consumer) override {
    return timed("layer_norm " + std::to_string(d), 0,
                 [&] { return inner().layer_norm(x, r, d, g, b, eps, y, consumer); });
  }
  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& e, DeviceBuffer& y) override {
    std::string op = "linear";
    if (e.activation == Activation::kGelu) op += "+gelu";
    if (e.residual_scale != nullptr) op += "+residual";
    return timed(op + " " + shape(w.info().in, w.info().out), linear_flops(rows, w),
                 [&] { return inner().linear(x, rows, w, e, y); });
  }
  // Forwarded whole, so a backend that fuses the two keeps doing so under the profile.
  Status linear_residual_layer_norm(const DeviceBuffer& x, int64_t rows, const Weight& w, const Weight& scale,
                                    DeviceBuffer& y, const Weight& g, const Weight& b, float eps, DeviceBuffer& z,
                                    const Weight* consumer) override {
    return timed("linear+residual+layer_norm " + shape(w.info().in, w.info().out), linear_flops(rows, w),
                 [&] { return inner().linear_residual_layer_norm(x, rows, w, scale, y, g, b, eps, z, consumer); });
  }
  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& g, const Weight& u, DeviceBuffer& y,
                       const Weight* consumer) override {
    return timed("linear_swiglu " + shape(g.info().in, g.info().out), linear_flops(rows, g) + linear_flops(rows, u),
                 [&] { return inner().linear_swiglu(x, rows, g, u, y, consumer); });
  }
  Status attention(const DeviceBuffer& qkv, int64_t b, int64_t t, int64_t h, int64_t hd, int64_t pc,
                   const DeviceBuffer& rope, DeviceBuffer& out, const Weight* consumer) override {
    // q k^T and attention x v: 2 x (2 flops per multiply-add) per query, key and head channel.
    const double flops = 4.0 * static_cast<double>(b) * static_cast<double>(h) * static_cast<double>(t) *
                         static_cast<double>(t) * static_cast<double>(hd);
    return timed("attention " + std::to_string(h) + "x" + std::to_string(hd) + " " + std::to_string(t) + " tokens",
                 flops, [&] { return inner().attention(qkv, b, t, h, hd, pc, rope, out, consumer); });
  }
  Status mean_tokens(const DeviceBuffer& x, int64_t b, int64_t t, int64_t d, int64_t begin, int64_t end,
                     DeviceBuffer& out) override {
    return timed("mean_tokens", 0, [&] { return inner().mean_tokens(x, b, t, d, begin, end, out); });
  }

 private:
  // Runs fn and, when it succeeds, adds its wall time to the profile.
  template <class Fn>
  Status timed(const std::string& op, double flops, Fn&& fn) {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = fn();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s.ok()) profile_->add(op, seconds, flops);
    return s;
  }

  std::shared_ptr<OpProfile> profile_;
};

}  // namespace

std::unique_ptr<Backend> profile_backend_ops(std::unique_ptr<Backend> inner, std::shared_ptr<OpProfile> profile) {
  if (!inner || !profile) return inner;
  return std::make_unique<ProfilingBackend>(std::move(inner), std::move(profile));
}

}  // namespace dinov3
