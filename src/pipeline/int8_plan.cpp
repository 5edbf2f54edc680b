// Per-layer int8 plans: measuring each linear layer's share of the int8 error, choosing the plan, and its
// JSON file.
#include "dinov3/int8_plan.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "dinov3/files.h"
#include "dinov3/metrics.h"
#include "dinov3/tensor_file.h"
#include "io/json_util.h"
#include "pipeline/weight_rounding.h"
#include "util/float_env.h"

namespace dinov3 {

namespace {

constexpr const char* kPlanFormat = "dinov3-int8-plan";
constexpr int kPlanVersion = 1;
constexpr const char* kWeightsFormat = "dinov3-int8-plan-weights";

// The worst image's agreement with the float32 outputs: the larger relative error and the smaller cosine
// of features and pooled.
struct Deviation {
  double error = 0, cosine = 1;
};

Deviation deviation(const ForwardOutput& got, const ForwardOutput& base) {
  Deviation d;
  for (const auto& [a, b] : {std::pair{&got.features, &base.features}, std::pair{&got.pooled, &base.pooled}}) {
    const size_t batch = b->shape.empty() ? 0 : static_cast<size_t>(b->shape[0]);
    if (batch == 0) continue;
    const Agreement w = compare_images(a->data.data(), b->data.data(), batch, b->data.size() / batch).worst;
    // NaN must not look small: the ordering and budget below need numbers.
    d.error = std::isnan(w.rel_error) ? INFINITY : std::max(d.error, w.rel_error);
    d.cosine = std::isnan(w.cosine) ? -INFINITY : std::min(d.cosine, w.cosine);
  }
  return d;
}

// Units take one precision together: a layer and the ones tied to it (SwiGLU's gate and up).
struct Unit {
  size_t first = 0, count = 0;
  double macs = 0;          // multiply-adds per token
  double contribution = 0;  // measured
};

std::vector<Unit> units_of(const std::vector<LinearLayer>& layers) {
  std::vector<Unit> units;
  for (size_t i = 0; i < layers.size();) {
    Unit u;
    u.first = i;
    do {
      u.macs += static_cast<double>(layers[i].out) * static_cast<double>(layers[i].in);
      ++u.count;
    } while (layers[i++].tied_to_next && i < layers.size());
    units.push_back(u);
  }
  return units;
}

// One forward of the images on a model loaded at `precision` (with `plan`, each layer at the plan's).
Result<ForwardOutput> run_with(const std::string& path, const Tensor& images, const CalibrationOptions& o,
                               Precision precision, const Int8Plan* plan) {
  LoadOptions lo;
  lo.backend = o.backend;
  lo.backend_options.threads = o.threads;
  lo.backend_options.precision = precision;
  if (plan != nullptr) lo.int8_plan = std::make_shared<const Int8Plan>(*plan);
  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::load(path, lo));
  return model->forward(images);
}

double quadrature(double a, double b) { return std::sqrt(a * a + b * b); }

// Images [begin, end) of a [B, C, H, W] batch.
Tensor batch_slice(const Tensor& images, int64_t begin, int64_t end) {
  const int64_t per = images.numel() / images.shape[0];
  Shape shape = images.shape;
  shape[0] = end - begin;
  return Tensor(shape, std::vector<float>(images.data.begin() + begin * per, images.data.begin() + end * per));
}

// The batch without images [begin, end).
Tensor batch_without(const Tensor& images, int64_t begin, int64_t end) {
  const int64_t per = images.numel() / images.shape[0];
  Shape shape = images.shape;
  shape[0] -= end - begin;
  std::vector<float> data(images.data.begin(), images.data.begin() + begin * per);
  data.insert(data.end(), images.data.begin() + end * per, images.data.end());
  return Tensor(shape, std::move(data));
}

// Cross-fitting: the weights rounded on all images but a part, measured on that part.
constexpr int64_t kMaxFolds = 4;
struct Fold {
  Tensor held_out, rounded_on;
  ForwardOutput base;  // held_out's float32 outputs
  std::vector<Int8Rounding> weights;
};

}  // namespace

int64_t Int8Plan::int8_layers() const {
  return std::count_if(layers.begin(), layers.end(), [](const Int8PlanLayer& l) { return l.precision == Precision::kInt8; });
}

