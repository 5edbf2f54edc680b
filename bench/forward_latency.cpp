// Batch-1 forward latency through the C++ API, the baseline bench/python_overhead.py compares the Python
// binding against: forward_latency MODEL_DIR RUNS [THREADS [SIZE]]. Prints one line per timed forward (ms),
// after two untimed warm-up runs, on a zero input of the model's input size (or SIZE x SIZE).
#include <chrono>
#include <cstdio>
#include <cstdlib>

#include "dinov3/model.h"
#include "dinov3/pipeline.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR RUNS [THREADS [SIZE]]\n", argv[0]);
    return 2;
  }
  dinov3::LoadOptions lo;
  lo.backend_options.threads = argc > 3 ? std::atoi(argv[3]) : 0;
  auto model = dinov3::Model::load(argv[1], lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().message().c_str());
    return 1;
  }
  auto pc = dinov3::preprocess_config_for((*model)->config());
  if (!pc.ok()) {
    std::fprintf(stderr, "%s\n", pc.status().message().c_str());
    return 1;
  }
  const int size = argc > 4 ? std::atoi(argv[4]) : 0;
  const dinov3::Tensor input({1, 3, size > 0 ? size : pc->height, size > 0 ? size : pc->width});
  const int runs = std::atoi(argv[2]);
  for (int i = -2; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = (*model)->forward(input);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!out.ok()) {
      std::fprintf(stderr, "%s\n", out.status().message().c_str());
      return 1;
    }
    if (i >= 0) std::printf("%.4f\n", ms);
  }
  return 0;
}
