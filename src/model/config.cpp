// config.json (timm hub format) -> ModelConfig, with model_args applied as timm.create_model does.
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "dinov3/model.h"
#include "io/json_util.h"
#include "model/layouts/layout.h"
#include "util/api_guard.h"

namespace dinov3 {
namespace {

using json = nlohmann::json;

struct Architecture {
  const char* name;
  int64_t embed_dim, depth, num_heads;
  MlpKind mlp;
  bool qkv_bias;
};

// timm/models/eva.py: every DINOv3 ViT shares patch 16, 4 registers, RoPE temperature 100, LN eps 1e-5.
constexpr Architecture kArchitectures[] = {
    {"vit_small_patch16_dinov3", 384, 12, 6, MlpKind::kGelu, false},
    {"vit_small_patch16_dinov3_qkvb", 384, 12, 6, MlpKind::kGelu, true},
    {"vit_small_plus_patch16_dinov3", 384, 12, 6, MlpKind::kSwiGlu, false},
    {"vit_small_plus_patch16_dinov3_qkvb", 384, 12, 6, MlpKind::kSwiGlu, true},
    {"vit_base_patch16_dinov3", 768, 12, 12, MlpKind::kGelu, false},
    {"vit_base_patch16_dinov3_qkvb", 768, 12, 12, MlpKind::kGelu, true},
    {"vit_large_patch16_dinov3", 1024, 24, 16, MlpKind::kGelu, false},
    {"vit_large_patch16_dinov3_qkvb", 1024, 24, 16, MlpKind::kGelu, true},
    {"vit_huge_plus_patch16_dinov3", 1280, 32, 20, MlpKind::kSwiGlu, false},
    {"vit_huge_plus_patch16_dinov3_qkvb", 1280, 32, 20, MlpKind::kSwiGlu, true},
    {"vit_7b_patch16_dinov3", 4096, 40, 32, MlpKind::kSwiGlu, false},
};

// Eva constructor arguments that only matter for training or initialisation: accepted and ignored.
const std::set<std::string> kIgnoredArgs = {
    "img_size", "dynamic_img_size", "dynamic_img_pad", "drop_rate", "pos_drop_rate", "patch_drop_rate",
    "proj_drop_rate", "attn_drop_rate", "drop_path_rate", "init_values", "mlp_ratio", "swiglu_align_to",
    "qkv_fused", "class_token", "no_embed_class", "pretrained_strict", "use_rot_pos_emb", "rope_rotate_half",
};

// A value as the message quotes it: short, whatever the file holds there.
std::string quote(const json& v) {
  std::string text = v.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

Status config_error(const std::string& what) { return make_error(ErrorCode::kFormatError, "config.json: " + what); }
Status unsupported(const std::string& what) { return make_error(ErrorCode::kUnsupported, "config.json: " + what); }

Result<int64_t> positive_int(const json& v, const std::string& key, int64_t max) {
  if (!v.is_number_integer() || v.get<int64_t>() <= 0 || v.get<int64_t>() > max) {
    return config_error("'" + key + "' must be an integer in [1, " + std::to_string(max) + "], got " + quote(v));
  }
  return v.get<int64_t>();
}

Result<bool> boolean(const json& v, const std::string& key) {
  if (!v.is_boolean()) return config_error("'" + key + "' must be true or false, got " + quote(v));
  return v.get<bool>();
}

Status apply_global_pool(const json& v, ModelConfig* cfg) {
  if (!v.is_string()) return config_error("'global_pool' must be a string, got " + quote(v));
  PoolMode mode;
  if (!pool_mode_from_name(v.get<std::string>(), &mode) || mode == PoolMode::kDefault)
    return unsupported("global_pool '" + v.get<std::string>() + "' is not supported (use avg or token)");
  cfg->global_pool = mode;
  return {};
}

// The model_args object overrides the architecture's defaults, like kwargs to timm.create_model.
Status apply_model_args(const json& args, ModelConfig* cfg) {
  if (!args.is_object()) return config_error("'model_args' must be an object");
  for (auto it = args.begin(); it != args.end(); ++it) {
    const std::string& key = it.key();
    const json& v = *it;
    if (key == "embed_dim") {
      DINOV3_ASSIGN_OR_RETURN(cfg->embed_dim, positive_int(v, key, 1 << 16));
    } else if (key == "depth") {
      DINOV3_ASSIGN_OR_RETURN(cfg->depth, positive_int(v, key, 1024));
    } else if (key == "num_heads") {
      DINOV3_ASSIGN_OR_RETURN(cfg->num_heads, positive_int(v, key, 4096));
    } else if (key == "patch_size") {
      DINOV3_ASSIGN_OR_RETURN(cfg->patch_size, positive_int(v, key, 1024));
    } else if (key == "in_chans") {
      DINOV3_ASSIGN_OR_RETURN(cfg->in_chans, positive_int(v, key, 64));
    } else if (key == "num_reg_tokens") {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1024)
        return config_error("'num_reg_tokens' must be an integer in [0, 1024], got " + quote(v));
      cfg->num_reg_tokens = v.get<int64_t>();
    } else if (key == "qkv_bias") {
      DINOV3_ASSIGN_OR_RETURN(cfg->q_bias, boolean(v, key));
      cfg->v_bias = cfg->q_bias;  // timm's qkv_bias: q and v biases, never k
    } else if (key == "swiglu_mlp") {
      DINOV3_ASSIGN_OR_RETURN(bool swiglu, boolean(v, key));
      cfg->mlp = swiglu ? MlpKind::kSwiGlu : MlpKind::kGelu;
    } else if (key == "rope_temperature") {
      if (!v.is_number() || !(v.get<double>() > 0.0)) return config_error("'rope_temperature' must be positive");
      cfg->rope_temperature = v.get<double>();
    } else if (key == "global_pool") {
      DINOV3_RETURN_IF_ERROR(apply_global_pool(v, cfg));
    } else if (key == "num_classes") {
      if (!v.is_number_integer() || v.get<int64_t>() != 0)
        return unsupported("num_classes " + quote(v) + ": classifier heads are not supported (use 0)");
    } else if (key == "rope_type") {
      if (v != "dinov3") return unsupported("rope_type " + quote(v) + " is not supported (only dinov3)");
    } else if (key == "use_abs_pos_emb" || key == "use_fc_norm" || key == "use_post_norm" || key == "scale_mlp" ||
               key == "scale_attn_inner") {
      if (v != false) return unsupported("'" + key + "': true is not a DINOv3 configuration this engine runs");
    } else if (kIgnoredArgs.count(key) == 0) {
      return unsupported("model_args key '" + key + "' is not a DINOv3 Eva argument this engine knows");
    }
  }
  return {};
}

Status apply_pretrained_cfg(const json& pc, DataConfig* data) {
  if (!pc.is_object()) return config_error("'pretrained_cfg' must be an object");
  if (auto it = pc.find("input_size"); it != pc.end()) {
    if (!it->is_array() || it->size() != 3) return config_error("pretrained_cfg.input_size must be [C, H, W]");
    for (const auto& d : *it)
      if (!d.is_number_integer() || d.get<int64_t>() <= 0 || d.get<int64_t>() > 65536)
        return config_error("pretrained_cfg.input_size has an invalid entry " + quote(d));
    data->channels = (*it)[0].get<int64_t>();
    data->height = (*it)[1].get<int64_t>();
    data->width = (*it)[2].get<int64_t>();
  }
  if (auto it = pc.find("interpolation"); it != pc.end()) {
    if (!it->is_string()) return config_error("pretrained_cfg.interpolation must be a string");
    data->interpolation = it->get<std::string>();
  }
  if (auto it = pc.find("crop_pct"); it != pc.end()) {
    if (!it->is_number() || !(it->get<double>() > 0.0) || it->get<double>() > 10.0)
      return config_error("pretrained_cfg.crop_pct must be a number in (0, 10]");
    data->crop_pct = it->get<double>();
  }
  if (auto it = pc.find("crop_mode"); it != pc.end()) {
    if (!it->is_string()) return config_error("pretrained_cfg.crop_mode must be a string");
    data->crop_mode = it->get<std::string>();
  }
  for (const char* key : {"mean", "std"}) {
    auto it = pc.find(key);
    if (it == pc.end()) continue;
    if (!it->is_array() || it->size() != 3) return config_error(std::string("pretrained_cfg.") + key + " must hold 3 numbers");
    std::array<float, 3>& dst = std::string(key) == "mean" ? data->mean : data->std;
    for (size_t c = 0; c < 3; ++c) {
      if (!(*it)[c].is_number()) return config_error(std::string("pretrained_cfg.") + key + " must hold numbers");
      dst[c] = (*it)[c].get<float>();
    }
  }
  // What every layout's preprocessing must satisfy (finite normalisation, a size an image can fill).
  if (Status st = layouts::check_data_config(*data); !st.ok()) return config_error("pretrained_cfg: " + st.message());
  return {};
}

Result<ModelConfig> parse_config(const std::string& json_text) {
  Result<json> parsed = io::parse_json(json_text);
  if (!parsed.ok()) return config_error(parsed.status().message());
  const json& root = *parsed;
  if (!root.is_object()) return config_error("not a JSON object");
  auto arch_it = root.find("architecture");
  if (arch_it == root.end() || !arch_it->is_string()) return config_error("no 'architecture' string");

  ModelConfig cfg;
  cfg.architecture = arch_it->get<std::string>();
  const Architecture* arch = nullptr;
  for (const auto& a : kArchitectures)
    if (cfg.architecture == a.name) arch = &a;
  if (arch == nullptr) {
    std::string known;
    for (const auto& a : kArchitectures) known += std::string(known.empty() ? "" : ", ") + a.name;
    return make_error(ErrorCode::kUnsupported,
                      "config.json: unknown architecture '" + cfg.architecture + "' (known: " + known + ")");
  }
  cfg.embed_dim = arch->embed_dim;
  cfg.depth = arch->depth;
  cfg.num_heads = arch->num_heads;
  cfg.mlp = arch->mlp;
  cfg.q_bias = cfg.v_bias = arch->qkv_bias;

  if (auto it = root.find("num_classes"); it != root.end() && !(it->is_number_integer() && it->get<int64_t>() == 0))
    return unsupported("num_classes " + quote(*it) + ": classifier heads are not supported (use 0)");
  if (auto it = root.find("global_pool"); it != root.end()) DINOV3_RETURN_IF_ERROR(apply_global_pool(*it, &cfg));
  if (auto it = root.find("model_args"); it != root.end()) DINOV3_RETURN_IF_ERROR(apply_model_args(*it, &cfg));
  if (auto it = root.find("pretrained_cfg"); it != root.end())
    DINOV3_RETURN_IF_ERROR(apply_pretrained_cfg(*it, &cfg.data));

  if (cfg.embed_dim % cfg.num_heads != 0) {
    return config_error("embed_dim " + std::to_string(cfg.embed_dim) + " is not divisible by num_heads " +
                        std::to_string(cfg.num_heads));
  }
  // 2-D RoPE splits each head into four quarters (sin/cos over height and width).
  if (cfg.head_dim() % 4 != 0) {
    return config_error("head_dim " + std::to_string(cfg.head_dim()) + " must be a multiple of 4 for 2-D RoPE");
  }
  DINOV3_ASSIGN_OR_RETURN(cfg.rope_periods, rope_periods_from_temperature(cfg.head_dim(), cfg.rope_temperature));
  if (cfg.data.channels != cfg.in_chans)
    return config_error("pretrained_cfg.input_size has " + std::to_string(cfg.data.channels) +
                        " channels, the model takes " + std::to_string(cfg.in_chans));
  return cfg;
}

}  // namespace

const char* pool_mode_name(PoolMode mode) {
  switch (mode) {
    case PoolMode::kDefault: return "default";
    case PoolMode::kAvg: return "avg";
    case PoolMode::kToken: return "token";
  }
  return "?";
}

bool pool_mode_from_name(const std::string& name, PoolMode* out) {
  for (PoolMode m : {PoolMode::kDefault, PoolMode::kAvg, PoolMode::kToken}) {
    if (name == pool_mode_name(m)) {
      *out = m;
      return true;
    }
  }
  return false;
}

const char* layout_name(CheckpointLayout layout) {
  switch (layout) {
    case CheckpointLayout::kTimm: return "timm";
    case CheckpointLayout::kMeta: return "meta";
    case CheckpointLayout::kHuggingFace: return "hf";
  }
  return "?";
}

std::string architecture_name_for(const ModelConfig& c) {
  for (const auto& a : kArchitectures) {
    if (a.embed_dim == c.embed_dim && a.depth == c.depth && a.num_heads == c.num_heads && a.mlp == c.mlp &&
        a.qkv_bias == (c.q_bias && c.v_bias))
      return a.name;
  }
  return "dinov3_vit";
}

std::vector<std::string> known_architectures() {
  std::vector<std::string> names;
  for (const auto& a : kArchitectures) names.emplace_back(a.name);
  return names;
}

Result<ModelConfig> parse_model_config(const std::string& json_text) {
  return guard_api_call("config.json", [&] { return parse_config(json_text); });
}

}  // namespace dinov3

namespace dinov3 {

double forward_flops(const ModelConfig& c, int64_t height, int64_t width) {
  const ScopedDefaultFloatEnv float_env;
  if (c.patch_size < 1) return 0.0;  // not a model (parse_model_config refuses it)
  const double P = static_cast<double>((height / c.patch_size) * (width / c.patch_size));
  const double T = static_cast<double>(c.tokens_for(height, width)), D = static_cast<double>(c.embed_dim);
  const double hidden = static_cast<double>(c.mlp_hidden);
  const double patch = 2.0 * P * D * static_cast<double>(c.in_chans * c.patch_size * c.patch_size);
  const double mlp_in = c.mlp == MlpKind::kGelu ? 1.0 : 2.0;  // SwiGLU has gate and up projections
  const double block = 2.0 * T * D * 3.0 * D        // qkv
                       + 2.0 * 2.0 * T * T * D      // q k^T and attention x v
                       + 2.0 * T * D * D            // proj
                       + 2.0 * T * D * hidden * (mlp_in + 1.0);  // fc1 (+ gate), fc2
  return patch + static_cast<double>(c.depth) * block;
}

}  // namespace dinov3