Result<Int8Plan> calibrate_int8(const std::string& path, const Tensor& images, const CalibrationOptions& o) {
  const ScopedDefaultFloatEnv float_env;
  if (!(o.budget > 0) || !std::isfinite(o.budget)) {
    return make_error(ErrorCode::kInvalidArgument, "int8 calibration: the error budget must be a positive number");
  }
  if (images.shape.size() != 4 || images.shape[0] < 1) {
    return make_error(ErrorCode::kInvalidArgument, "int8 calibration: needs a batch of at least one image [B, C, H, W]");
  }
  // The float32 outputs, from the model whose config names the layers.
  LoadOptions f32;
  f32.backend = o.backend;
  f32.backend_options.threads = o.threads;
  f32.digest_linear_weights = true;  // the plan records which weights it was measured on
  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::load(path, f32));
  const std::string model_digest = model->linear_weights_digest();
  DINOV3_ASSIGN_OR_RETURN(const ForwardOutput base, model->forward(images));
  const ModelConfig config = model->config();
  const std::vector<LinearLayer> layers = linear_layers(config);
  std::vector<Unit> units = units_of(layers);

  // Rounding against data fits the images it saw: measured on them, a layer's error looks smaller than
  // on any other image. So every measurement is cross-fitted: the images are cut into up to kMaxFolds
  // parts, and each part is measured with the weights rounded on the other parts (the worst part counts);
  // the plan's own weights are then rounded on all of them.
  const bool gptq = o.gptq && images.shape[0] >= 2;
  std::vector<Fold> folds;
  if (gptq) {
    const int64_t count = images.shape[0], k = std::min<int64_t>(count, kMaxFolds);
    for (int64_t f = 0; f < k; ++f) {
      Fold fold;
      const int64_t begin = f * count / k, end = (f + 1) * count / k;
      fold.held_out = batch_slice(images, begin, end);
      fold.rounded_on = batch_without(images, begin, end);
      DINOV3_ASSIGN_OR_RETURN(fold.base, model->forward(fold.held_out));
      folds.push_back(std::move(fold));
    }
  }
  model.reset();
  const int64_t total = 3 + static_cast<int64_t>(units.size()) + (gptq ? static_cast<int64_t>(folds.size()) + 1 : 0);
  int64_t done = 0;
  auto step = [&] {
    if (o.progress) o.progress(++done, total);
  };

  // Every layer bf16 to start with; the trials below set units to int8 and back.
  Int8Plan plan;
  plan.architecture = config.architecture;
  plan.budget = o.budget;
  plan.calibration_images = images.shape[0];
  plan.rounding = gptq ? "gptq" : "nearest";
  for (const LinearLayer& l : layers) plan.layers.push_back({l.name, Precision::kBF16, 0.0, {}, {}});
  auto set_unit = [&plan](const Unit& u, Precision p) {
    for (size_t i = u.first; i < u.first + u.count; ++i) plan.layers[i].precision = p;
  };
  // The plan's current precisions measured: on all images with weights rounded to nearest, or each fold's
  // weights on its held-out images (the worst fold).
  auto measure = [&]() -> Result<Deviation> {
    if (folds.empty()) {
      DINOV3_ASSIGN_OR_RETURN(const ForwardOutput out, run_with(path, images, o, Precision::kInt8, &plan));
      return deviation(out, base);
    }
    Deviation worst;
    for (size_t f = 0; f < folds.size(); ++f) {
      Int8Plan p = plan;
      for (size_t i = 0; i < p.layers.size(); ++i) {
        if (p.layers[i].precision != Precision::kInt8) continue;
        p.layers[i].q = folds[f].weights[i].q;
        p.layers[i].scale = folds[f].weights[i].scale;
      }
      DINOV3_ASSIGN_OR_RETURN(const ForwardOutput out, run_with(path, folds[f].held_out, o, Precision::kInt8, &p));
      const Deviation d = deviation(out, folds[f].base);
      worst.error = std::max(worst.error, d.error);
      worst.cosine = std::min(worst.cosine, d.cosine);
    }
    return worst;
  };

  DINOV3_ASSIGN_OR_RETURN(const ForwardOutput bf16, run_with(path, images, o, Precision::kBF16, nullptr));
  const Deviation bf16_deviation = deviation(bf16, base);
  plan.bf16_error = bf16_deviation.error;
  step();
  if (!(plan.bf16_error < o.budget)) {
    return make_error(ErrorCode::kUnsupported, "int8 calibration: bf16 alone is off by " + std::to_string(plan.bf16_error) +
                                                   ", over the budget of " + std::to_string(o.budget));
  }
  for (Fold& f : folds) {
    DINOV3_ASSIGN_OR_RETURN(f.weights, round_linear_layers_gptq(path, f.rounded_on, o.backend, o.threads));
    step();
  }
  for (Int8PlanLayer& l : plan.layers) l.precision = Precision::kInt8;
  DINOV3_ASSIGN_OR_RETURN(const Deviation int8_deviation, measure());
  for (Int8PlanLayer& l : plan.layers) l.precision = Precision::kBF16;
  plan.int8_error = int8_deviation.error;
  step();

  // Each unit alone in int8, the rest bf16: its contribution, as errors of independent layers add in quadrature.
  for (Unit& u : units) {
    set_unit(u, Precision::kInt8);
    DINOV3_ASSIGN_OR_RETURN(const Deviation one, measure());
    set_unit(u, Precision::kBF16);
    const double e = one.error;
    u.contribution = std::sqrt(std::max(0.0, e * e - plan.bf16_error * plan.bf16_error));
    for (size_t i = u.first; i < u.first + u.count; ++i) plan.layers[i].contribution = u.contribution;
    step();
  }

  // Cheapest error per multiply-add saved first, while the predicted error stays within budget.
  std::vector<size_t> order(units.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return units[a].contribution * units[a].contribution * units[b].macs <
           units[b].contribution * units[b].contribution * units[a].macs;
  });
  std::vector<size_t> chosen;
  double predicted = plan.bf16_error;
  for (const size_t u : order) {
    const double next = quadrature(predicted, units[u].contribution);
    if (next > o.budget) continue;
    predicted = next;
    chosen.push_back(u);
    set_unit(units[u], Precision::kInt8);
  }

  // Measure the plan; while it is over budget, the most sensitive chosen unit goes back to bf16.
  Deviation measured = bf16_deviation;
  while (!chosen.empty()) {
    DINOV3_ASSIGN_OR_RETURN(measured, measure());
    if (measured.error <= o.budget) break;
    const auto worst = std::max_element(chosen.begin(), chosen.end(), [&](size_t a, size_t b) {
      return units[a].contribution < units[b].contribution;
    });
    set_unit(units[*worst], Precision::kBF16);
    chosen.erase(worst);
  }
  if (chosen.empty()) measured = bf16_deviation;  // the plan is all bf16
  step();

  // The plan's int8 layers, and only they, get weights rounded on every image: the bf16 layers are neither
  // recorded nor rounded.
  if (gptq && !chosen.empty()) {
    std::vector<bool> int8(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) int8[i] = plan.layers[i].precision == Precision::kInt8;
    DINOV3_ASSIGN_OR_RETURN(std::vector<Int8Rounding> rounded,
                            round_linear_layers_gptq(path, images, o.backend, o.threads, int8));
    for (size_t i = 0; i < layers.size(); ++i) {
      if (plan.layers[i].precision != Precision::kInt8) continue;
      plan.layers[i].q = std::move(rounded[i].q);
      plan.layers[i].scale = std::move(rounded[i].scale);
    }
  }
  if (gptq) step();

  double int8_macs = 0, all_macs = 0;
  plan.predicted_error = plan.bf16_error;
  for (const size_t u : chosen) {
    int8_macs += units[u].macs;
    plan.predicted_error = quadrature(plan.predicted_error, units[u].contribution);
  }
  for (const Unit& u : units) all_macs += u.macs;
  plan.measured_error = measured.error;
  plan.measured_cosine = measured.cosine;
  plan.int8_flop_share = all_macs > 0 ? int8_macs / all_macs : 0;
  plan.model_digest = model_digest;  // set last: the trial loads above need not compute it
  return plan;
}

