// Per-layer int8 plans: the model's list of linear layers is what the backend is given, in that order;
// plans are written, read and checked against the model; a plan runs exactly the precisions it names; and
// calibration measures what it reports and keeps its budget.
#include <gtest/gtest.h>

#include <functional>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"
#include "dinov3/int8_plan.h"
#include "dinov3/metrics.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "dinov3/tensor_file.h"
#include "pipeline/weight_rounding.h"
#include "backend/forwarding_backend.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

const std::string kTiny = test::fixture("models/tiny");

// Records the shape of every linear weight the model prepares.
class ShapeRecorder final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* b, int64_t out, int64_t in) override {
    shapes.emplace_back(out, in);
    return ForwardingBackend::prepare_linear(w, b, out, in);
  }
  std::vector<std::pair<int64_t, int64_t>> shapes;
};

std::unique_ptr<Model> load(const std::string& path, Precision precision, std::shared_ptr<const Int8Plan> plan = nullptr) {
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.precision = precision;
  lo.int8_plan = std::move(plan);
  Result<std::unique_ptr<Model>> m = Model::load(path, lo);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? std::move(m).value() : nullptr;
}

Tensor photos(const Model& model) {
  Result<PreprocessConfig> pc = preprocess_config_for(model.config());
  EXPECT_TRUE(pc.ok());
  Result<Tensor> t = load_image_batch({test::fixture("images/rocket.jpg"), test::fixture("images/chelsea.png")}, *pc);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return t.ok() ? *t : Tensor{};
}

// A plan over `config`'s layers: int8 where `int8` says so.
Int8Plan plan_for(const ModelConfig& config, const std::function<bool(size_t)>& int8) {
  Int8Plan plan;
  plan.architecture = config.architecture;
  const std::vector<LinearLayer> layers = linear_layers(config);
  for (size_t i = 0; i < layers.size(); ++i) {
    plan.layers.push_back(
        {layers[i].name, int8(i) ? Precision::kInt8 : Precision::kBF16, 1e-3 * static_cast<double>(i), {}, {}});
  }
  return plan;
}

// The worst image's relative error of features and pooled against `base`, as calibration measures it.
double worst_error(const ForwardOutput& got, const ForwardOutput& base) {
  double worst = 0;
  for (const auto& [a, b] : {std::pair{&got.features, &base.features}, std::pair{&got.pooled, &base.pooled}}) {
    const size_t n = b->data.size() / static_cast<size_t>(b->shape[0]);
    for (int64_t i = 0; i < b->shape[0]; ++i) {
      worst = std::max(worst, compare_outputs(a->ptr() + i * n, b->ptr() + i * n, n).rel_error);
    }
  }
  return worst;
}

// Counts calibration's progress calls, each one step further than the last.
struct ProgressCount {
  int64_t calls = 0, total = 0;
  void attach(CalibrationOptions& o) {
    o.progress = [this](int64_t done, int64_t of) {
      EXPECT_EQ(done, ++calls);
      total = of;
    };
  }
};

DINOV3_SUITE_LABELS(LinearLayers, "unit");

// Every layout and MLP kind: the names, the order and the shapes of what the backend is asked to prepare.
TEST(LinearLayers, AreWhatTheBackendPrepares) {
  for (const char* name : {"tiny", "tiny_meta", "tiny_hf", "tiny_swiglu_qkvb", "tiny_swiglu_qkvb_hf"}) {
    auto reference = create_backend("reference", {});
    ASSERT_TRUE(reference.ok());
    auto recorder = std::make_unique<ShapeRecorder>(std::move(reference).value());
    ShapeRecorder* seen = recorder.get();
    Result<std::unique_ptr<Model>> m = Model::load(test::fixture(std::string("models/") + name), std::move(recorder));
    ASSERT_TRUE(m.ok()) << name << ": " << m.status().message();
    const ModelConfig& c = (*m)->config();
    const std::vector<LinearLayer> layers = linear_layers(c);
    ASSERT_EQ(layers.size(), seen->shapes.size()) << name;
    std::set<std::string> names;
    for (size_t i = 0; i < layers.size(); ++i) {
      EXPECT_EQ(std::make_pair(layers[i].out, layers[i].in), seen->shapes[i]) << name << " " << layers[i].name;
      names.insert(layers[i].name);
      const bool gate = layers[i].name.size() > 5 && layers[i].name.compare(layers[i].name.size() - 5, 5, "fc1_g") == 0;
      EXPECT_EQ(layers[i].tied_to_next, gate) << layers[i].name;
    }
    EXPECT_EQ(names.size(), layers.size()) << name << ": names repeat";
    EXPECT_EQ(layers.front().name, "patch_embed.proj");
    EXPECT_EQ(layers.back().name, "blocks." + std::to_string(c.depth - 1) + ".mlp.fc2");
  }
}

