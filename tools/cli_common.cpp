#include "cli_common.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>
#include <filesystem>
#include <sstream>

#include "dinov3/hub.h"
#include "dinov3/int8_plan.h"
#include "dinov3/pipeline.h"
#include "dinov3/tensor_file.h"

namespace dinov3::cli {

namespace {

namespace fs = std::filesystem;

// Bundled assets: $DINOV3_ASSETS, else beside the installed binary (../share/dinov3), else the source tree.
std::string assets_dir() {
  if (const char* env = std::getenv("DINOV3_ASSETS"); env != nullptr && *env) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path installed = exe.parent_path().parent_path() / "share" / "dinov3";
    if (fs::is_directory(installed, ec)) return installed.string();
  }
  return DINOV3_ASSETS_DIR;
}

constexpr const char* kRandomWeightsMarker = "RANDOM_WEIGHTS";

}  // namespace

void add_model_options(CLI::App& cmd, ModelOptions* opts, bool with_backend) {
  cmd.add_option("--model,-m", opts->model,
                 std::string("model: a timm or Hugging Face folder, Meta's .pth, or a hub id (default ") +
                     kDefaultModelId + ", found in the Hugging Face cache or /opt/atomgit/weight; without it, a "
                     "bundled test model)");
  if (!with_backend) return;
  cmd.add_option("--backend,-b", opts->backend, "compute backend")->capture_default_str();
  cmd.add_option("--threads,-t", opts->threads, "worker threads (0: one per core)")->capture_default_str();
  cmd.add_option("--precision", opts->precision, "fp32, bf16 or int8 (backend permitting)")->capture_default_str();
  cmd.add_option("--int8-plan", opts->int8_plan,
                 "with --precision int8: the per-layer plan `dinov3 calibrate` wrote (int8 where it measured "
                 "safe, bf16 elsewhere); without it every linear layer runs int8");
}

Result<LoadedModel> load_model(const ModelOptions& opts, const std::string& backend,
                               std::shared_ptr<OpProfile> profile) {
  std::string dir;
  if (opts.model.empty()) {
    Result<ModelLocation> loc = resolve_model(kDefaultModelId);
    dir = loc.ok() ? loc->dir : assets_dir() + "/models/dinov3-tiny-random";
  } else {
    DINOV3_ASSIGN_OR_RETURN(ModelLocation loc, resolve_model(opts.model));
    dir = loc.dir;
  }
  LoadOptions lo;
  lo.backend = backend;
  lo.backend_options.threads = opts.threads;
  lo.op_profile = std::move(profile);
  if (!precision_from_name(opts.precision, &lo.backend_options.precision)) {
    return make_error(ErrorCode::kInvalidArgument, "unknown precision '" + opts.precision + "' (fp32, bf16, int8)");
  }
  LoadedModel m;
  if (!opts.int8_plan.empty()) {
    DINOV3_ASSIGN_OR_RETURN(Int8Plan plan, read_int8_plan(opts.int8_plan));
    m.int8_plan_file = opts.int8_plan;
    m.int8_plan = lo.int8_plan = std::make_shared<const Int8Plan>(std::move(plan));
  }
  DINOV3_ASSIGN_OR_RETURN(m.model, Model::load(dir, lo));
  std::error_code ec;
  m.random_weights = fs::exists(fs::path(dir) / kRandomWeightsMarker, ec);
  return m;
}

std::string precision_label(const LoadedModel& m) {
  std::string label = precision_name(m.model->backend().precision());
  if (m.int8_plan) {
    label += " (plan " + m.int8_plan_file + ": " + std::to_string(m.int8_plan->int8_layers()) + " of " +
             std::to_string(m.int8_plan->layers.size()) + " linear layers int8, weights rounded by " +
             m.int8_plan->rounding + ", the rest bf16)";
  }
  return label;
}

void describe_model_source(const LoadedModel& m) {
  if (!m.random_weights) return;
  std::fprintf(stderr,
      "NOTE: %s holds a small test checkpoint with RANDOM weights; its numbers mean nothing.\n"
      "      Put the real weights (%s) in the Hugging Face cache or pass --model DIR.\n",
      m.model->directory().c_str(), kDefaultModelId);
}

