// int8 with per-layer precision: which linear layers of a model run int8 and which stay bf16, chosen by
// measuring each layer's share of the error on calibration images (the least sensitive layers per unit of
// arithmetic go int8 until the error budget is spent).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dinov3/backend.h"
#include "dinov3/model.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

struct Int8PlanLayer {
  std::string name;                   // LinearLayer::name
  Precision precision = Precision::kInt8;  // kInt8 or kBF16
  double contribution = 0;            // measured: sqrt(e^2 - e_bf16^2) with only this layer (and its tied one) int8
  // The layer's int8 weights as calibration rounded them (GPTQ against the calibration images' inputs to
  // the layer), used while the layer runs int8: w[n][k] ~ scale[n] * q[n][k], q row-major [out, in] in
  // [-127, 127]. Empty: rounded to nearest per output channel at load.
  std::vector<int8_t> q;
  std::vector<float> scale;
};

struct Int8Plan {
  std::string architecture;  // of the model it was measured on (information; layers are what is checked)
  // Model::linear_weights_digest() of the model it was measured on; Model::load refuses a plan whose digest
  // differs from the model's (empty: not checked, as in plans written before it was recorded).
  std::string model_digest;
  std::vector<Int8PlanLayer> layers;  // every linear layer, in linear_layers() order
  // How it was chosen: errors are the worst image's relative L2 against float32, the larger of features and
  // pooled.
  double budget = 0;            // the error the plan was allowed
  int64_t calibration_images = 0;
  std::string rounding = "nearest";  // how its int8 layers' weights were rounded: "gptq" or "nearest"
  double bf16_error = 0;        // every layer bf16
  double int8_error = 0;        // every layer int8 (its weights rounded as the plan rounds them)
  double predicted_error = 0;   // sqrt(bf16_error^2 + sum of the int8 layers' contributions^2)
  double measured_error = 0;    // the plan itself
  double measured_cosine = 1;   // its worst cosine (features and pooled)
  double int8_flop_share = 0;   // share of the linear layers' multiply-adds that run int8
  // The file beside the plan that holds the layers' rounded weights (Int8PlanLayer::q, scale), by name;
  // empty when no layer has any. read_int8_plan loads it, write_int8_plan writes it.
  std::string weights_file;

  int64_t int8_layers() const;
};

struct CalibrationOptions {
  std::string backend = "cpu";
  int threads = 0;
  double budget = 8e-3;  // below the port's rule (1e-2) with room for images not in the calibration set
  // How int8 layers' weights are rounded: GPTQ against the calibration images' inputs to each layer (the
  // plan then carries the rounded weights: Int8PlanLayer::q), or false: to nearest at load.
  bool gptq = true;
  // Called after each measurement: (done, total).
  std::function<void(int64_t, int64_t)> progress;
};

// Measures every linear layer's int8 error on `images` ([B, C, H, W], preprocessed for the model) and
// chooses the plan: one forward in float32, bf16 and int8, one per layer (or tied pair) with only it int8,
// then the plan's own forward; layers leave the plan, most sensitive first, until it measures within budget.
Result<Int8Plan> calibrate_int8(const std::string& model_path, const Tensor& images,
                                const CalibrationOptions& options = {});

// JSON files ("format": "dinov3-int8-plan", version 1). Rounded weights go to a safetensors file beside
// the plan (PLAN minus ".json", plus ".weights.safetensors"; the JSON names it under "weights"): per layer
// "<name>.q" (I8 [out, in]) and "<name>.scale" (F32 [out]). write refuses existing files unless told to
// overwrite, and writes both or neither. parse reads the JSON alone (weights_file set, no weights).
Result<Int8Plan> read_int8_plan(const std::string& path);
Result<Int8Plan> parse_int8_plan(const std::string& json_text);
Status write_int8_plan(const Int8Plan& plan, const std::string& path, bool overwrite = false);
std::string int8_plan_to_json(const Int8Plan& plan);
// Where write_int8_plan puts the rounded weights of a plan written to `plan_path`.
std::string int8_plan_weights_path(const std::string& plan_path);
// Every file write_int8_plan may write for `plan_path` (the plan, its weights): what a caller checks before
// calibrating for a destination it must not overwrite.
std::vector<std::string> int8_plan_files(const std::string& plan_path);
// Whether a plan that may carry rounded weights (with_weights: GPTQ rounding; calibrate_int8 still rounds to
// nearest, and writes no weights, on one image or when no layer goes int8) can be written to `plan_path`: its
// JSON names the weights file, and JSON holds only UTF-8 text, so a file name that is not is an error
// (kInvalidArgument). What a caller checks before calibrating, as write_int8_plan would refuse it after.
Status check_int8_plan_path(const std::string& plan_path, bool with_weights);
// Sets plan.weights_file as write_int8_plan names it for `plan_path`: that file's name when a layer has
// rounded weights, else empty.
void name_int8_plan_weights(Int8Plan& plan, const std::string& plan_path);

// Whether the plan fits the model: exactly `config`'s linear layers by name (linear_layers order), each int8
// or bf16, tied layers in one precision. Model::load checks a LoadOptions::int8_plan with it.
Status check_int8_plan(const Int8Plan& plan, const ModelConfig& config);

}  // namespace dinov3
