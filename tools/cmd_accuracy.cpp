// dinov3 accuracy: the same inputs through a backend under test and a baseline (the reference backend in
// float32 by default); agreement per output, PASS/FAIL against thresholds, exit code 1 on FAIL.
#include <cmath>
#include <limits>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/metrics.h"
#include "report.h"

namespace dinov3::cli {

namespace {

struct AccuracyOptions {
  ModelOptions model;
  std::string baseline = "reference";
  InputOptions input;
  double max_rel_error = 0.01;
  double min_cosine = 0.999;
  double max_mse = std::numeric_limits<double>::infinity();
  double max_abs_diff = std::numeric_limits<double>::infinity();
  std::string output_dir = "output";
};

struct OutputVerdict : BatchAgreement {
  bool pass = true;
};

OutputVerdict judge(const Tensor& got, const Tensor& want, const AccuracyOptions& o) {
  OutputVerdict v;
  const size_t batch = static_cast<size_t>(want.shape[0]), n = want.data.size() / batch;
  static_cast<BatchAgreement&>(v) = compare_images(got.ptr(), want.ptr(), batch, n);
  // NaN in any image is the worst value and fails every comparison below, as it should.
  v.pass = v.worst.rel_error <= o.max_rel_error && v.worst.cosine >= o.min_cosine && v.worst.mse <= o.max_mse &&
           v.worst.max_abs_diff <= o.max_abs_diff;
  return v;
}

std::string verdict(bool ok) { return ok ? "PASS" : "FAIL"; }

Result<int> run_accuracy(AccuracyOptions o) {
  DINOV3_RETURN_IF_ERROR(Report::check_replaceable(o.output_dir, "accuracy"));  // before any work
  DINOV3_ASSIGN_OR_RETURN(LoadedModel test_model, load_model(o.model, o.model.backend));
  describe_model_source(test_model);
  ModelOptions base_opts = o.model;
  base_opts.precision = "fp32";
  base_opts.int8_plan.clear();
  DINOV3_ASSIGN_OR_RETURN(LoadedModel base_model, load_model(base_opts, o.baseline));
  if (o.input.images.empty() && o.input.input_tensor.empty()) o.input.images = bundled_sample_images();
  std::vector<std::string> labels;
  DINOV3_ASSIGN_OR_RETURN(Tensor input, load_inputs(o.input, *test_model.model, &labels));
  DINOV3_ASSIGN_OR_RETURN(ForwardOutput got, test_model.model->forward(input));
  DINOV3_ASSIGN_OR_RETURN(ForwardOutput want, base_model.model->forward(input));

  Model& model = *test_model.model;
  Report r("accuracy");
  auto& j = r.json();
  j["model"] = model_json(test_model);
  j["context"] = run_context(model);
  j["baseline"] = {{"backend", o.baseline}, {"precision", "fp32"}, {"device", base_model.model->backend().device()}};
  j["inputs"] = labels;
  j["thresholds"] = {{"max_rel_error", o.max_rel_error}, {"min_cosine", o.min_cosine}};
  if (std::isfinite(o.max_mse)) j["thresholds"]["max_mse"] = o.max_mse;
  if (std::isfinite(o.max_abs_diff)) j["thresholds"]["max_abs_diff"] = o.max_abs_diff;

  r.line("backend:  " + model.backend().name() + " (" + precision_label(test_model) + ") on " +
         model.backend().device());
  r.backend_notes(model.backend());
  r.line("baseline: " + o.baseline + " (fp32)");
  r.line("inputs:   " + std::to_string(labels.size()) + " " + shape_to_string(input.shape));
  bool overall = true;
  for (const auto& [name, a, b] : {std::tuple{"pooled", &got.pooled, &want.pooled},
                                   std::tuple{"features", &got.features, &want.features}}) {
    const OutputVerdict v = judge(*a, *b, o);
    overall = overall && v.pass;
    char buf[512];
    std::snprintf(buf, sizeof(buf),
                  "%-8s %s  rel_error %.3e [%s <= %g]  cosine %.8f [%s >= %g]  mse %.3e%s  max_abs_diff %.3e%s  worst: %s",
                  name, shape_to_string(a->shape).c_str(), v.worst.rel_error,
                  verdict(v.worst.rel_error <= o.max_rel_error).c_str(), o.max_rel_error, v.worst.cosine,
                  verdict(v.worst.cosine >= o.min_cosine).c_str(), o.min_cosine, v.worst.mse,
                  std::isfinite(o.max_mse) ? (" [" + verdict(v.worst.mse <= o.max_mse) + "]").c_str() : "",
                  v.worst.max_abs_diff,
                  std::isfinite(o.max_abs_diff) ? (" [" + verdict(v.worst.max_abs_diff <= o.max_abs_diff) + "]").c_str() : "",
                  labels[v.worst_image].c_str());
    r.line(buf);
    nlohmann::ordered_json per = nlohmann::ordered_json::array();
    for (size_t i = 0; i < v.per_image.size(); ++i) {
      const Agreement& g = v.per_image[i];
      per.push_back({{"input", labels[i]}, {"rel_error", g.rel_error}, {"cosine", g.cosine}, {"mse", g.mse},
                     {"max_abs_diff", g.max_abs_diff}});
    }
    j[name] = {{"shape", a->shape},
               {"rel_error", {{"value", v.worst.rel_error}, {"verdict", verdict(v.worst.rel_error <= o.max_rel_error)}}},
               {"cosine", {{"value", v.worst.cosine}, {"verdict", verdict(v.worst.cosine >= o.min_cosine)}}},
               {"mse", {{"value", v.worst.mse}, {"verdict", verdict(v.worst.mse <= o.max_mse)}}},
               {"max_abs_diff", {{"value", v.worst.max_abs_diff}, {"verdict", verdict(v.worst.max_abs_diff <= o.max_abs_diff)}}},
               {"worst_input", labels[v.worst_image]},
               {"verdict", verdict(v.pass)},
               {"per_input", per}};
  }
  j["overall"] = verdict(overall);
  r.line("OVERALL: " + verdict(overall));
  DINOV3_RETURN_IF_ERROR(r.write(o.output_dir));
  return overall ? 0 : 1;
}

}  // namespace

Command add_accuracy_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("accuracy", "Compare a backend with the float32 reference: PASS or FAIL");
  auto opts = std::make_shared<AccuracyOptions>();
  add_model_options(*cmd, &opts->model);
  cmd->add_option("--baseline", opts->baseline, "backend the outputs are compared with (in fp32)")->capture_default_str();
  add_input_options(*cmd, &opts->input);
  cmd->add_option("--max-rel-error", opts->max_rel_error, "PASS if ||a-b||/||b|| <= this, per input")->capture_default_str();
  cmd->add_option("--min-cosine", opts->min_cosine, "PASS if cosine >= this, per input")->capture_default_str();
  cmd->add_option("--max-mse", opts->max_mse, "PASS if the MSE <= this (default: no limit)");
  cmd->add_option("--max-abs-diff", opts->max_abs_diff, "PASS if max |a-b| <= this (default: no limit)");
  cmd->add_option("--output-dir", opts->output_dir, "where accuracy.json and accuracy.log go")->capture_default_str();
  return {cmd, [opts]() { return run_accuracy(*opts); }};
}

}  // namespace dinov3::cli
