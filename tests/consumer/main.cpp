// A program outside the tree that uses the installed library: loads a model, runs the input of an
// expected.safetensors fixture and checks the features against it (relative L2 error below 1e-5).
#include <cmath>
#include <cstdio>
#include <dinov3/model.h>
#include <dinov3/tensor_file.h>
#include <dinov3/version.h>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR EXPECTED.safetensors\n", argv[0]);
    return 2;
  }
  auto model = dinov3::Model::load(argv[1]);
  if (!model.ok()) {
    std::fprintf(stderr, "load: %s\n", model.status().message().c_str());
    return 1;
  }
  auto expected = dinov3::open_safetensors(argv[2]);
  if (!expected.ok()) {
    std::fprintf(stderr, "expected: %s\n", expected.status().message().c_str());
    return 1;
  }
  auto input = expected->load_f32("input");
  auto want = expected->load_f32("features");
  if (!input.ok() || !want.ok()) {
    std::fprintf(stderr, "expected: no input or features tensor\n");
    return 1;
  }
  auto out = (*model)->forward(*input);
  if (!out.ok()) {
    std::fprintf(stderr, "forward: %s\n", out.status().message().c_str());
    return 1;
  }
  const dinov3::Tensor& got = out->features;
  if (got.shape != want->shape) {
    std::fprintf(stderr, "features shape %s, expected %s\n", dinov3::shape_to_string(got.shape).c_str(),
                 dinov3::shape_to_string(want->shape).c_str());
    return 1;
  }
  double err = 0, ref = 0;
  for (size_t i = 0; i < got.data.size(); ++i) {
    const double d = static_cast<double>(got.data[i]) - want->data[i];
    err += d * d;
    ref += static_cast<double>(want->data[i]) * want->data[i];
  }
  const double rel = std::sqrt(err / ref);
  std::printf("dinov3 %s: features %s, relative L2 error %.3g\n", dinov3::version_string(),
              dinov3::shape_to_string(got.shape).c_str(), rel);
  return rel < 1e-5 ? 0 : 1;
}
