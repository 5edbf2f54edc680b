// Each linear layer's share of the int8 error: int8_sensitivity MODEL IMAGE... [--threads N]
//
// Runs the images (one batch) through the float32 CPU backend (the baseline: within 1e-6 of the reference
// backend), through bf16, through int8, and once per linear layer with only that layer in int8 and every
// other one in bf16 (BackendOptions::int8_linear_precision). Per run: the features' relative L2 error of the
// worst image. A layer's contribution is sqrt(e_layer^2 - e_bf16^2): errors of independent layers add in
// quadrature (the sum over all layers is printed beside the all-int8 figure to check it). One line per layer,
// in loading order (patch embedding, then per block qkv, proj, fc1, fc2 or the SwiGLU's three).
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dinov3/metrics.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"

namespace {

using dinov3::Precision;

// Worst image's features relative L2 error against `base`, or -1 on failure (printed).
double worst_error(const std::string& model_dir, const dinov3::Tensor& input, const dinov3::BackendOptions& options,
                   const dinov3::Tensor* base, dinov3::Tensor* features) {
  dinov3::LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options = options;
  auto model = dinov3::Model::load(model_dir, lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().message().c_str());
    return -1;
  }
  auto out = (*model)->forward(input);
  if (!out.ok()) {
    std::fprintf(stderr, "%s\n", out.status().message().c_str());
    return -1;
  }
  if (features != nullptr) *features = out->features;
  if (base == nullptr) return 0;
  const size_t per_image = base->data.size() / static_cast<size_t>(base->shape[0]);
  double worst = 0;
  for (int64_t b = 0; b < base->shape[0]; ++b) {
    const size_t at = static_cast<size_t>(b) * per_image;
    worst = std::max(worst, dinov3::compare_outputs(out->features.data.data() + at, base->data.data() + at, per_image).rel_error);
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> images;
  int threads = 0;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else {
      images.push_back(argv[i]);
    }
  }
  if (argc < 3 || images.empty()) {
    std::fprintf(stderr, "usage: %s MODEL IMAGE... [--threads N]\n", argv[0]);
    return 2;
  }
  const std::string model_dir = argv[1];
  auto probe = dinov3::Model::load(model_dir, dinov3::LoadOptions{});
  if (!probe.ok()) {
    std::fprintf(stderr, "%s\n", probe.status().message().c_str());
    return 1;
  }
  auto pc = dinov3::preprocess_config_for((*probe)->config());
  auto input = pc.ok() ? dinov3::load_image_batch(images, *pc) : dinov3::Result<dinov3::Tensor>(pc.status());
  if (!input.ok()) {
    std::fprintf(stderr, "%s\n", input.status().message().c_str());
    return 1;
  }
  dinov3::BackendOptions options;
  options.threads = threads;
  dinov3::Tensor base;
  if (worst_error(model_dir, *input, options, nullptr, &base) < 0) return 1;
  options.precision = Precision::kBF16;
  const double bf16 = worst_error(model_dir, *input, options, &base, nullptr);
  options.precision = Precision::kInt8;
  const double int8 = worst_error(model_dir, *input, options, &base, nullptr);
  if (bf16 < 0 || int8 < 0) return 1;
  // How many linear layers: count them as the backend prepares them.
  int64_t layers = 0;
  options.int8_linear_precision = [&layers](int64_t n) {
    layers = std::max(layers, n + 1);
    return Precision::kInt8;
  };
  if (worst_error(model_dir, *input, options, &base, nullptr) < 0) return 1;
  std::printf("images %zu, worst image's features relative L2 error against float32:\n", images.size());
  std::printf("all bf16 %.3e, all int8 %.3e\n", bf16, int8);
  std::printf("layer  only it int8  contribution\n");
  double sum = bf16 * bf16;
  for (int64_t layer = 0; layer < layers; ++layer) {
    options.int8_linear_precision = [layer](int64_t n) { return n == layer ? Precision::kInt8 : Precision::kBF16; };
    const double e = worst_error(model_dir, *input, options, &base, nullptr);
    if (e < 0) return 1;
    const double c = std::sqrt(std::max(0.0, e * e - bf16 * bf16));
    sum += c * c;
    std::printf("%5lld  %.3e     %.2e\n", static_cast<long long>(layer), e, c);
  }
  std::printf("quadrature sum of bf16 and every contribution: %.3e (all int8 measured %.3e)\n", std::sqrt(sum), int8);
  return 0;
}
