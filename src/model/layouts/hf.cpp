// Hugging Face transformers folders (DINOv3ViTModel): config.json with model_type dinov3_vit (missing keys
// take DINOv3ViTConfig's defaults, as transformers does), weights in model.safetensors or shards, and
// preprocessor_config.json (the image processor: squash resize to `size` with Pillow's `resample`, then
// rescale and normalise). RoPE: inv_freq = 1 / theta ** arange(0, 1, 4 / hd) in float32. Pooling default:
// the CLS token (pooler_output).
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/file_util.h"
#include "io/json_util.h"
#include "model/layouts/layout.h"

namespace dinov3::layouts {
namespace {

using json = nlohmann::json;

Status hf_error(const std::string& file, const std::string& what) {
  return make_error(ErrorCode::kFormatError, file + ": " + what);
}
Status hf_unsupported(const std::string& file, const std::string& what) {
  return make_error(ErrorCode::kUnsupported, file + ": " + what);
}

// Reads an optional key of `root`; absent or null keeps `*out` (the transformers default).
struct Reader {
  const json& root;
  std::string file;

  Status integer(const char* key, int64_t lo, int64_t hi, int64_t* out) const {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_number_integer() || it->get<int64_t>() < lo || it->get<int64_t>() > hi)
      return hf_error(file, std::string("'") + key + "' must be an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "], got " + it->dump());
    *out = it->get<int64_t>();
    return {};
  }
  Status boolean(const char* key, bool* out) const {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_boolean()) return hf_error(file, std::string("'") + key + "' must be true or false, got " + it->dump());
    *out = it->get<bool>();
    return {};
  }
  Status positive(const char* key, double* out) const {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_number() || !(it->get<double>() > 0.0) || !std::isfinite(it->get<double>()))
      return hf_error(file, std::string("'") + key + "' must be a positive number, got " + it->dump());
    *out = it->get<double>();
    return {};
  }
  Status string(const char* key, std::string* out) const {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_string()) return hf_error(file, std::string("'") + key + "' must be a string, got " + it->dump());
    *out = it->get<std::string>();
    return {};
  }
  Status triple(const char* key, std::array<float, 3>* out) const {
    const auto it = root.find(key);
    if (it == root.end() || it->is_null()) return {};
    if (!it->is_array() || it->size() != 3) return hf_error(file, std::string("'") + key + "' must hold 3 numbers");
    for (size_t c = 0; c < 3; ++c) {
      if (!(*it)[c].is_number()) return hf_error(file, std::string("'") + key + "' must hold 3 numbers");
      (*out)[c] = (*it)[c].get<float>();
    }
    return {};
  }
};

// A JSON object from a config file's text, nested no deeper than io::parse_json allows.
Result<json> parse_object(const std::string& text, const std::string& path) {
  Result<json> root = io::parse_json(text);
  if (!root.ok()) return root.status().with_context(path);
  if (!root->is_object()) return hf_error(path, "not a JSON object");
  return root;
}

Result<json> read_json(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(const std::string text, read_text_file(path));
  return parse_object(text, path);
}

Status parse_config(const json& root, const std::string& file, ModelConfig* c) {
  const Reader r{root, file};
  std::string model_type;
  DINOV3_RETURN_IF_ERROR(r.string("model_type", &model_type));
  if (model_type != "dinov3_vit")
    return hf_unsupported(file, "model_type '" + model_type + "' is not a DINOv3 ViT (expected dinov3_vit)");
  // DINOv3ViTConfig's defaults.
  c->embed_dim = 384;
  c->depth = 12;
  c->num_heads = 6;
  c->mlp_hidden = 1536;
  c->num_reg_tokens = 0;
  c->q_bias = true;
  c->k_bias = false;
  c->v_bias = true;
  c->proj_bias = c->mlp_bias = true;
  bool gated = false;
  std::string act = "gelu";
  double eps = 1e-5, theta = 100.0;
  DINOV3_RETURN_IF_ERROR(r.integer("hidden_size", 1, 1 << 16, &c->embed_dim));
  DINOV3_RETURN_IF_ERROR(r.integer("num_hidden_layers", 1, 1024, &c->depth));
  DINOV3_RETURN_IF_ERROR(r.integer("num_attention_heads", 1, 4096, &c->num_heads));
  DINOV3_RETURN_IF_ERROR(r.integer("intermediate_size", 1, 1 << 20, &c->mlp_hidden));
  DINOV3_RETURN_IF_ERROR(r.integer("num_register_tokens", 0, 1024, &c->num_reg_tokens));
  DINOV3_RETURN_IF_ERROR(r.integer("patch_size", 1, 1024, &c->patch_size));
  DINOV3_RETURN_IF_ERROR(r.integer("num_channels", 1, 64, &c->in_chans));
  DINOV3_RETURN_IF_ERROR(r.boolean("use_gated_mlp", &gated));
  DINOV3_RETURN_IF_ERROR(r.boolean("query_bias", &c->q_bias));
  DINOV3_RETURN_IF_ERROR(r.boolean("key_bias", &c->k_bias));
  DINOV3_RETURN_IF_ERROR(r.boolean("value_bias", &c->v_bias));
  DINOV3_RETURN_IF_ERROR(r.boolean("proj_bias", &c->proj_bias));
  DINOV3_RETURN_IF_ERROR(r.boolean("mlp_bias", &c->mlp_bias));
  DINOV3_RETURN_IF_ERROR(r.string("hidden_act", &act));
  DINOV3_RETURN_IF_ERROR(r.positive("layer_norm_eps", &eps));
  DINOV3_RETURN_IF_ERROR(r.positive("rope_theta", &theta));
  c->mlp = gated ? MlpKind::kSwiGlu : MlpKind::kGelu;
  // The engine's MLPs: exact GELU, and SiLU-gated (SwiGLU).
  const char* expected_act = gated ? "silu" : "gelu";
  if (act != expected_act) {
    return hf_unsupported(file, "hidden_act '" + act + "' with use_gated_mlp " + (gated ? "true" : "false") +
                                    " is not supported (expected '" + expected_act + "')");
  }
  c->ln_eps = static_cast<float>(eps);
  if (c->embed_dim % c->num_heads != 0)
    return hf_error(file, "hidden_size " + std::to_string(c->embed_dim) + " is not divisible by num_attention_heads " +
                              std::to_string(c->num_heads));
  if (c->head_dim() % 4 != 0)
    return hf_error(file, "head dim " + std::to_string(c->head_dim()) + " must be a multiple of 4 for 2-D RoPE");
  // transformers: inv_freq = 1 / base ** torch.arange(0, 1, 4 / head_dim) in float32.
  c->rope_temperature = theta;
  const int64_t quarter = c->head_dim() / 4;
  const float step = 4.0f / static_cast<float>(c->head_dim());
  c->rope_periods.resize(static_cast<size_t>(quarter));
  for (int64_t k = 0; k < quarter; ++k) {
    const float exponent = static_cast<float>(k) * step;
    const float inv_freq = 1.0f / std::pow(static_cast<float>(theta), exponent);
    c->rope_periods[k] = 1.0 / static_cast<double>(inv_freq);
  }
  c->architecture = architecture_name_for(*c);
  c->global_pool = PoolMode::kToken;
  return {};
}