DINOV3_SUITE_LABELS(Int8Plan, "unit");
DINOV3_TEST_LABELS(Int8Plan, BadFilesGiveClearErrors, "hostile");

TEST(Int8Plan, FileRoundTripAndNoSilentOverwrite) {
  std::unique_ptr<Model> m = load(kTiny, Precision::kF32);
  ASSERT_TRUE(m);
  Int8Plan plan = plan_for(m->config(), [](size_t i) { return i % 3 == 1; });
  plan.budget = 8e-3;
  plan.calibration_images = 2;
  plan.bf16_error = 1e-3;
  plan.int8_error = 2e-2;
  plan.predicted_error = 5e-3;
  plan.measured_error = 4.5e-3;
  plan.measured_cosine = 0.99999;
  plan.int8_flop_share = 0.25;
  test::TempDir dir;
  const std::string path = dir.file("plan.json");
  ASSERT_TRUE(write_int8_plan(plan, path).ok());
  Result<Int8Plan> back = read_int8_plan(path);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(int8_plan_to_json(*back), int8_plan_to_json(plan));
  ASSERT_EQ(back->layers.size(), plan.layers.size());
  for (size_t i = 0; i < plan.layers.size(); ++i) {
    EXPECT_EQ(back->layers[i].name, plan.layers[i].name);
    EXPECT_EQ(back->layers[i].precision, plan.layers[i].precision);
    EXPECT_EQ(back->layers[i].contribution, plan.layers[i].contribution);
  }
  EXPECT_EQ(back->int8_layers(), plan.int8_layers());

  // An existing file is kept unless the caller says to replace it.
  test::write_file(path, "mine");
  Status again = write_int8_plan(plan, path);
  EXPECT_FALSE(again.ok());
  EXPECT_EQ(test::read_file(path), "mine");
  ASSERT_TRUE(write_int8_plan(plan, path, /*overwrite=*/true).ok());
  EXPECT_TRUE(read_int8_plan(path).ok());
}

DINOV3_TEST_LABELS(Int8Plan, APlanNamingAWeightsFileJsonCannotHoldIsRefusedFirst, "hostile");
TEST(Int8Plan, APlanNamingAWeightsFileJsonCannotHoldIsRefusedFirst) {
  EXPECT_TRUE(check_int8_plan_path("out/plan.json", true).ok());
  EXPECT_TRUE(check_int8_plan_path("out/caf\xc3\xa9.json", true).ok());  // UTF-8
  const Status bad = check_int8_plan_path("out/caf\xe9.json", true);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("not UTF-8"), std::string::npos) << bad.message();
  // Only the file's own name goes into the JSON: the folder's bytes do not matter, and without rounded
  // weights the plan names no file at all.
  EXPECT_TRUE(check_int8_plan_path("caf\xe9/plan.json", true).ok());
  EXPECT_TRUE(check_int8_plan_path("out/caf\xe9.json", false).ok());
}

