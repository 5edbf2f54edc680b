// Model::load on a whole folder, in any of the layouts it recognises. The input is config.json's text, a
// NUL, the weights file, and optionally a NUL and preprocessor_config.json's text. The weights are
// pytorch_model.bin when they start like a zip and model.safetensors otherwise; with an empty config part
// the folder holds only the weights, as checkpoint.pth (Meta's layout). So the config parsers, the layout
// recognition and the config/tensor cross-checks are fuzzed together. A model that loads runs one
// forward on an image of one patch, on the reference backend, and must give outputs of the right shape.
#include <memory>

#include "dinov3/model.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split(data, size, 3);
  for (const char* name : {"config.json", "preprocessor_config.json", "model.safetensors", "pytorch_model.bin",
                           "checkpoint.pth"})
    fuzz::remove_file(name);
  const bool zip = parts[1].substr(0, 4) == std::string_view("PK\x03\x04", 4);
  if (parts[0].empty()) {
    fuzz::write_file("checkpoint.pth", parts[1]);
  } else {
    fuzz::write_file("config.json", parts[0]);
    fuzz::write_file(zip ? "pytorch_model.bin" : "model.safetensors", parts[1]);
    if (!parts[2].empty()) fuzz::write_file("preprocessor_config.json", parts[2]);
  }

  LoadOptions options;
  options.backend = "reference";
  Result<std::unique_ptr<Model>> model = Model::load(fuzz::scratch_dir(), options);
  if (!model.ok()) return 0;
  const ModelConfig& c = (*model)->config();
  if (c.in_chans * c.patch_size * c.patch_size > (1 << 16)) return 0;  // keeps each run short
  Tensor input({1, c.in_chans, c.patch_size, c.patch_size});
  for (size_t i = 0; i < input.data.size(); ++i) input.data[i] = static_cast<float>(i % 7) * 0.25f - 0.75f;
  Result<ForwardOutput> out = (*model)->forward(input);
  fuzz::expect(out.ok(), "a model that loads cannot run one patch");
  const int64_t tokens = c.prefix_tokens() + 1;
  fuzz::expect(out->features.shape == Shape({1, tokens, c.embed_dim}), "features have the wrong shape");
  fuzz::expect(out->pooled.shape == Shape({1, c.embed_dim}), "pooled output has the wrong shape");
  return 0;
}
