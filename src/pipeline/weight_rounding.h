// Rounding linear weights to int8 against the inputs the layers actually see (GPTQ: Frantar et al., 2022).
//
// Rounding each weight to the nearest point of its output channel's grid (scale = max|w| / 127) leaves
// an error that is independent of the data. GPTQ takes the same grid but rounds the input columns one
// after another and, after each, moves the rounding error onto the columns not yet rounded in the
// proportions that cancel it best for the layer's inputs: it minimises ||X W^T - X Q^T|| through
// H = X^T X. Activations of vision transformers are far from isotropic (a few directions hold most of
// their energy), which is where this pays.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dinov3/model.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

// The int8 form of one linear layer: w[n][k] ~ scale[n] * q[n][k], q row-major [out, in] in [-127, 127].
struct Int8Rounding {
  std::vector<int8_t> q;
  std::vector<float> scale;
};

// Fraction of the mean of H's diagonal added to the diagonal before it is inverted: keeps H positive
// definite and keeps the rounding from fitting the calibration images too closely. Measured on vits16's
// qkv inputs (blocks 1, 6, 11; rounded on 3 photos, measured on 3 others): 0.1 was the best of 0.01, 0.1,
// 0.3 and 1 in blocks 6 and 11 and within 5% of 0.01 in block 1; 1 was worse everywhere, also on the whole
// model's accuracy.
inline constexpr double kGptqDamping = 0.1;

// GPTQ of w ([out, in], row-major) given h = the sum of x^T x over the layer's input rows x ([in, in],
// row-major; only its lower triangle is read). scale[n] = max_k |w[n][k]| / 127, as nearest rounding takes
// it; with h a multiple of the identity the result is nearest rounding. Falls back to nearest rounding
// where h holds no information (all zero, not finite, not in * in values).
Int8Rounding round_int8_gptq(const std::vector<double>& h, const float* w, int64_t out, int64_t in,
                             double damping = kGptqDamping);

// Nearest rounding per output channel (the same grid, no data).
Int8Rounding round_int8_nearest(const float* w, int64_t out, int64_t in);

// GPTQ of the linear layers of the model at `path` (linear_layers order) from one float32 forward of
// `images` ([B, C, H, W], preprocessed) per group of layers whose H fit in memory together (one group for
// ViT-S/16). `wanted`: one flag per layer, the layers to round (empty: all); the others are neither recorded
// nor rounded, and their entries stay empty. `done(n)` is called after each group with the number of layers
// (of all, wanted or not) dealt with so far.
Result<std::vector<Int8Rounding>> round_linear_layers_gptq(const std::string& path, const Tensor& images,
                                                           const std::string& backend, int threads,
                                                           const std::vector<bool>& wanted = {},
                                                           const std::function<void(int64_t)>& done = {});

}  // namespace dinov3