TEST(Int8Plan, BadFilesGiveClearErrors) {
  const std::string layer = R"({"name": "patch_embed.proj", "precision": "int8"})";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "not valid JSON"},
      {"[1, 2", "not valid JSON"},
      {"[]", "not a dinov3-int8-plan file"},
      {R"({"format": "something else"})", "not a dinov3-int8-plan file"},
      {R"({"format": "dinov3-int8-plan", "version": 2, "layers": [)" + layer + "]}", "version must be 1"},
      {R"({"format": "dinov3-int8-plan", "version": 1})", "non-empty \"layers\""},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": []})", "non-empty \"layers\""},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [1]})", "\"name\" and a \"precision\""},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [{"name": 3, "precision": "int8"}]})",
       "\"name\" and a \"precision\""},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [{"name": "a", "precision": "fp32"}]})",
       "a: precision must be"},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [{"name": "a", "precision": "int4"}]})",
       "a: precision must be"},
      {std::string(100, '[') + std::string(100, ']'), "nested deeper"},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [)" + layer + R"(], "weights": 3})",
       "\"weights\" must be a file name"},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [)" + layer + R"(], "weights": "../w.safetensors"})",
       "must name a file in the plan's folder"},
      {R"({"format": "dinov3-int8-plan", "version": 1, "layers": [)" + layer + R"(], "weights": ""})",
       "must name a file in the plan's folder"},
  };
  for (const auto& [text, why] : cases) {
    Result<Int8Plan> p = parse_int8_plan(text);
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_EQ(p.status().code(), ErrorCode::kFormatError) << text;
    EXPECT_NE(p.status().message().find(why), std::string::npos) << text << " -> " << p.status().message();
  }
  test::TempDir dir;
  Result<Int8Plan> missing = read_int8_plan(dir.file("none.json"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("none.json"), std::string::npos) << missing.status().message();
  test::write_file(dir.file("bad.json"), "{");
  Result<Int8Plan> bad = read_int8_plan(dir.file("bad.json"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad.json"), std::string::npos) << bad.status().message();
}

// Rounded weights go to a safetensors file beside the plan, named in it, written with it or not at all,
// and come back exactly; a broken one is an error that names it.
TEST(Int8Plan, RoundedWeightsTravelInAFileBesideThePlan) {
  std::unique_ptr<Model> m = load(kTiny, Precision::kF32);
  ASSERT_TRUE(m);
  const std::vector<LinearLayer> layers = linear_layers(m->config());
  Int8Plan plan = plan_for(m->config(), [](size_t i) { return i % 2 == 0; });
  for (size_t i = 0; i < layers.size(); i += 2) {
    Int8PlanLayer& l = plan.layers[i];
    for (int64_t j = 0; j < layers[i].out * layers[i].in; ++j) l.q.push_back(static_cast<int8_t>((j * 37 + i) % 255 - 127));
    for (int64_t n = 0; n < layers[i].out; ++n) l.scale.push_back(1e-3f * static_cast<float>(n + i + 1));
  }
  test::TempDir dir;
  const std::string path = dir.file("plan.json"), weights = dir.file("plan.weights.safetensors");
  EXPECT_EQ(int8_plan_weights_path(path), weights);
  EXPECT_EQ(int8_plan_weights_path(dir.file("plan")), weights);
  ASSERT_TRUE(write_int8_plan(plan, path).ok());
  EXPECT_NE(test::read_file(path).find(R"("weights": "plan.weights.safetensors")"), std::string::npos);
  Result<Int8Plan> back = read_int8_plan(path);
  ASSERT_TRUE(back.ok()) << back.status().message();
  EXPECT_EQ(back->weights_file, "plan.weights.safetensors");
  for (size_t i = 0; i < layers.size(); ++i) {
    EXPECT_EQ(back->layers[i].q, plan.layers[i].q) << layers[i].name;
    EXPECT_EQ(back->layers[i].scale, plan.layers[i].scale) << layers[i].name;
  }
  // The plan's weights are what a model loaded with it runs (a checked fit: a wrong shape is refused).
  EXPECT_TRUE(check_int8_plan(*back, m->config()).ok());
  Int8Plan wrong = *back;
  wrong.layers[0].scale.pop_back();
  Status refused = check_int8_plan(wrong, m->config());
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("patch_embed.proj's rounded weights"), std::string::npos) << refused.message();
  // A plan built in memory is held to the file's rules: a NaN scale gave all-NaN features with an OK status.
  for (const auto& [edit, fragment] : std::vector<std::pair<std::function<void(Int8PlanLayer&)>, std::string>>{
           {[](Int8PlanLayer& l) { l.scale[0] = std::nanf(""); }, ".scale holds nan (scales are finite, >= 0)"},
           {[](Int8PlanLayer& l) { l.scale[0] = INFINITY; }, ".scale holds inf"},
           {[](Int8PlanLayer& l) { l.q[0] = -128; }, ".q holds -128 (the grid is -127..127)"},
       }) {
    Int8Plan bad = *back;
    edit(bad.layers[0]);
    const Status st = check_int8_plan(bad, m->config());
    EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument) << fragment;
    EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
  }

  // Neither file is replaced unasked, even when only the weights file is in the way.
  std::remove(path.c_str());
  test::write_file(weights, "mine");
  EXPECT_FALSE(write_int8_plan(plan, path).ok());
  EXPECT_FALSE(file_exists(path));
  EXPECT_EQ(test::read_file(weights), "mine");
  ASSERT_TRUE(write_int8_plan(plan, path, /*overwrite=*/true).ok());

  // Broken weights files.
  auto write_weights = [&](const std::vector<TensorBytes>& tensors, const std::string& format) {
    std::remove(weights.c_str());
    ASSERT_TRUE(write_file_atomic(weights, true, [&](const WriteFn& w) {
                  return write_safetensors(w, tensors, {{"format", format}});
                }).ok());
  };
  const int64_t out = layers[0].out, in = layers[0].in;
  std::vector<int8_t> q(static_cast<size_t>(out * in), 1);
  std::vector<float> scale(static_cast<size_t>(out), 0.5f);
  const std::string name = layers[0].name;
  auto expect_error = [&](const std::string& why) {
    Result<Int8Plan> r = read_int8_plan(path);
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_NE(r.status().message().find("plan.weights.safetensors"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  };
  write_weights({{name + ".q", DType::kI8, {out, in}, q.data()}, {name + ".scale", DType::kF32, {out}, scale.data()}},
                "something else");
  expect_error("not a file of int8 plan weights");
  write_weights({{name + ".q", DType::kI8, {out, in}, q.data()}}, "dinov3-int8-plan-weights");
  expect_error("needs both");
  write_weights({{name + ".q", DType::kF32, {out, in / 4}, q.data()}, {name + ".scale", DType::kF32, {out}, scale.data()}},
                "dinov3-int8-plan-weights");
  expect_error("must be I8 [out, in]");
  write_weights({{name + ".q", DType::kI8, {out, in}, q.data()}, {name + ".scale", DType::kF32, {out - 1}, scale.data()}},
                "dinov3-int8-plan-weights");
  expect_error("must be F32 [out]");
  q[7] = -128;
  write_weights({{name + ".q", DType::kI8, {out, in}, q.data()}, {name + ".scale", DType::kF32, {out}, scale.data()}},
                "dinov3-int8-plan-weights");
  expect_error("holds -128");
  q[7] = 1;
  scale[2] = std::nanf("");
  write_weights({{name + ".q", DType::kI8, {out, in}, q.data()}, {name + ".scale", DType::kF32, {out}, scale.data()}},
                "dinov3-int8-plan-weights");
  expect_error(".scale holds");
  std::remove(weights.c_str());
  expect_error("plan.weights.safetensors");
  test::write_file(weights, "not safetensors");
  expect_error("plan.weights.safetensors");
}

// A plan is checked against the model it is loaded with: its layers, tied layers' one precision, and
// the precision it applies to.
TEST(Int8Plan, MustMatchTheModel) {
  std::unique_ptr<Model> gelu = load(kTiny, Precision::kF32);
  std::unique_ptr<Model> swiglu = load(test::fixture("models/tiny_swiglu_qkvb"), Precision::kF32);
  ASSERT_TRUE(gelu && swiglu);
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.precision = Precision::kInt8;
  auto expect_error = [&](const std::string& path, const Int8Plan& plan, const std::string& why) {
    lo.int8_plan = std::make_shared<const Int8Plan>(plan);
    Result<std::unique_ptr<Model>> m = Model::load(path, lo);
    ASSERT_FALSE(m.ok()) << why;
    EXPECT_EQ(m.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(m.status().message().find(why), std::string::npos) << m.status().message();
  };
  const Int8Plan for_gelu = plan_for(gelu->config(), [](size_t) { return true; });
  expect_error(swiglu->directory(), for_gelu,
               "made for a model with " + std::to_string(for_gelu.layers.size()) + " linear layers");

  Int8Plan renamed = for_gelu;
  renamed.layers[2].name = "blocks.0.attn.out";
  expect_error(kTiny, renamed, "layer 2 is 'blocks.0.attn.out', the model's is 'blocks.0.attn.proj'");

  Int8Plan split = plan_for(swiglu->config(), [](size_t) { return true; });
  const auto gate = std::find_if(split.layers.begin(), split.layers.end(),
                                 [](const Int8PlanLayer& l) { return l.name == "blocks.0.mlp.fc1_g"; });
  ASSERT_NE(gate, split.layers.end());
  gate->precision = Precision::kBF16;
  expect_error(swiglu->directory(), split, "need one precision");

  lo.backend_options.precision = Precision::kBF16;
  expect_error(kTiny, for_gelu, "an int8 plan needs precision int8, not bf16");
}

std::string linear_digest(const std::string& path) {
  LoadOptions lo;
  lo.backend = "reference";
  lo.digest_linear_weights = true;
  Result<std::unique_ptr<Model>> m = Model::load(path, lo);
  EXPECT_TRUE(m.ok()) << m.status().message();
  return m.ok() ? (*m)->linear_weights_digest() : std::string();
}

// A plan fits the weights it was measured on: another model with the same layers (a fine-tune, another
// size's sibling) was accepted and gave outputs off by a relative 1.16.
TEST(Int8Plan, RefusesAModelWithOtherWeights) {
  // The digest is of the float32 linear layers as the backend receives them: the same for the three
  // layouts of the same weights (Meta's qkv bias times its mask, HF's q/k/v parts fused).
  const std::string digest = linear_digest(kTiny);
  ASSERT_EQ(digest.size(), 64u);
  EXPECT_EQ(linear_digest(test::fixture("models/tiny_meta/dinov3_tiny_pretrain_random.pth")), digest);
  EXPECT_EQ(linear_digest(test::fixture("models/tiny_hf")), digest);
  LoadOptions plain;  // not asked for: not computed
  plain.backend = "reference";
  Result<std::unique_ptr<Model>> unasked = Model::load(kTiny, plain);
  ASSERT_TRUE(unasked.ok());
  EXPECT_EQ((*unasked)->linear_weights_digest(), "");

  // tiny with one fc2 weight moved by 1e-3.
  test::TempDir other;
  fs::copy_file(kTiny + "/config.json", other.file("config.json"));
  Result<TensorArchive> archive = open_safetensors(kTiny + "/model.safetensors");
  ASSERT_TRUE(archive.ok());
  std::vector<Tensor> values;
  for (const RawTensor& raw : archive->tensors()) {
    Result<Tensor> t = archive->load_f32(raw);
    ASSERT_TRUE(t.ok());
    if (raw.name == "blocks.1.mlp.fc2.weight") t->data[5] += 1e-3f;
    values.push_back(std::move(*t));
  }
  std::vector<NamedTensor> named;
  for (size_t i = 0; i < values.size(); ++i) named.push_back({archive->tensors()[i].name, &values[i]});
  ASSERT_TRUE(save_safetensors(other.file("model.safetensors"), named).ok());
  EXPECT_NE(linear_digest(other.path()), digest);

  std::unique_ptr<Model> probe = load(kTiny, Precision::kF32);
  ASSERT_TRUE(probe);
  Int8Plan plan = plan_for(probe->config(), [](size_t i) { return i % 2 == 0; });
  plan.model_digest = digest;
  const auto shared = std::make_shared<const Int8Plan>(plan);
  EXPECT_TRUE(load(kTiny, Precision::kInt8, shared));
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.precision = Precision::kInt8;
  lo.int8_plan = shared;
  Result<std::unique_ptr<Model>> refused = Model::load(other.path(), lo);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("the int8 plan was calibrated on other weights"), std::string::npos)
      << refused.status().message();
  // The digest travels in the plan file.
  Result<Int8Plan> parsed = parse_int8_plan(int8_plan_to_json(plan));
  ASSERT_TRUE(parsed.ok()) << parsed.status().message();
  EXPECT_EQ(parsed->model_digest, digest);
  std::string text = int8_plan_to_json(plan);
  text.replace(text.find(digest), 64, "not-a-digest");
  EXPECT_FALSE(parse_int8_plan(text).ok());
}

// Whole-model bits: an all-bf16 plan is the bf16 model, an all-int8 plan the int8 model, and a mixed plan
// differs from both.
TEST(Int8Plan, RunsThePrecisionsItNames) {
  std::unique_ptr<Model> probe = load(kTiny, Precision::kF32);
  ASSERT_TRUE(probe);
  const Tensor input = photos(*probe);
  const ModelConfig config = probe->config();
  auto run = [&](Precision p, std::shared_ptr<const Int8Plan> plan) {
    std::unique_ptr<Model> m = load(kTiny, p, std::move(plan));
    EXPECT_TRUE(m);
    Result<ForwardOutput> out = m ? m->forward(input) : Result<ForwardOutput>(make_error(ErrorCode::kInternal, "no model"));
    EXPECT_TRUE(out.ok()) << out.status().message();
    return out.ok() ? out->features.data : std::vector<float>{};
  };
  const auto all_bf16 = std::make_shared<const Int8Plan>(plan_for(config, [](size_t) { return false; }));
  const auto all_int8 = std::make_shared<const Int8Plan>(plan_for(config, [](size_t) { return true; }));
  const auto mixed = std::make_shared<const Int8Plan>(plan_for(config, [](size_t i) { return i % 2 == 0; }));
  const std::vector<float> bf16 = run(Precision::kBF16, nullptr), int8 = run(Precision::kInt8, nullptr);
  EXPECT_EQ(run(Precision::kInt8, all_bf16), bf16);
  EXPECT_EQ(run(Precision::kInt8, all_int8), int8);
  const std::vector<float> mix = run(Precision::kInt8, mixed);
  EXPECT_NE(mix, bf16);
  EXPECT_NE(mix, int8);
}

DINOV3_SUITE_LABELS(Calibrate, "unit");

// What calibration reports is what an independent forward of its plan measures, and within budget.
TEST(Calibrate, MeasuresWhatItReportsAndKeepsItsBudget) {
  std::unique_ptr<Model> f32 = load(kTiny, Precision::kF32);
  std::unique_ptr<Model> bf16 = load(kTiny, Precision::kBF16);
  std::unique_ptr<Model> int8 = load(kTiny, Precision::kInt8);
  ASSERT_TRUE(f32 && bf16 && int8);
  const Tensor input = photos(*f32);
  Result<ForwardOutput> base = f32->forward(input), b = bf16->forward(input), q = int8->forward(input);
  ASSERT_TRUE(base.ok() && b.ok() && q.ok());
  const double e_bf16 = worst_error(*b, *base), e_int8 = worst_error(*q, *base);
  ASSERT_LT(e_bf16, e_int8);

  // A budget between the two: some layers int8, not all. Weights rounded to nearest (GPTQ: below).
  CalibrationOptions o;
  o.gptq = false;
  o.budget = std::sqrt(e_bf16 * e_int8);
  ProgressCount count;
  count.attach(o);
  Result<Int8Plan> plan = calibrate_int8(kTiny, input, o);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  const std::vector<LinearLayer> layers = linear_layers(f32->config());
  const int64_t total = count.total;
  EXPECT_EQ(count.calls, total);
  EXPECT_EQ(total, 3 + static_cast<int64_t>(layers.size()));
  ASSERT_EQ(plan->layers.size(), layers.size());
  EXPECT_DOUBLE_EQ(plan->bf16_error, e_bf16);
  EXPECT_DOUBLE_EQ(plan->int8_error, e_int8);
  EXPECT_EQ(plan->calibration_images, input.shape[0]);
  for (const Int8PlanLayer& l : plan->layers) EXPECT_GE(l.contribution, 0.0) << l.name;
  EXPECT_GT(plan->int8_layers(), 0);
  EXPECT_LT(plan->int8_layers(), static_cast<int64_t>(layers.size()));
  EXPECT_GT(plan->int8_flop_share, 0.0);
  EXPECT_LT(plan->int8_flop_share, 1.0);
  EXPECT_LE(plan->measured_error, o.budget);
  EXPECT_EQ(plan->model_digest, linear_digest(kTiny));  // which weights it was measured on
  std::unique_ptr<Model> mixed = load(kTiny, Precision::kInt8, std::make_shared<const Int8Plan>(*plan));
  ASSERT_TRUE(mixed);
  Result<ForwardOutput> m = mixed->forward(input);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(worst_error(*m, *base), plan->measured_error);

  // A budget nothing exceeds: every layer int8, measuring as the int8 model does.
  o.budget = 1.0;
  o.progress = nullptr;
  Result<Int8Plan> everything = calibrate_int8(kTiny, input, o);
  ASSERT_TRUE(everything.ok());
  EXPECT_EQ(everything->int8_layers(), static_cast<int64_t>(layers.size()));
  EXPECT_DOUBLE_EQ(everything->measured_error, e_int8);
  EXPECT_DOUBLE_EQ(everything->int8_flop_share, 1.0);
}

// GPTQ: every measurement cross-fitted (each image measured with the weights rounded on the others), the
// plan carrying the weights rounded on all images for its int8 layers.
TEST(Calibrate, GptqIsMeasuredOnImagesItDidNotSee) {
  std::unique_ptr<Model> f32 = load(kTiny, Precision::kF32);
  ASSERT_TRUE(f32);
  const Tensor input = photos(*f32);
  ASSERT_EQ(input.shape[0], 2);
  const std::vector<LinearLayer> layers = linear_layers(f32->config());
  CalibrationOptions o;
  ProgressCount count;
  count.attach(o);
  Result<Int8Plan> plan = calibrate_int8(kTiny, input, o);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  EXPECT_EQ(count.calls, count.total);
  EXPECT_EQ(count.total, 3 + static_cast<int64_t>(layers.size()) + 2 + 1);  // + two folds' rounding and the plan's
  ASSERT_GT(plan->int8_layers(), 0);

  // The plan's weights: GPTQ on both images, for its int8 layers only.
  Result<std::vector<Int8Rounding>> all = round_linear_layers_gptq(kTiny, input, "cpu", 0);
  ASSERT_TRUE(all.ok());
  for (size_t i = 0; i < layers.size(); ++i) {
    const Int8PlanLayer& l = plan->layers[i];
    if (l.precision == Precision::kInt8) {
      EXPECT_EQ(l.q, (*all)[i].q) << l.name;
      EXPECT_EQ(l.scale, (*all)[i].scale) << l.name;
    } else {
      EXPECT_TRUE(l.q.empty() && l.scale.empty()) << l.name;
    }
  }

  // Only the layers asked for: the same values, the others neither rounded nor recorded (left empty).
  std::vector<bool> odd(layers.size());
  for (size_t i = 0; i < layers.size(); ++i) odd[i] = i % 2 == 1;
  for (const std::vector<bool>& wanted : {odd, std::vector<bool>(layers.size(), false)}) {
    Result<std::vector<Int8Rounding>> some = round_linear_layers_gptq(kTiny, input, "cpu", 0, wanted);
    ASSERT_TRUE(some.ok()) << some.status().message();
    ASSERT_EQ(some->size(), layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
      if (wanted[i]) {
        EXPECT_EQ((*some)[i].q, (*all)[i].q) << layers[i].name;
        EXPECT_EQ((*some)[i].scale, (*all)[i].scale) << layers[i].name;
      } else {
        EXPECT_TRUE((*some)[i].q.empty() && (*some)[i].scale.empty()) << layers[i].name;
      }
    }
  }
  Result<std::vector<Int8Rounding>> mismatched =
      round_linear_layers_gptq(kTiny, input, "cpu", 0, std::vector<bool>(layers.size() + 1, true));
  ASSERT_FALSE(mismatched.ok());
  EXPECT_EQ(mismatched.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(mismatched.status().message().find("layers asked for"), std::string::npos) << mismatched.status().message();

  // What it reports as measured: each image with the weights rounded on the other one, the worst of the two.
  const int64_t per = input.numel() / 2;
  double worst = 0;
  for (int64_t held = 0; held < 2; ++held) {
    Tensor one({1, input.shape[1], input.shape[2], input.shape[3]},
               std::vector<float>(input.data.begin() + held * per, input.data.begin() + (held + 1) * per));
    Tensor other({1, input.shape[1], input.shape[2], input.shape[3]},
                 std::vector<float>(input.data.begin() + (1 - held) * per, input.data.begin() + (2 - held) * per));
    Result<std::vector<Int8Rounding>> fold = round_linear_layers_gptq(kTiny, other, "cpu", 0);
    ASSERT_TRUE(fold.ok());
    auto p = std::make_shared<Int8Plan>(*plan);
    for (size_t i = 0; i < layers.size(); ++i) {
      if (p->layers[i].precision != Precision::kInt8) continue;
      p->layers[i].q = (*fold)[i].q;
      p->layers[i].scale = (*fold)[i].scale;
    }
    std::unique_ptr<Model> mixed = load(kTiny, Precision::kInt8, p);
    ASSERT_TRUE(mixed);
    Result<ForwardOutput> got = mixed->forward(one), base = f32->forward(one);
    ASSERT_TRUE(got.ok() && base.ok());
    worst = std::max(worst, worst_error(*got, *base));
  }
  EXPECT_DOUBLE_EQ(plan->measured_error, worst);
  EXPECT_LE(plan->measured_error, o.budget);

  // Written and read back, the plan runs the same numbers as in memory.
  test::TempDir dir;
  ASSERT_TRUE(write_int8_plan(*plan, dir.file("p.json")).ok());
  Result<Int8Plan> back = read_int8_plan(dir.file("p.json"));
  ASSERT_TRUE(back.ok()) << back.status().message();
  std::unique_ptr<Model> a = load(kTiny, Precision::kInt8, std::make_shared<const Int8Plan>(*plan));
  std::unique_ptr<Model> b = load(kTiny, Precision::kInt8, std::make_shared<const Int8Plan>(*back));
  ASSERT_TRUE(a && b);
  Result<ForwardOutput> ra = a->forward(input), rb = b->forward(input);
  ASSERT_TRUE(ra.ok() && rb.ok());
  EXPECT_EQ(ra->features.data, rb->features.data);

  // One image cannot be cross-fitted: weights rounded to nearest, as gptq = false does.
  Tensor first({1, input.shape[1], input.shape[2], input.shape[3]},
               std::vector<float>(input.data.begin(), input.data.begin() + per));
  Result<Int8Plan> single = calibrate_int8(kTiny, first, CalibrationOptions{});
  ASSERT_TRUE(single.ok());
  for (const Int8PlanLayer& l : single->layers) EXPECT_TRUE(l.q.empty()) << l.name;
}

TEST(Calibrate, RefusesWhatItCannotDo) {
  std::unique_ptr<Model> f32 = load(kTiny, Precision::kF32);
  ASSERT_TRUE(f32);
  const Tensor input = photos(*f32);
  CalibrationOptions o;
  for (const double budget : {0.0, -1.0, std::nan(""), static_cast<double>(INFINITY)}) {
    o.budget = budget;
    Result<Int8Plan> p = calibrate_int8(kTiny, input, o);
    ASSERT_FALSE(p.ok()) << budget;
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
  }
  o.budget = 1e-9;  // below what bf16 alone gives
  Result<Int8Plan> tight = calibrate_int8(kTiny, input, o);
  ASSERT_FALSE(tight.ok());
  EXPECT_NE(tight.status().message().find("bf16 alone"), std::string::npos) << tight.status().message();
  o.budget = 8e-3;
  Result<Int8Plan> flat = calibrate_int8(kTiny, Tensor({3, 16, 16}, std::vector<float>(768)), o);
  ASSERT_FALSE(flat.ok());
  EXPECT_EQ(flat.status().code(), ErrorCode::kInvalidArgument);
  Result<Int8Plan> nowhere = calibrate_int8(test::fixture("models/does-not-exist"), input, o);
  EXPECT_FALSE(nowhere.ok());
  o.backend = "reference";  // no int8 there
  EXPECT_FALSE(calibrate_int8(kTiny, input, o).ok());
}

DINOV3_SUITE_LABELS(CalibrateCli, "unit");

int dinov3_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "dinov3");
  return cli::run_cli(args);
}

TEST(CalibrateCli, WritesThePlanTheOtherCommandsRun) {
  test::TempDir out;
  const std::string plan = out.file("plans/tiny.json");
  const std::string image = test::fixture("images/rocket.jpg");
  ASSERT_EQ(dinov3_cli({"calibrate", "-m", kTiny, "-i", image, "--budget", "0.5", "--plan", plan, "--output-dir",
                        out.path()}),
            0);
  Result<Int8Plan> written = read_int8_plan(plan);
  ASSERT_TRUE(written.ok()) << written.status().message();
  const nlohmann::json report = nlohmann::json::parse(test::read_file(out.file("calibrate.json")));
  EXPECT_EQ(report["plan_file"], plan);
  EXPECT_EQ(report["plan"]["layers"].size(), written->layers.size());
  EXPECT_EQ(report["plan"]["int8_layers"], written->int8_layers());
  EXPECT_NE(test::read_file(out.file("calibrate.log")).find("blocks.1.mlp.fc2"), std::string::npos);

  // The plan is not replaced unasked.
  const std::string before = test::read_file(plan);
  EXPECT_NE(dinov3_cli({"calibrate", "-m", kTiny, "-i", image, "--plan", plan, "--output-dir", out.path()}), 0);
  EXPECT_EQ(test::read_file(plan), before);

  ASSERT_EQ(dinov3_cli({"infer", "-m", kTiny, "--precision", "int8", "--int8-plan", plan, "-i", image,
                        "--output-dir", out.path()}),
            0);
  const nlohmann::json infer = nlohmann::json::parse(test::read_file(out.file("infer.json")));
  EXPECT_EQ(infer["model"]["int8_plan"]["file"], plan);
  EXPECT_EQ(infer["model"]["int8_plan"]["int8_layers"], written->int8_layers());
  EXPECT_EQ(infer["context"]["precision"], "int8");
  // A plan needs int8, and a plan file that is not one is an error, not a crash.
  EXPECT_NE(dinov3_cli({"infer", "-m", kTiny, "--int8-plan", plan, "--output-dir", out.path()}), 0);
  test::write_file(out.file("junk.json"), "junk");
  EXPECT_NE(dinov3_cli({"infer", "-m", kTiny, "--precision", "int8", "--int8-plan", out.file("junk.json"),
                        "--output-dir", out.path()}),
            0);
}

}  // namespace
}  // namespace dinov3
