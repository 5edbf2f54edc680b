// dinov3 calibrate: measures every linear layer's int8 error on calibration images and writes the int8 plan
// (`--precision int8 --int8-plan FILE` on every other command): int8 where the measured error allows, bf16
// elsewhere. The report lists each layer's contribution.
#include <cstdio>
#include <filesystem>
#include <unistd.h>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/int8_plan.h"
#include "report.h"

namespace dinov3::cli {

namespace {

struct CalibrateOptions {
  ModelOptions model;
  InputOptions input;
  std::string backend = "cpu";
  int threads = 0;
  double budget = CalibrationOptions{}.budget;
  std::string rounding = "gptq";
  std::string plan;  // default: OUTPUT_DIR/int8_plan.json
  bool overwrite = false;
  std::string output_dir = "output";
};

Result<int> run_calibrate(CalibrateOptions o) {
  // The model is resolved and its inputs preprocessed on the reference backend; calibration loads it again
  // at each precision.
  DINOV3_RETURN_IF_ERROR(Report::check_replaceable(o.output_dir, "calibrate"));  // before any work
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.model, "reference"));
  describe_model_source(loaded);
  if (o.input.images.empty() && o.input.input_tensor.empty()) o.input.images = bundled_sample_images();
  std::vector<std::string> labels;
  DINOV3_ASSIGN_OR_RETURN(Tensor input, load_inputs(o.input, *loaded.model, &labels));
  const std::string plan_path = o.plan.empty() ? o.output_dir + "/int8_plan.json" : o.plan;
  DINOV3_RETURN_IF_ERROR(check_int8_plan_path(plan_path, /*with_weights=*/o.rounding == "gptq"));
  for (const std::string& p : int8_plan_files(plan_path)) {
    DINOV3_RETURN_IF_ERROR(check_not_written_over(p, input_files(o.input, *loaded.model), "an input"));
    DINOV3_RETURN_IF_ERROR(check_not_written_over(p, Report::files(o.output_dir, "calibrate"), "this command's report"));
    if (!o.overwrite && file_exists(p)) {
      return make_error(ErrorCode::kInvalidArgument, p + " exists; pass --overwrite or another --plan");
    }
    DINOV3_RETURN_IF_ERROR(check_output_file(p, /*overwrite=*/true));  // a folder or a FIFO there
  }
  const std::filesystem::path plan_dir = std::filesystem::path(plan_path).parent_path();
  std::error_code ec;
  if (!plan_dir.empty() && !std::filesystem::create_directories(plan_dir, ec) && ec) {
    return make_error(ErrorCode::kIoError, plan_dir.string() + ": cannot create the plan's folder: " + ec.message());
  }
  const std::string dir = loaded.model->directory();
  const ModelConfig config = loaded.model->config();
  loaded.model.reset();

  CalibrationOptions co;
  co.backend = o.backend;
  co.threads = o.threads;
  co.budget = o.budget;
  co.gptq = o.rounding == "gptq";
  if (isatty(STDERR_FILENO)) co.progress = [](int64_t done, int64_t total) {
    std::fprintf(stderr, "\rcalibrating: %lld / %lld forwards", static_cast<long long>(done), static_cast<long long>(total));
    if (done == total) std::fprintf(stderr, "\n");
  };
  DINOV3_ASSIGN_OR_RETURN(Int8Plan plan, calibrate_int8(dir, input, co));
  DINOV3_RETURN_IF_ERROR(write_int8_plan(plan, plan_path, o.overwrite));
  name_int8_plan_weights(plan, plan_path);

  Report r("calibrate");
  auto& j = r.json();
  j["model"] = {{"dir", dir}, {"architecture", config.architecture}, {"layout", layout_name(config.layout)}};
  j["backend"] = o.backend;
  j["inputs"] = labels;
  j["plan_file"] = plan_path;
  j["plan"] = nlohmann::ordered_json::parse(int8_plan_to_json(plan));
  char buf[256];
  r.line("model:    " + config.architecture + " (" + dir + ")");
  r.line("inputs:   " + std::to_string(labels.size()) + " " + shape_to_string(input.shape));
  std::snprintf(buf, sizeof(buf),
                "errors (worst image, relative L2 against float32): bf16 %.3e, int8 %.3e (weights rounded: %s), "
                "budget %.3e",
                plan.bf16_error, plan.int8_error, plan.rounding.c_str(), plan.budget);
  r.line(buf);
  if (plan.rounding == "gptq") {
    r.line("measured: cross-fitted (each image with the weights rounded on the others); the plan's weights are "
           "rounded on all " + std::to_string(plan.calibration_images) + " images");
  } else if (o.rounding == "gptq") {
    r.line("rounding: nearest (GPTQ needs 2 or more images to be measured on images it did not see)");
  }
  r.line("layer                          contribution  precision");
  for (const Int8PlanLayer& l : plan.layers) {
    std::snprintf(buf, sizeof(buf), "%-30s %.3e     %s", l.name.c_str(), l.contribution, precision_name(l.precision));
    r.line(buf);
  }
  std::snprintf(buf, sizeof(buf),
                "plan:     %lld of %zu linear layers int8 (%.0f%% of their multiply-adds); error predicted %.3e, "
                "measured %.3e, cosine %.6f",
                static_cast<long long>(plan.int8_layers()), plan.layers.size(), 100.0 * plan.int8_flop_share,
                plan.predicted_error, plan.measured_error, plan.measured_cosine);
  r.line(buf);
  r.line("wrote:    " + plan_path +
         (plan.weights_file.empty() ? "" : " and its rounded weights, " + int8_plan_weights_path(plan_path)) +
         " (use: --precision int8 --int8-plan " + plan_path + ")");
  DINOV3_RETURN_IF_ERROR(r.write(o.output_dir));
  return 0;
}

}  // namespace

Command add_calibrate_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "calibrate", "Measure each linear layer's int8 error and write the int8 plan that stays within budget");
  auto opts = std::make_shared<CalibrateOptions>();
  add_model_options(*cmd, &opts->model, /*with_backend=*/false);
  cmd->add_option("--backend,-b", opts->backend, "compute backend with int8 and bf16")->capture_default_str();
  cmd->add_option("--threads,-t", opts->threads, "worker threads (0: one per core)")->capture_default_str();
  add_input_options(*cmd, &opts->input);
  cmd->add_option("--budget", opts->budget,
                  "largest relative error against float32 the plan may measure on these images (the accuracy rule "
                  "is 0.01; leave room for other images)")
      ->capture_default_str();
  cmd->add_option("--rounding", opts->rounding,
                  "how int8 weights are rounded: gptq (against the calibration images' inputs to each layer; the "
                  "plan carries them) or nearest (at load)")
      ->check(CLI::IsMember({"gptq", "nearest"}))
      ->capture_default_str();
  cmd->add_option("--plan", opts->plan, "where the plan goes (default: OUTPUT_DIR/int8_plan.json)");
  cmd->add_flag("--overwrite", opts->overwrite, "replace an existing plan file");
  cmd->add_option("--output-dir", opts->output_dir, "where calibrate.json and calibrate.log go")->capture_default_str();
  return {cmd, [opts]() { return run_calibrate(*opts); }};
}

}  // namespace dinov3::cli
