// dinov3 infer: one batch through the model; prints shapes and first values, optionally saves tensors.
#include <chrono>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/tensor_file.h"

namespace dinov3::cli {

namespace {

struct InferOptions {
  ModelOptions model;
  std::string input_tensor;
  std::string save;
  std::string pool = "default";
  std::vector<int> layers;
  bool norm_layers = false;
  bool overwrite = false;
};

Status run_infer(const InferOptions& o) {
  DINOV3_ASSIGN_OR_RETURN(PoolMode pool, parse_pool(o.pool));
  DINOV3_ASSIGN_OR_RETURN(Tensor input, load_input_tensor(o.input_tensor));
  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, load_model(o.model));
  ForwardOptions fo;
  fo.pool = pool;
  fo.intermediate_blocks = o.layers;
  fo.norm_intermediates = o.norm_layers;
  const auto t0 = std::chrono::steady_clock::now();
  DINOV3_ASSIGN_OR_RETURN(ForwardOutput out, model->forward(input, fo));
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  print_line("model:    " + model->config().architecture + " (" + model->directory() + ")");
  print_line("backend:  " + model->backend().name() + " on " + model->backend().device());
  print_line("input:    " + shape_to_string(input.shape));
  print_line("features: " + shape_to_string(out.features.shape) + " float32");
  print_line("pooled:   " + shape_to_string(out.pooled.shape) + " float32");
  print_line("latency:  " + std::to_string(ms) + " ms (first run, includes planning)");
  print_line("pooled[0][:5]: " + format_values(out.pooled.ptr(), std::min<size_t>(5, out.pooled.data.size())));
  if (!o.save.empty()) {
    std::vector<NamedTensor> tensors = {{"features", &out.features}, {"pooled", &out.pooled}};
    std::vector<std::string> names;
    for (const auto& im : out.intermediates) names.push_back("blocks." + std::to_string(im.block));
    for (size_t i = 0; i < out.intermediates.size(); ++i) tensors.push_back({names[i], &out.intermediates[i].tokens});
    DINOV3_RETURN_IF_ERROR(save_safetensors(o.save, tensors, {{"architecture", model->config().architecture}}, o.overwrite));
    print_line("saved:    " + o.save);
  }
  return {};
}

}  // namespace

Command add_infer_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("infer", "Run a batch through the model and print or save the outputs");
  auto opts = std::make_shared<InferOptions>();
  add_model_options(*cmd, &opts->model);
  cmd->add_option("--input-tensor", opts->input_tensor, "preprocessed input [B,3,H,W]: FILE.safetensors[:NAME]")
      ->required();
  cmd->add_option("--save", opts->save, "write features, pooled (and chosen blocks) as float32 safetensors");
  cmd->add_flag("--overwrite", opts->overwrite, "replace an existing --save file");
  cmd->add_option("--pool", opts->pool, "pooled output: avg, token or default (the config's)")->capture_default_str();
  cmd->add_option("--layers", opts->layers, "also output these blocks (negative counts from the end)")->delimiter(',');
  cmd->add_flag("--norm-layers", opts->norm_layers, "apply the final norm to the --layers outputs");
  return {cmd, [opts]() { return run_infer(*opts); }};
}

}  // namespace dinov3::cli
