// Each linear layer's share of the int8 error: int8_sensitivity MODEL IMAGE... [--threads N]
//                                               [--int8-layers N,N,...]
//
// Runs the images (one batch) through the float32 CPU backend (the baseline: within 1e-6 of the reference
// backend), through bf16, through int8, and once per linear layer with only that layer in int8 and every
// other one in bf16 (BackendOptions::int8_linear_precision). Per run: the features' relative L2 error of the
// worst image. A layer's contribution is sqrt(e_layer^2 - e_bf16^2): errors of independent layers add in
// quadrature (the sum over all layers is printed beside the all-int8 figure to check it). One line per layer,
// in loading order (patch embedding, then per block qkv, proj, fc1, fc2 or the SwiGLU's three).
//
// --int8-layers: instead, one mix (those layers int8, the rest bf16): its worst error per image (features
// and pooled, relative L2 and cosine) and its batch latency against all-bf16 and all-int8, timed in turns
// (5 rounds of 10 forwards each, medians).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "dinov3/metrics.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"

namespace {

using dinov3::Precision;

dinov3::Result<std::unique_ptr<dinov3::Model>> load_cpu(const std::string& model_dir,
                                                        const dinov3::BackendOptions& options) {
  dinov3::LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options = options;
  return dinov3::Model::load(model_dir, lo);
}

dinov3::Result<dinov3::ForwardOutput> forward_with(const std::string& model_dir, const dinov3::Tensor& input,
                                                   const dinov3::BackendOptions& options) {
  DINOV3_ASSIGN_OR_RETURN(auto model, load_cpu(model_dir, options));
  return model->forward(input);
}

struct Worst {
  double rel_error = 0, cosine = 1;
};

// The worst image of `got` against `base` (both [B, ...]).
Worst worst_image(const dinov3::Tensor& got, const dinov3::Tensor& base) {
  const size_t per_image = base.data.size() / static_cast<size_t>(base.shape[0]);
  Worst w;
  for (int64_t b = 0; b < base.shape[0]; ++b) {
    const size_t at = static_cast<size_t>(b) * per_image;
    const auto g = dinov3::compare_outputs(got.data.data() + at, base.data.data() + at, per_image);
    w.rel_error = std::max(w.rel_error, g.rel_error);
    w.cosine = std::min(w.cosine, g.cosine);
  }
  return w;
}

// Worst image's features relative L2 error against `base`, or -1 on failure (printed).
double worst_error(const std::string& model_dir, const dinov3::Tensor& input, const dinov3::BackendOptions& options,
                   const dinov3::Tensor* base, dinov3::Tensor* features) {
  auto out = forward_with(model_dir, input, options);
  if (!out.ok()) {
    std::fprintf(stderr, "%s\n", out.status().message().c_str());
    return -1;
  }
  if (features != nullptr) *features = out->features;
  return base == nullptr ? 0 : worst_image(out->features, *base).rel_error;
}

// Median forward time (ms) of each configuration, measured in turns.
std::vector<double> time_in_turns(const std::string& model_dir, const dinov3::Tensor& input,
                                  const std::vector<dinov3::BackendOptions>& configs) {
  std::vector<std::unique_ptr<dinov3::Model>> models;
  for (const auto& options : configs) {
    auto m = load_cpu(model_dir, options);
    if (!m.ok()) return {};
    models.push_back(std::move(m).value());
  }
  std::vector<std::vector<double>> ms(configs.size());
  for (int round = 0; round < 5; ++round) {
    for (size_t c = 0; c < models.size(); ++c) {
      for (int run = -2; run < 10; ++run) {
        const auto t0 = std::chrono::steady_clock::now();
        if (!models[c]->forward(input).ok()) return {};
        if (run >= 0) ms[c].push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
    }
  }
  std::vector<double> medians;
  for (auto& v : ms) {
    std::sort(v.begin(), v.end());
    medians.push_back(v[v.size() / 2]);
  }
  return medians;
}

int run_mix(const std::string& model_dir, const dinov3::Tensor& input, dinov3::BackendOptions options,
            const std::set<int64_t>& int8_layers) {
  auto base = forward_with(model_dir, input, options);
  dinov3::BackendOptions mix = options, bf16 = options, int8 = options;
  bf16.precision = Precision::kBF16;
  int8.precision = mix.precision = Precision::kInt8;
  mix.int8_linear_precision = [int8_layers](int64_t n) { return int8_layers.count(n) ? Precision::kInt8 : Precision::kBF16; };
  auto got = forward_with(model_dir, input, mix);
  if (!base.ok() || !got.ok()) {
    std::fprintf(stderr, "%s\n", (base.ok() ? got.status() : base.status()).message().c_str());
    return 1;
  }
  for (const auto& [name, a, b] : {std::tuple<const char*, const dinov3::Tensor*, const dinov3::Tensor*>{
                                       "features", &got->features, &base->features},
                                   {"pooled", &got->pooled, &base->pooled}}) {
    const Worst w = worst_image(*a, *b);
    std::printf("mix of %zu int8 layers, %s: worst image rel L2 %.3e, cosine %.6f\n", int8_layers.size(), name,
                w.rel_error, w.cosine);
  }
  const auto ms = time_in_turns(model_dir, input, {bf16, mix, int8});
  if (ms.size() != 3) return 1;
  std::printf("batch latency, medians of 5 rounds x 10: bf16 %.2f ms, mix %.2f ms (%.2fx bf16), int8 %.2f ms (%.2fx bf16)\n",
              ms[0], ms[1], ms[1] / ms[0], ms[2], ms[2] / ms[0]);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> images;
  int threads = 0;
  std::set<int64_t> mix;
  bool has_mix = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
    } else if (std::strcmp(argv[i], "--int8-layers") == 0 && i + 1 < argc) {
      has_mix = true;
      std::stringstream list(argv[++i]);
      for (std::string item; std::getline(list, item, ',');) mix.insert(std::atoll(item.c_str()));
    } else {
      images.push_back(argv[i]);
    }
  }
  if (argc < 3 || images.empty()) {
    std::fprintf(stderr, "usage: %s MODEL IMAGE... [--threads N] [--int8-layers N,N,...]\n", argv[0]);
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
  if (has_mix) return run_mix(model_dir, *input, options, mix);
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
