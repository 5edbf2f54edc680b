// dinov3 preprocess: an image file to the exact tensor timm's eval transform gives.
#include "cli_common.h"
#include "commands.h"
#include "dinov3/pipeline.h"
#include "dinov3/tensor_file.h"

namespace dinov3::cli {

namespace {

struct PreprocessOptions {
  ModelOptions model;
  InputOptions input;
  std::string save;
  bool overwrite = false;
};

Result<int> run_preprocess(const PreprocessOptions& o) {
  if (o.input.images.empty()) return make_error(ErrorCode::kInvalidArgument, "give --image");
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.model, "reference"));
  DINOV3_RETURN_IF_ERROR(check_not_written_over(o.save, input_files(o.input, *loaded.model), "an input"));
  std::vector<std::string> labels;
  DINOV3_ASSIGN_OR_RETURN(Tensor input, load_inputs(o.input, *loaded.model, &labels));
  std::printf("input:  %s from %zu image(s)\n", shape_to_string(input.shape).c_str(), labels.size());
  DINOV3_RETURN_IF_ERROR(save_safetensors(o.save, {{"input", &input}}, {}, o.overwrite));
  std::printf("saved:  %s (tensor 'input')\n", o.save.c_str());
  return 0;
}

}  // namespace

Command add_preprocess_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("preprocess", "Decode and preprocess images into the model's input tensor");
  auto opts = std::make_shared<PreprocessOptions>();
  add_model_options(*cmd, &opts->model, /*with_backend=*/false);
  add_input_options(*cmd, &opts->input);
  cmd->add_option("--save", opts->save, "output .safetensors (tensor 'input', [B,3,H,W])")->required();
  cmd->add_flag("--overwrite", opts->overwrite, "replace an existing --save file");
  return {cmd, [opts]() { return run_preprocess(*opts); }};
}

}  // namespace dinov3::cli
