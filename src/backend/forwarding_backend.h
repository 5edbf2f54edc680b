// A backend that forwards every call to another one: derived classes change or observe one behaviour
// (int8 calibration records the inputs of the linear layers; the op profile times every op; tests add
// noise or force small passes) and keep the rest exactly as the wrapped backend computes it. The fused
// linear_residual_layer_norm runs as linear() then layer_norm() of this object, so an override of either
// sees every call (the op profile overrides it to keep the wrapped backend's fusion).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "dinov3/backend.h"

namespace dinov3 {

class ForwardingBackend : public Backend {
 public:
  explicit ForwardingBackend(std::unique_ptr<Backend> inner) : inner_(std::move(inner)) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  Precision precision() const override { return inner_->precision(); }
  int threads() const override { return inner_->threads(); }
  std::vector<std::string> notes() const override { return inner_->notes(); }
  int64_t max_rows_per_pass(int64_t floats_per_row) const override { return inner_->max_rows_per_pass(floats_per_row); }
  Result<std::unique_ptr<DeviceBuffer>> allocate(size_t n) override { return inner_->allocate(n); }
  Status upload(DeviceBuffer& d, size_t o, const float* s, size_t n) override { return inner_->upload(d, o, s, n); }
  Status download(const DeviceBuffer& s, size_t o, float* d, size_t n) override { return inner_->download(s, o, d, n); }
  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* b, int64_t out, int64_t in) override {
    return inner_->prepare_linear(w, b, out, in);
  }
  Result<std::unique_ptr<Weight>> prepare_vector(const float* v, int64_t n) override { return inner_->prepare_vector(v, n); }
  Status embed(const DeviceBuffer& image, int64_t b, int64_t c, int64_t h, int64_t w, int64_t p, const Weight& pl,
               const Weight& pre, int64_t pc, int64_t d, DeviceBuffer& tokens) override {
    return inner_->embed(image, b, c, h, w, p, pl, pre, pc, d, tokens);
  }
  Status layer_norm(const DeviceBuffer& x, int64_t r, int64_t d, const Weight& g, const Weight& b, float eps,
                    DeviceBuffer& y, const Weight* consumer = nullptr) override {
    return inner_->layer_norm(x, r, d, g, b, eps, y, consumer);
  }
  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& e, DeviceBuffer& y) override {
    return inner_->linear(x, rows, w, e, y);
  }
  Status linear_residual_layer_norm(const DeviceBuffer& x, int64_t rows, const Weight& w, const Weight& scale,
                                    DeviceBuffer& y, const Weight& g, const Weight& b, float eps, DeviceBuffer& z,
                                    const Weight* consumer = nullptr) override {
    if (&z == &y) return make_error(ErrorCode::kInvalidArgument, "z must differ from y");
    DINOV3_RETURN_IF_ERROR(linear(x, rows, w, {Activation::kNone, &scale}, y));
    return layer_norm(y, rows, w.info().out, g, b, eps, z, consumer);
  }
  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& g, const Weight& u, DeviceBuffer& y,
                       const Weight* consumer = nullptr) override {
    return inner_->linear_swiglu(x, rows, g, u, y, consumer);
  }
  Status attention(const DeviceBuffer& qkv, int64_t b, int64_t t, int64_t h, int64_t hd, int64_t pc,
                   const DeviceBuffer& rope, DeviceBuffer& out, const Weight* consumer = nullptr) override {
    return inner_->attention(qkv, b, t, h, hd, pc, rope, out, consumer);
  }
  Status mean_tokens(const DeviceBuffer& x, int64_t b, int64_t t, int64_t d, int64_t begin, int64_t end,
                     DeviceBuffer& out) override {
    return inner_->mean_tokens(x, b, t, d, begin, end, out);
  }

 protected:
  Backend& inner() { return *inner_; }

 private:
  std::unique_ptr<Backend> inner_;
};

}  // namespace dinov3