void add_preprocess_options(CLI::App& cmd, PreprocessOverrides* opts) {
  cmd.add_option("--interpolation", opts->interpolation, "override the resize filter: bicubic or bilinear");
  cmd.add_option("--crop-mode", opts->crop_mode, "override the geometry: center, squash or border");
  cmd.add_option("--crop-pct", opts->crop_pct, "override the crop fraction (resize size = input size / crop_pct)");
  cmd.add_option("--mean", opts->mean, "override the normalisation mean (3 values)")->expected(3)->delimiter(',');
  cmd.add_option("--std", opts->std, "override the normalisation std (3 values)")->expected(3)->delimiter(',');
}

Result<ModelConfig> with_preprocess_overrides(const ModelConfig& config, const PreprocessOverrides& o) {
  ModelConfig c = config;
  DataConfig& d = c.data;
  Interpolation interpolation;
  CropMode crop_mode;
  if (!o.interpolation.empty() && !parse_interpolation(o.interpolation, &interpolation))
    return make_error(ErrorCode::kInvalidArgument, "--interpolation must be bicubic or bilinear, got '" + o.interpolation + "'");
  if (!o.crop_mode.empty() && !parse_crop_mode(o.crop_mode, &crop_mode))
    return make_error(ErrorCode::kInvalidArgument, "--crop-mode must be center, squash or border, got '" + o.crop_mode + "'");
  if (!o.interpolation.empty()) d.interpolation = o.interpolation;
  if (!o.crop_mode.empty()) d.crop_mode = o.crop_mode;
  if (o.crop_pct) {
    if (!(*o.crop_pct > 0 && *o.crop_pct <= 10)) return make_error(ErrorCode::kInvalidArgument, "--crop-pct must be in (0, 10]");
    d.crop_pct = *o.crop_pct;
  }
  for (const auto& [values, dst, name] : {std::tuple{&o.mean, &d.mean, "--mean"}, std::tuple{&o.std, &d.std, "--std"}}) {
    if (values->empty()) continue;
    if (values->size() != 3) return make_error(ErrorCode::kInvalidArgument, std::string(name) + " takes 3 values");
    for (size_t ch = 0; ch < 3; ++ch) {
      const float v = (*values)[ch];
      if (!std::isfinite(v) || (dst == &d.std && !(v > 0)))
        return make_error(ErrorCode::kInvalidArgument, std::string(name) + " values must be finite" +
                                                           (dst == &d.std ? " and positive" : ""));
      (*dst)[ch] = v;
    }
  }
  if (o.given()) d.source += " with command-line overrides";
  return c;
}

nlohmann::ordered_json preprocess_json(const PreprocessConfig& p) {
  return {{"input_size", {3, p.height, p.width}}, {"interpolation", interpolation_name(p.interpolation)},
          {"crop_mode", crop_mode_name(p.crop_mode)}, {"crop_pct", p.crop_pct}, {"rescale_factor", p.rescale_factor},
          {"normalize", p.normalize}, {"mean", p.mean}, {"std", p.std}};
}

void add_size_options(CLI::App& cmd, InputSize* size) {
  auto* s = cmd.add_option("--size", size->size,
                           "square model input: each side S rounded to the nearest multiple of the patch size "
                           "(16; halves up, at least one patch)");
  auto* l = cmd.add_option("--long-side", size->long_side,
                           "model input keeping the image's aspect ratio: longer side L, shorter L * short / long, "
                           "each rounded as --size");
  s->check(CLI::PositiveNumber);
  l->check(CLI::PositiveNumber);
  s->excludes(l);
}

void add_decode_options(CLI::App& cmd, bool* exif_transpose, int64_t* max_pixels, const char* verb) {
  cmd.add_flag("--exif-transpose", *exif_transpose, "apply the EXIF orientation (timm does not)");
  cmd.add_option("--max-pixels", *max_pixels, std::string(verb) + " images with more pixels than this")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, std::numeric_limits<int64_t>::max()));
}

void add_input_options(CLI::App& cmd, InputOptions* opts) {
  cmd.add_option("--image,-i", opts->images, "image file(s), run as one batch (JPEG, PNG, WebP, BMP)");
  cmd.add_option("--input-tensor", opts->input_tensor, "preprocessed input [B,3,H,W]: FILE.safetensors[:NAME]");
  add_decode_options(cmd, &opts->exif_transpose, &opts->max_pixels, "refuse");
  add_preprocess_options(cmd, &opts->preprocess);
  add_size_options(cmd, &opts->size);
}