namespace {

// What is wrong with a layer's rounded weights as values (empty: nothing): the grid is -127..127 and
// scales are finite and >= 0, whether the plan came from a file or was built in memory.
std::string rounded_values_problem(const Int8PlanLayer& l) {
  if (std::find(l.q.begin(), l.q.end(), int8_t{-128}) != l.q.end()) return l.name + ".q holds -128 (the grid is -127..127)";
  for (const float v : l.scale)
    if (!std::isfinite(v) || v < 0.0f) return l.name + ".scale holds " + std::to_string(v) + " (scales are finite, >= 0)";
  return {};
}

}  // namespace

Status check_int8_plan(const Int8Plan& plan, const ModelConfig& config) {
  const std::vector<LinearLayer> layers = linear_layers(config);
  if (plan.layers.size() != layers.size()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "int8 plan: made for a model with " + std::to_string(plan.layers.size()) + " linear layers" +
                          (plan.architecture.empty() ? "" : " (" + plan.architecture + ")") + "; this one has " +
                          std::to_string(layers.size()));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const Int8PlanLayer& l = plan.layers[i];
    if (l.name != layers[i].name) {
      return make_error(ErrorCode::kInvalidArgument, "int8 plan: layer " + std::to_string(i) + " is '" + l.name +
                                                         "', the model's is '" + layers[i].name + "'");
    }
    if (l.precision != Precision::kInt8 && l.precision != Precision::kBF16) {
      return make_error(ErrorCode::kInvalidArgument, "int8 plan: " + l.name + " must be int8 or bf16");
    }
    if (!l.q.empty() || !l.scale.empty()) {
      const LinearLayer& m = layers[i];
      if (l.scale.size() != static_cast<size_t>(m.out) ||
          l.q.size() != static_cast<size_t>(m.out * m.in)) {
        return make_error(ErrorCode::kInvalidArgument,
                          "int8 plan: " + l.name + "'s rounded weights need shape [" +
                              std::to_string(m.out) + ", " + std::to_string(m.in) + "] with " +
                              std::to_string(m.out) + " scales; the plan has " + std::to_string(l.q.size()) +
                              " values and " + std::to_string(l.scale.size()) + " scales");
      }
      if (const std::string why = rounded_values_problem(l); !why.empty()) {
        return make_error(ErrorCode::kInvalidArgument, "int8 plan: " + why);
      }
    }
    if (i > 0 && layers[i - 1].tied_to_next && plan.layers[i - 1].precision != l.precision) {
      return make_error(ErrorCode::kInvalidArgument, "int8 plan: " + layers[i - 1].name + " and " + l.name +
                                                         " run as one product and need one precision");
    }
  }
  return {};
}

