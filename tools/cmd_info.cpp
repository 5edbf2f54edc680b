// dinov3 info: what a checkpoint folder holds, without running it.
#include "cli_common.h"
#include "commands.h"

namespace dinov3::cli {

Command add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, sizes, weights and preprocessing");
  auto opts = std::make_shared<ModelOptions>();
  add_model_options(*cmd, opts.get(), /*with_backend=*/false);
  return {cmd, [opts]() -> Status {
            ModelOptions o = *opts;
            o.backend = "reference";  // loading checks every tensor; the reference backend is enough for that
            DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, load_model(o));
            const ModelConfig& c = model->config();
            const WeightsInfo& w = model->weights_info();
            const DataConfig& d = c.data;
            const int64_t gh = d.height / c.patch_size, gw = d.width / c.patch_size;
            print_line("model:         " + model->directory());
            print_line("architecture:  " + c.architecture);
            print_line("embed_dim:     " + std::to_string(c.embed_dim));
            print_line("depth:         " + std::to_string(c.depth));
            print_line("heads:         " + std::to_string(c.num_heads) + " (head_dim " + std::to_string(c.head_dim()) + ")");
            print_line(std::string("mlp:           ") + (c.mlp == MlpKind::kGelu ? "GELU" : "SwiGLU") + ", hidden " +
                       std::to_string(c.mlp_hidden));
            print_line(std::string("qkv bias:      ") + (c.qkv_bias ? "q and v" : "none"));
            print_line("patch:         " + std::to_string(c.patch_size) + ", registers " + std::to_string(c.num_reg_tokens));
            print_line("tokens:        " + std::to_string(c.tokens_for(d.height, d.width)) + " at " +
                       std::to_string(d.height) + "x" + std::to_string(d.width) + " (1 cls + " +
                       std::to_string(c.num_reg_tokens) + " registers + " + std::to_string(gh * gw) + " patches)");
            print_line(std::string("global_pool:   ") + pool_mode_name(c.global_pool));
            print_line("parameters:    " + std::to_string(w.parameters));
            print_line("weights:       " + w.path + " (" + w.format + ", " + w.dtype + ", " +
                       std::to_string(w.bytes) + " bytes)");
            print_line("preprocess:    resize " + d.interpolation + ", crop_pct " + std::to_string(d.crop_pct) +
                       ", crop_mode " + d.crop_mode + ", input " + std::to_string(d.channels) + "x" +
                       std::to_string(d.height) + "x" + std::to_string(d.width));
            print_line("normalize:     mean " + format_values(d.mean.data(), 3) + ", std " + format_values(d.std.data(), 3));
            return {};
          }};
}

}  // namespace dinov3::cli