// preprocessor_config.json: DINOv3ViTImageProcessor(Fast). Geometry: resize both sides to size (no crop).
Status parse_preprocessor(const json& root, const std::string& file, DataConfig* d) {
  const Reader r{root, file};
  bool do_resize = true, do_rescale = true, do_normalize = true, do_center_crop = false;
  DINOV3_RETURN_IF_ERROR(r.boolean("do_resize", &do_resize));
  DINOV3_RETURN_IF_ERROR(r.boolean("do_rescale", &do_rescale));
  DINOV3_RETURN_IF_ERROR(r.boolean("do_normalize", &do_normalize));
  DINOV3_RETURN_IF_ERROR(r.boolean("do_center_crop", &do_center_crop));
  if (!do_resize)
    return hf_unsupported(file, "do_resize false is not supported (images of different sizes cannot share a batch)");
  if (do_center_crop) return hf_unsupported(file, "do_center_crop true is not supported (DINOv3 processors resize only)");
  if (const auto it = root.find("size"); it != root.end() && !it->is_null()) {
    if (!it->is_object() || !it->contains("height") || !it->contains("width"))
      return hf_unsupported(file, "'size' must be {\"height\": H, \"width\": W}, got " + it->dump());
    const Reader size{*it, file + " size"};
    DINOV3_RETURN_IF_ERROR(size.integer("height", 1, 65536, &d->height));
    DINOV3_RETURN_IF_ERROR(size.integer("width", 1, 65536, &d->width));
  }
  int64_t resample = 2;  // PIL.Image.BILINEAR
  DINOV3_RETURN_IF_ERROR(r.integer("resample", 0, 5, &resample));
  if (resample == 2) {
    d->interpolation = "bilinear";
  } else if (resample == 3) {
    d->interpolation = "bicubic";
  } else {
    return hf_unsupported(file, "resample " + std::to_string(resample) +
                                    " is not supported (2 = bilinear or 3 = bicubic, Pillow's codes)");
  }
  d->rescale_factor = 1.0 / 255.0;
  DINOV3_RETURN_IF_ERROR(r.positive("rescale_factor", &d->rescale_factor));
  if (!do_rescale) d->rescale_factor = 1.0;
  d->normalize = do_normalize;
  DINOV3_RETURN_IF_ERROR(r.triple("image_mean", &d->mean));
  DINOV3_RETURN_IF_ERROR(r.triple("image_std", &d->std));
  return {};
}

}  // namespace

Result<Checkpoint> open_hf(const std::string& dir, const std::string& config_text) {
  const std::string config_file = dir + "/config.json";
  DINOV3_ASSIGN_OR_RETURN(const json root, parse_object(config_text, config_file));
  Checkpoint ckpt;
  ModelConfig& c = ckpt.config;
  c.layout = CheckpointLayout::kHuggingFace;
  DINOV3_RETURN_IF_ERROR(parse_config(root, config_file, &c));

  // The image processor's settings; without the file, DINOv3ViTImageProcessor's defaults.
  DataConfig& d = c.data;
  d.height = d.width = 224;
  d.interpolation = "bilinear";
  d.crop_mode = "squash";
  d.crop_pct = 1.0;
  d.channels = c.in_chans;
  const std::string pre_file = dir + "/preprocessor_config.json";
  if (file_exists(pre_file)) {
    DINOV3_ASSIGN_OR_RETURN(const json pre, read_json(pre_file));
    DINOV3_RETURN_IF_ERROR(parse_preprocessor(pre, pre_file, &d));
    d.source = "preprocessor_config.json";
  } else {
    d.source = "DINOv3ViTImageProcessor defaults (no preprocessor_config.json)";
  }
  DINOV3_ASSIGN_OR_RETURN(ckpt.archive, open_folder_weights(dir, &ckpt.format));
  return ckpt;
}

}  // namespace dinov3::layouts
