// The argument checks every backend runs before an op touches memory: one validator, so that no backend
// checks less than another. Each buffer and weight must belong to the backend running the op (a weight
// prepared by another backend object, or for another precision, is refused rather than reinterpreted),
// every size is computed without overflow and must fit the buffers, and shapes must agree with the
// weights. After a check passes, a backend may downcast its own objects safely.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dinov3/backend.h"

namespace dinov3::op_checks {

// What a backend records on the weights it prepares.
WeightInfo linear_info(const Backend& be, int64_t out, int64_t in);
WeightInfo vector_info(const Backend& be, int64_t n);

Status upload(const Backend& be, const DeviceBuffer& dst, size_t offset, const float* src, size_t n);
Status download(const Backend& be, const DeviceBuffer& src, size_t offset, const float* dst, size_t n);
Status prepare_linear(const Backend& be, const float* w, int64_t out, int64_t in);
Status prepare_vector(const Backend& be, const float* v, int64_t n);

Status embed(const Backend& be, const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height,
             int64_t width, int64_t patch, const Weight& patch_linear, const Weight& prefix, int64_t prefix_count,
             int64_t dim, const DeviceBuffer& tokens);
Status layer_norm(const Backend& be, const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma,
                  const Weight& beta, const DeviceBuffer& y, const Weight* consumer = nullptr);
Status linear(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& epilogue,
              const DeviceBuffer& y);
// Both ops' checks, z distinct from y, and from x unless w is square.
Status linear_residual_layer_norm(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& w,
                                  const Weight& layer_scale, const DeviceBuffer& y, const Weight& gamma,
                                  const Weight& beta, const DeviceBuffer& z, const Weight* z_consumer = nullptr);
Status linear_swiglu(const Backend& be, const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up,
                     const DeviceBuffer& y, const Weight* consumer = nullptr);
Status attention(const Backend& be, const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads,
                 int64_t head_dim, int64_t prefix_count, const DeviceBuffer& rope, const DeviceBuffer& out,
                 const Weight* consumer = nullptr);
Status mean_tokens(const Backend& be, const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim,
                   int64_t begin, int64_t end, const DeviceBuffer& out);

}  // namespace dinov3::op_checks
