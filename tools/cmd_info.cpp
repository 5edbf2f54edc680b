// dinov3 info: what a checkpoint folder holds, without running it.
#include "cli_common.h"
#include "commands.h"

namespace dinov3::cli {

namespace {

Result<int> run_info(const ModelOptions& opts) {
  // Loading checks every tensor; the reference backend is enough for that.
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(opts, "reference"));
  describe_model_source(loaded);
  const Model& model = *loaded.model;
  const ModelConfig& c = model.config();
  const WeightsInfo& w = model.weights_info();
  const DataConfig& d = c.data;
  auto line = [](const std::string& key, const std::string& value) {
    std::printf("%-14s%s\n", (key + ":").c_str(), value.c_str());
  };
  line("model", model.directory());
  line("layout", std::string(layout_name(c.layout)) + (c.layout == CheckpointLayout::kTimm ? " (hub folder)"
                                                       : c.layout == CheckpointLayout::kMeta ? " (Meta's .pth)"
                                                                                          : " (transformers folder)"));
  line("architecture", c.architecture);
  line("embed_dim", std::to_string(c.embed_dim));
  line("depth", std::to_string(c.depth));
  line("heads", std::to_string(c.num_heads) + " (head_dim " + std::to_string(c.head_dim()) + ")");
  line("mlp", std::string(c.mlp == MlpKind::kGelu ? "GELU" : "SwiGLU") + ", hidden " + std::to_string(c.mlp_hidden));
  std::string bias;
  for (const auto& [on, name] : {std::pair{c.q_bias, "q"}, std::pair{c.k_bias, "k"}, std::pair{c.v_bias, "v"}})
    if (on) bias += (bias.empty() ? "" : ", ") + std::string(name);
  line("qkv bias", bias.empty() ? "none" : bias);
  line("ln eps", format_values(&c.ln_eps, 1));
  std::vector<float> periods(c.rope_periods.begin(), c.rope_periods.end());
  line("rope periods", format_values(periods.data(), periods.size()) +
                           (c.layout == CheckpointLayout::kMeta ? " (stored in the checkpoint)" : ""));
  line("patch", std::to_string(c.patch_size) + ", registers " + std::to_string(c.num_reg_tokens));
  line("tokens", std::to_string(c.tokens_for(d.height, d.width)) + " at " + std::to_string(d.height) + "x" +
                     std::to_string(d.width) + " " + token_breakdown(c, d.height, d.width));
  line("pool", std::string(pool_mode_name(c.global_pool)) + " (default; --pool overrides)");
  line("parameters", std::to_string(w.parameters));
  line("weights", w.path + " (" + w.format + ", " + w.dtype + ", " + std::to_string(w.bytes) + " bytes)");
  char crop[64];
  std::snprintf(crop, sizeof(crop), "%g, rescale %.9g", d.crop_pct, d.rescale_factor);
  line("preprocess", "resize " + d.interpolation + ", crop_pct " + crop + ", crop_mode " + d.crop_mode + ", input " +
                         std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" + std::to_string(d.width));
  line("normalize", d.normalize ? "mean " + format_values(d.mean.data(), 3) + ", std " + format_values(d.std.data(), 3)
                                : std::string("none"));
  line("from", d.source);
  return 0;
}

}  // namespace

Command add_info_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Show a model's architecture, sizes, weights and preprocessing");
  auto opts = std::make_shared<ModelOptions>();
  add_model_options(*cmd, opts.get(), /*with_backend=*/false);
  return {cmd, [opts]() { return run_info(*opts); }};
}

}  // namespace dinov3::cli
