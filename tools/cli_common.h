// Pieces every dinov3 command shares: finding and loading the model, reading inputs, formatting.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/collection.h"
#include "dinov3/image.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3::cli {

struct ModelOptions {
  std::string model;  // folder or hub id; empty: the default hub id, else the bundled test model
  std::string backend = default_backend_name();
  int threads = 0;
  std::string precision = "fp32";
  std::string int8_plan;  // with precision int8: a plan file from `dinov3 calibrate` (empty: every layer int8)
};

void add_model_options(CLI::App& cmd, ModelOptions* opts, bool with_backend = true);

// The most forwards a timing flag (--runs, --iterations, --warmup) may ask for: a million forwards of the
// smallest model is hours; the bound keeps warm-up plus timed runs far from int overflow.
inline constexpr int kMaxRuns = 1000000;

struct LoadedModel {
  std::unique_ptr<Model> model;
  bool random_weights = false;  // the bundled test checkpoint: its numbers mean nothing
  std::shared_ptr<const Int8Plan> int8_plan;  // the plan it was loaded with, if any (dinov3/int8_plan.h)
  std::string int8_plan_file;                 // and the file it came from
};
// Resolves --model (folder, hub id, or the default with the bundled fallback) and loads it on `backend`.
// profile: when set, every backend op is timed into it (LoadOptions::op_profile).
Result<LoadedModel> load_model(const ModelOptions& opts, const std::string& backend,
                               std::shared_ptr<OpProfile> profile = nullptr);
// The precision as reports print it: "int8 (plan FILE: N of M linear layers int8, the rest bf16)" with a plan.
std::string precision_label(const LoadedModel& m);
// Prints the resolved model and, for random weights, a plain warning.
void describe_model_source(const LoadedModel& m);

// Flags that override the preprocessing defaults of the model's layout (empty / 0: the model's).
struct PreprocessOverrides {
  std::string interpolation;  // bicubic | bilinear
  std::string crop_mode;      // center | squash | border
  std::optional<double> crop_pct;
  std::vector<float> mean, std;
  bool given() const {
    return !interpolation.empty() || !crop_mode.empty() || crop_pct.has_value() || !mean.empty() || !std.empty();
  }
};
void add_preprocess_options(CLI::App& cmd, PreprocessOverrides* opts);
// --exif-transpose and --max-pixels (positive; `verb`: what happens to a larger image, "refuse" or "skip").
void add_decode_options(CLI::App& cmd, bool* exif_transpose, int64_t* max_pixels, const char* verb);
// The model's configuration with its preprocessing (its layout's defaults) overridden by the flags.
Result<ModelConfig> with_preprocess_overrides(const ModelConfig& config, const PreprocessOverrides& overrides);
nlohmann::ordered_json preprocess_json(const PreprocessConfig& config);

// Inputs given as images (preprocessed as the model's layout says) or a preprocessed tensor.
// --size S / --long-side L: the resolution of the model input (dinov3/pipeline.h, InputSize).
void add_size_options(CLI::App& cmd, InputSize* size);

// Inputs given as images (preprocessed as the model's config says, at --size / --long-side when given)
// or a preprocessed tensor.
struct InputOptions {
  PreprocessOverrides preprocess;
  std::vector<std::string> images;
  std::string input_tensor;  // FILE.safetensors[:NAME]
  bool exif_transpose = false;
  int64_t max_pixels = DecodeOptions{}.max_pixels;
  InputSize size;
};
void add_input_options(CLI::App& cmd, InputOptions* opts);
// The bundled sample photographs (for commands that run on something when given nothing).
std::vector<std::string> bundled_sample_images();
// The files a command reads for `opts` and `model`: its images or its input tensor's file and the model's
// files (model_files, dinov3/hub.h).
std::vector<std::string> input_files(const InputOptions& opts, const Model& model);
// (check_not_written_over, dinov3/files.h, keeps outputs off them.)

// [B, C, H, W] from the images or the tensor; `labels` gets one name per batch row.
Result<Tensor> load_inputs(const InputOptions& opts, const Model& model, std::vector<std::string>* labels);

// "FILE.safetensors[:NAME]", NAME defaulting to "input".
Result<Tensor> load_input_tensor(const std::string& spec);
Result<PoolMode> parse_pool(const std::string& name);

std::string format_values(const float* v, size_t n);
std::string format_ms(double ms);
// "[B, T, D]" plus "(1 cls + R registers + P patches)".
std::string token_breakdown(const ModelConfig& c, int64_t height, int64_t width);

}  // namespace dinov3::cli
