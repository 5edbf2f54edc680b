#include "cli_common.h"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "dinov3/hub.h"
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
                 std::string("model folder or hub id (default ") + kDefaultModelId +
                     ", found in the Hugging Face cache or /opt/atomgit/weight; without it, a bundled test model)");
  if (!with_backend) return;
  cmd.add_option("--backend,-b", opts->backend, "compute backend")->capture_default_str();
  cmd.add_option("--threads,-t", opts->threads, "worker threads (0: one per core)")->capture_default_str();
  cmd.add_option("--precision", opts->precision, "fp32, bf16 or int8 (backend permitting)")->capture_default_str();
}

Result<LoadedModel> load_model(const ModelOptions& opts, const std::string& backend) {
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
  if (!precision_from_name(opts.precision, &lo.backend_options.precision)) {
    return make_error(ErrorCode::kInvalidArgument, "unknown precision '" + opts.precision + "' (fp32, bf16, int8)");
  }
  LoadedModel m;
  DINOV3_ASSIGN_OR_RETURN(m.model, Model::load(dir, lo));
  std::error_code ec;
  m.random_weights = fs::exists(fs::path(dir) / kRandomWeightsMarker, ec);
  return m;
}

void describe_model_source(const LoadedModel& m) {
  if (!m.random_weights) return;
  std::fprintf(stderr,
      "NOTE: %s holds a small test checkpoint with RANDOM weights; its numbers mean nothing.\n"
      "      Put the real weights (%s) in the Hugging Face cache or pass --model DIR.\n",
      m.model->directory().c_str(), kDefaultModelId);
}

void add_input_options(CLI::App& cmd, InputOptions* opts) {
  cmd.add_option("--image,-i", opts->images, "image file(s), run as one batch (JPEG, PNG, WebP, BMP)");
  cmd.add_option("--input-tensor", opts->input_tensor, "preprocessed input [B,3,H,W]: FILE.safetensors[:NAME]");
  cmd.add_flag("--exif-transpose", opts->exif_transpose, "apply the EXIF orientation (timm does not)");
  cmd.add_option("--max-pixels", opts->max_pixels, "refuse images with more pixels than this")->capture_default_str();
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
  if (!opts.input_tensor.empty()) {
    DINOV3_ASSIGN_OR_RETURN(Tensor t, load_input_tensor(opts.input_tensor));
    if (t.shape.size() == 3) t.shape.insert(t.shape.begin(), 1);  // one [C, H, W] image
    for (int64_t b = 0; b < (t.shape.empty() ? 0 : t.shape[0]); ++b)
      labels->push_back(opts.input_tensor + "[" + std::to_string(b) + "]");
    return t;
  }
  if (opts.images.empty()) return make_error(ErrorCode::kInvalidArgument, "no input: give --image or --input-tensor");
  DINOV3_ASSIGN_OR_RETURN(PreprocessConfig pc, preprocess_config_for(model.config()));
  DecodeOptions dec;
  dec.exif_transpose = opts.exif_transpose;
  dec.max_pixels = opts.max_pixels;
  *labels = opts.images;
  return load_image_batch(opts.images, pc, dec);
}

Result<Tensor> load_input_tensor(const std::string& spec) {
  std::string path = spec, name = "input";
  // FILE:NAME, but a path that itself contains ':' is taken whole when it names an existing file.
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && colon + 1 < spec.size()) {
    std::error_code ec;
    if (!fs::exists(spec, ec)) {
      path = spec.substr(0, colon);
      name = spec.substr(colon + 1);
    }
  }
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

std::string escape_line(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\x";
      out += kHex[byte >> 4];
      out += kHex[byte & 15];
    } else {
      out += c;
    }
  }
  return out;
}

bool unescape_line(std::string_view line, std::string* out) {
  const auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  out->clear();
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\\') {
      *out += line[i];
      continue;
    }
    if (++i == line.size()) return false;
    switch (line[i]) {
      case '\\': *out += '\\'; break;
      case 'n': *out += '\n'; break;
      case 'r': *out += '\r'; break;
      case 't': *out += '\t'; break;
      case 'x': {
        if (line.size() - i < 3 || hex(line[i + 1]) < 0 || hex(line[i + 2]) < 0) return false;
        *out += static_cast<char>(hex(line[i + 1]) * 16 + hex(line[i + 2]));
        i += 2;
        break;
      }
      default: return false;
    }
  }
  return true;
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
