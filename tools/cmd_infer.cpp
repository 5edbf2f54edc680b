// dinov3 infer: one input through the chosen backend; shapes, latency and first values, as a report.
#include <chrono>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/metrics.h"
#include "dinov3/tensor_file.h"
#include "report.h"

namespace dinov3::cli {

namespace {

struct InferOptions {
  ModelOptions model;
  InputOptions input;
  std::string save;
  bool overwrite = false;
  std::string pool = "default";
  std::vector<int> layers;
  bool norm_layers = false;
  int warmup = 1;
  int runs = 3;
  std::string output_dir = "output";
};

Result<int> run_infer(InferOptions o) {
  DINOV3_ASSIGN_OR_RETURN(PoolMode pool, parse_pool(o.pool));
  DINOV3_RETURN_IF_ERROR(Report::check_replaceable(o.output_dir, "infer"));  // before any work
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.model, o.model.backend));
  describe_model_source(loaded);
  Model& model = *loaded.model;
  if (o.input.images.empty() && o.input.input_tensor.empty()) o.input.images = {bundled_sample_images().front()};
  if (!o.save.empty()) {  // before any work
    DINOV3_RETURN_IF_ERROR(check_not_written_over(o.save, input_files(o.input, model), "an input"));
    DINOV3_RETURN_IF_ERROR(check_not_written_over(o.save, Report::files(o.output_dir, "infer"), "this command's report"));
  }
  std::vector<std::string> labels;
  DINOV3_ASSIGN_OR_RETURN(Tensor input, load_inputs(o.input, model, &labels));

  ForwardOptions fo;
  fo.pool = pool;
  fo.intermediate_blocks = o.layers;
  fo.norm_intermediates = o.norm_layers;
  ForwardOutput out;
  std::vector<double> ms;
  for (int i = 0; i < o.warmup + o.runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    DINOV3_ASSIGN_OR_RETURN(out, model.forward(input, fo));
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= o.warmup) ms.push_back(t);
  }
  DINOV3_ASSIGN_OR_RETURN(const LatencyStats lat, summarize_latencies(ms));
  const ModelConfig& c = model.config();
  const int64_t H = input.shape[2], W = input.shape[3];
  const size_t n_first = std::min<size_t>(5, out.pooled.data.size());
  const std::vector<float> first(out.pooled.data.begin(), out.pooled.data.begin() + static_cast<long>(n_first));

  Report r("infer");
  r.line("model:    " + c.architecture + " (" + model.directory() + ")" + (loaded.random_weights ? " [random weights]" : ""));
  r.line("backend:  " + model.backend().name() + ", " + precision_label(loaded) + ", " +
         std::to_string(model.backend().threads()) + " thread(s)");
  r.line("device:   " + model.backend().device());
  r.backend_notes(model.backend());
  r.line("input:    " + shape_to_string(input.shape) + " from " + (o.input.images.empty() ? "tensor " : "image ") +
         labels.front() + (labels.size() > 1 ? " (+" + std::to_string(labels.size() - 1) + ")" : ""));
  r.line("latency:  " + format_ms(lat.p50) + " (median of " + std::to_string(o.runs) + " after " +
         std::to_string(o.warmup) + " warm-up)");
  r.line("features: " + shape_to_string(out.features.shape) + " float32 " + token_breakdown(c, H, W));
  r.line("pooled:   " + shape_to_string(out.pooled.shape) + " float32 (" + pool_mode_name(pool == PoolMode::kDefault ? c.global_pool : pool) + ")");
  r.line("pooled[0][:5]: " + format_values(first.data(), first.size()));

  auto& j = r.json();
  j["model"] = model_json(loaded);
  j["context"] = run_context(model);
  j["input"] = {{"shape", input.shape}, {"sources", labels}};
  j["latency_ms"] = {{"warmup", o.warmup}, {"runs", o.runs}, {"p50", lat.p50}, {"mean", lat.mean}, {"min", lat.min}, {"max", lat.max}};
  j["features"] = {{"shape", out.features.shape},
                   {"dtype", "float32"},
                   {"tokens", {{"cls", 1}, {"registers", c.num_reg_tokens}, {"patches", (H / c.patch_size) * (W / c.patch_size)}}}};
  j["pooled"] = {{"shape", out.pooled.shape}, {"dtype", "float32"},
                 {"pool", pool_mode_name(pool == PoolMode::kDefault ? c.global_pool : pool)}, {"first_values", first}};

  if (!o.save.empty()) {
    std::vector<NamedTensor> tensors = {{"features", &out.features}, {"pooled", &out.pooled}};
    std::vector<std::string> names;
    for (const auto& im : out.intermediates) names.push_back("blocks." + std::to_string(im.block));
    for (size_t i = 0; i < out.intermediates.size(); ++i) tensors.push_back({names[i], &out.intermediates[i].tokens});
    DINOV3_RETURN_IF_ERROR(save_safetensors(o.save, tensors, {{"architecture", c.architecture}}, o.overwrite));
    r.line("saved:    " + o.save);
    j["saved"] = o.save;
  }
  DINOV3_RETURN_IF_ERROR(r.write(o.output_dir));
  return 0;
}

}  // namespace

Command add_infer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("infer", "Run images or a tensor through the model: shapes, latency, first values");
  auto opts = std::make_shared<InferOptions>();
  add_model_options(*cmd, &opts->model);
  add_input_options(*cmd, &opts->input);
  cmd->add_option("--save", opts->save, "write features, pooled (and chosen blocks) as float32 safetensors");
  cmd->add_flag("--overwrite", opts->overwrite, "replace an existing --save file");
  cmd->add_option("--pool", opts->pool, "pooled output: avg, token or default (the config's)")->capture_default_str();
  cmd->add_option("--layers", opts->layers, "also output these blocks (negative counts from the end)")->delimiter(',');
  cmd->add_flag("--norm-layers", opts->norm_layers, "apply the final norm to the --layers outputs");
  cmd->add_option("--warmup", opts->warmup, "untimed runs first")->capture_default_str()->check(CLI::Range(0, kMaxRuns));
  cmd->add_option("--runs", opts->runs, "timed runs (the median is reported)")->capture_default_str()->check(CLI::Range(1, kMaxRuns));
  cmd->add_option("--output-dir", opts->output_dir, "where infer.json and infer.log go")->capture_default_str();
  return {cmd, [opts]() { return run_infer(*opts); }};
}

}  // namespace dinov3::cli