std::vector<std::string> bundled_sample_images() {
  const std::string dir = assets_dir() + "/images/";
  return {dir + "rocket.jpg", dir + "chelsea.png", dir + "camera.png"};
}

Result<Tensor> load_inputs(const InputOptions& opts, const Model& model, std::vector<std::string>* labels) {
  if (!opts.images.empty() && !opts.input_tensor.empty()) {
    return make_error(ErrorCode::kInvalidArgument, "give --image or --input-tensor, not both");
  }
  labels->clear();
  if (!opts.input_tensor.empty() && opts.size.given()) {
    return make_error(ErrorCode::kInvalidArgument, "--size and --long-side apply to images, not to --input-tensor");
  }
  if (!opts.input_tensor.empty()) {
    DINOV3_ASSIGN_OR_RETURN(Tensor t, load_input_tensor(opts.input_tensor));
    if (t.shape.size() == 3) t.shape.insert(t.shape.begin(), 1);  // one [C, H, W] image
    for (int64_t b = 0; b < (t.shape.empty() ? 0 : t.shape[0]); ++b)
      labels->push_back(opts.input_tensor + "[" + std::to_string(b) + "]");
    return t;
  }
  if (opts.images.empty()) return make_error(ErrorCode::kInvalidArgument, "no input: give --image or --input-tensor");
  DINOV3_ASSIGN_OR_RETURN(const ModelConfig config, with_preprocess_overrides(model.config(), opts.preprocess));
  DecodeOptions dec;
  dec.exif_transpose = opts.exif_transpose;
  dec.max_pixels = opts.max_pixels;
  *labels = opts.images;
  return load_image_batch(opts.images, config, opts.size, dec);
}

// FILE[:NAME] as (file, tensor name; "input" by default). A path that itself contains ':' is taken whole
// when it names an existing file.
std::pair<std::string, std::string> split_tensor_spec(const std::string& spec) {
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && colon + 1 < spec.size()) {
    std::error_code ec;
    if (!fs::exists(spec, ec)) return {spec.substr(0, colon), spec.substr(colon + 1)};
  }
  return {spec, "input"};
}

std::vector<std::string> input_files(const InputOptions& opts, const Model& model) {
  std::vector<std::string> files = opts.images;
  if (!opts.input_tensor.empty()) files.push_back(split_tensor_spec(opts.input_tensor).first);
  for (std::string& f : model_files(model.directory())) files.push_back(std::move(f));
  return files;
}

Result<Tensor> load_input_tensor(const std::string& spec) {
  const auto [path, name] = split_tensor_spec(spec);
  DINOV3_ASSIGN_OR_RETURN(TensorArchive archive, open_safetensors(path));
  const RawTensor* raw = archive.find(name);
  if (raw == nullptr) {
    std::string names;
    for (const auto& t : archive.tensors()) names += (names.empty() ? "" : ", ") + t.name;
    return make_error(ErrorCode::kNotFound, path + ": no tensor named '" + name + "' (has: " + names + ")");
  }
  return archive.load_f32(*raw);
}

Result<PoolMode> parse_pool(const std::string& name) {
  PoolMode mode;
  if (!pool_mode_from_name(name, &mode)) {
    return make_error(ErrorCode::kInvalidArgument, "unknown pooling '" + name + "' (avg, token or default)");
  }
  return mode;
}

std::string format_values(const float* v, size_t n) {
  std::ostringstream ss;
  ss.precision(6);
  ss << "[";
  for (size_t i = 0; i < n; ++i) ss << (i ? ", " : "") << v[i];
  ss << "]";
  return ss.str();
}

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2f ms", ms);
  return buf;
}

std::string token_breakdown(const ModelConfig& c, int64_t height, int64_t width) {
  const int64_t patches = (height / c.patch_size) * (width / c.patch_size);
  return "(1 cls + " + std::to_string(c.num_reg_tokens) + " registers + " + std::to_string(patches) + " patches)";
}

}  // namespace dinov3::cli