namespace {

nlohmann::ordered_json plan_json(const Int8Plan& plan) {
  nlohmann::ordered_json layers = nlohmann::ordered_json::array();
  for (const Int8PlanLayer& l : plan.layers) {
    layers.push_back({{"name", l.name}, {"precision", precision_name(l.precision)}, {"contribution", l.contribution}});
  }
  nlohmann::ordered_json j = {
      {"format", kPlanFormat},
      {"version", kPlanVersion},
      {"architecture", plan.architecture},
      {"model_sha256", plan.model_digest},
      {"int8_layers", plan.int8_layers()},
      {"int8_flop_share", plan.int8_flop_share},
      {"calibration",
       {{"images", plan.calibration_images},
        {"rounding", plan.rounding},
        {"budget", plan.budget},
        {"bf16_error", plan.bf16_error},
        {"int8_error", plan.int8_error},
        {"predicted_error", plan.predicted_error},
        {"measured_error", plan.measured_error},
        {"measured_cosine", plan.measured_cosine}}},
      {"layers", layers}};
  if (!plan.weights_file.empty()) j["weights"] = plan.weights_file;
  return j;
}

}  // namespace

std::string int8_plan_to_json(const Int8Plan& plan) {
  // A description: bytes that are not UTF-8 become U+FFFD (write_int8_plan refuses such a plan instead).
  return plan_json(plan).dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

Result<Int8Plan> parse_int8_plan(const std::string& text) {
  auto bad = [](const std::string& why) { return make_error(ErrorCode::kFormatError, "int8 plan: " + why); };
  Result<nlohmann::json> parsed = io::parse_json(text);
  if (!parsed.ok()) return bad(parsed.status().message());
  const nlohmann::json& j = *parsed;
  if (!j.is_object() || !j.contains("format") || j["format"] != kPlanFormat) return bad("not a dinov3-int8-plan file");
  if (!j.contains("version") || j["version"] != kPlanVersion) return bad("version must be " + std::to_string(kPlanVersion));
  if (!j.contains("layers") || !j["layers"].is_array() || j["layers"].empty()) return bad("needs a non-empty \"layers\" list");
  Int8Plan plan;
  if (j.contains("architecture") && j["architecture"].is_string()) plan.architecture = j["architecture"].get<std::string>();
  if (j.contains("model_sha256")) {
    const auto& d = j["model_sha256"];
    const bool hex64 = d.is_string() && d.get<std::string>().size() == 64 &&
                       d.get<std::string>().find_first_not_of("0123456789abcdef") == std::string::npos;
    if (!hex64 && !(d.is_string() && d.get<std::string>().empty()))
      return bad("\"model_sha256\" must be 64 lowercase hex digits");
    plan.model_digest = d.get<std::string>();
  }
  for (const auto& l : j["layers"]) {
    if (!l.is_object() || !l.contains("name") || !l["name"].is_string() || !l.contains("precision") ||
        !l["precision"].is_string()) {
      return bad("each layer needs a \"name\" and a \"precision\" string");
    }
    Int8PlanLayer layer;
    layer.name = l["name"].get<std::string>();
    if (!precision_from_name(l["precision"].get<std::string>(), &layer.precision) ||
        (layer.precision != Precision::kInt8 && layer.precision != Precision::kBF16)) {
      return bad(layer.name + ": precision must be \"int8\" or \"bf16\"");
    }
    if (l.contains("contribution") && l["contribution"].is_number()) layer.contribution = l["contribution"].get<double>();
    plan.layers.push_back(std::move(layer));
  }
  if (j.contains("calibration") && j["calibration"].is_object()) {
    const auto& c = j["calibration"];
    auto number = [&c](const char* key, double* out) {
      if (c.contains(key) && c[key].is_number()) *out = c[key].get<double>();
    };
    number("budget", &plan.budget);
    number("bf16_error", &plan.bf16_error);
    number("int8_error", &plan.int8_error);
    number("predicted_error", &plan.predicted_error);
    number("measured_error", &plan.measured_error);
    number("measured_cosine", &plan.measured_cosine);
    if (c.contains("images") && c["images"].is_number_integer()) plan.calibration_images = c["images"].get<int64_t>();
    if (c.contains("rounding") && c["rounding"].is_string()) plan.rounding = c["rounding"].get<std::string>();
  }
  if (j.contains("int8_flop_share") && j["int8_flop_share"].is_number()) plan.int8_flop_share = j["int8_flop_share"].get<double>();
  if (j.contains("weights")) {
    if (!j["weights"].is_string()) return bad("\"weights\" must be a file name");
    plan.weights_file = j["weights"].get<std::string>();
    // A file beside the plan, nothing else.
    if (plan.weights_file.empty() || plan.weights_file == "." || plan.weights_file == ".." ||
        plan.weights_file.find_first_of(std::string("/\\\0", 3)) != std::string::npos) {
      return bad("\"weights\" must name a file in the plan's folder, not '" + plan.weights_file + "'");
    }
  }
  return plan;
}

std::string int8_plan_weights_path(const std::string& plan_path) {
  std::string stem = plan_path;
  const std::string json = ".json";
  const size_t slash = stem.find_last_of('/');
  const size_t name_start = slash == std::string::npos ? 0 : slash + 1;
  if (stem.size() > name_start + json.size() && stem.compare(stem.size() - json.size(), json.size(), json) == 0) {
    stem.resize(stem.size() - json.size());
  }
  return stem + ".weights.safetensors";
}

std::vector<std::string> int8_plan_files(const std::string& plan_path) {
  return {plan_path, int8_plan_weights_path(plan_path)};
}

namespace {

// The name the plan's JSON gives its weights file: int8_plan_weights_path's file name.
std::string weights_file_name(const std::string& plan_path) {
  const std::string path = int8_plan_weights_path(plan_path);
  return path.substr(path.find_last_of('/') + 1);
}

}  // namespace

Status check_int8_plan_path(const std::string& plan_path, bool with_weights) {
  if (!with_weights) return {};
  // The same rule write_int8_plan applies to the whole JSON.
  return io::dump_json(nlohmann::ordered_json(weights_file_name(plan_path)),
                       plan_path + ": the int8 plan (which names its weights file)")
      .status();
}

void name_int8_plan_weights(Int8Plan& plan, const std::string& plan_path) {
  const bool rounded =
      std::any_of(plan.layers.begin(), plan.layers.end(), [](const Int8PlanLayer& l) { return !l.q.empty(); });
  plan.weights_file = rounded ? weights_file_name(plan_path) : std::string();
}

namespace {

// Loads the rounded weights `plan.weights_file` (beside plan_path) into plan's layers.
Status read_plan_weights(const std::string& plan_path, Int8Plan& plan) {
  const size_t slash = plan_path.find_last_of('/');
  const std::string path = (slash == std::string::npos ? std::string() : plan_path.substr(0, slash + 1)) + plan.weights_file;
  DINOV3_ASSIGN_OR_RETURN(const TensorArchive archive, open_safetensors(path));
  auto bad = [&path](const std::string& why) { return make_error(ErrorCode::kFormatError, path + ": " + why); };
  const auto format = archive.metadata().find("format");
  if (format == archive.metadata().end() || format->second != kWeightsFormat) {
    return bad(std::string("not a file of int8 plan weights (metadata format must be ") + kWeightsFormat + ")");
  }
  for (Int8PlanLayer& l : plan.layers) {
    const RawTensor* q = archive.find(l.name + ".q");
    const RawTensor* scale = archive.find(l.name + ".scale");
    if (q == nullptr && scale == nullptr) continue;  // rounded to nearest at load
    if (q == nullptr || scale == nullptr) return bad(l.name + ": needs both '.q' and '.scale'");
    if (q->dtype != DType::kI8 || q->shape.size() != 2 || !q->contiguous()) return bad(l.name + ".q must be I8 [out, in]");
    if (scale->dtype != DType::kF32 || scale->shape.size() != 1 || !scale->contiguous() ||
        scale->shape[0] != q->shape[0] || q->shape[0] <= 0 || q->shape[1] <= 0) {
      return bad(l.name + ".scale must be F32 [out] for .q " + shape_to_string(q->shape));
    }
    l.q.resize(static_cast<size_t>(q->numel()));
    std::memcpy(l.q.data(), q->data, l.q.size());
    l.scale.resize(static_cast<size_t>(scale->numel()));
    std::memcpy(l.scale.data(), scale->data, l.scale.size() * sizeof(float));
    if (const std::string why = rounded_values_problem(l); !why.empty()) return bad(why);
  }
  return {};
}

}  // namespace

Result<Int8Plan> read_int8_plan(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
  Result<Int8Plan> plan = parse_int8_plan(text);
  if (!plan.ok()) return make_error(plan.status().code(), path + ": " + plan.status().message());
  if (!plan->weights_file.empty()) DINOV3_RETURN_IF_ERROR(read_plan_weights(path, *plan));
  return plan;
}

Status write_int8_plan(const Int8Plan& plan, const std::string& path, bool overwrite) {
  std::vector<TensorBytes> tensors;
  for (const Int8PlanLayer& l : plan.layers) {
    if (l.q.empty() && l.scale.empty()) continue;
    if (l.scale.empty() || l.q.size() % l.scale.size() != 0) {
      return make_error(ErrorCode::kInvalidArgument, "int8 plan: " + l.name + " has " + std::to_string(l.q.size()) +
                                                         " rounded weights for " + std::to_string(l.scale.size()) + " scales");
    }
    const auto out = static_cast<int64_t>(l.scale.size()), in = static_cast<int64_t>(l.q.size() / l.scale.size());
    tensors.push_back({l.name + ".q", DType::kI8, {out, in}, l.q.data()});
    tensors.push_back({l.name + ".scale", DType::kF32, {out}, l.scale.data()});
  }
  Int8Plan named = plan;
  name_int8_plan_weights(named, path);
  DINOV3_ASSIGN_OR_RETURN(std::string json, io::dump_json(plan_json(named), path + ": the int8 plan", 2));
  json += "\n";
  if (tensors.empty()) return write_bytes_atomic(path, overwrite, json);
  const std::string weights_path = int8_plan_weights_path(path);
  return write_files_together(
      {{path, [&json](const WriteFn& write) { return write(json.data(), json.size()); }},
       {weights_path,
        [&tensors](const WriteFn& write) { return write_safetensors(write, tensors, {{"format", kWeightsFormat}}); }}},
      overwrite);
}

}  // namespace dinov3
