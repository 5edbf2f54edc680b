#include "cli_common.h"

#include <cstdio>
#include <sstream>

#include "dinov3/tensor_file.h"

namespace dinov3::cli {

void add_model_options(CLI::App& cmd, ModelOptions* opts, bool with_backend) {
  cmd.add_option("--model,-m", opts->model, "timm hub folder (config.json + model.safetensors or pytorch_model.bin)")
      ->required();
  if (!with_backend) return;
  cmd.add_option("--backend,-b", opts->backend, "compute backend")->capture_default_str();
  cmd.add_option("--threads,-t", opts->threads, "worker threads (0: one per core)")->capture_default_str();
  cmd.add_option("--precision", opts->precision, "fp32, bf16 or int8 (backend permitting)")->capture_default_str();
}

Result<std::unique_ptr<Model>> load_model(const ModelOptions& opts) {
  LoadOptions lo;
  lo.backend = opts.backend;
  lo.backend_options.threads = opts.threads;
  if (!precision_from_name(opts.precision, &lo.backend_options.precision)) {
    return make_error(ErrorCode::kInvalidArgument, "unknown precision '" + opts.precision + "' (fp32, bf16, int8)");
  }
  return Model::load(opts.model, lo);
}

Result<Tensor> load_input_tensor(const std::string& spec) {
  std::string path = spec, name = "input";
  // FILE:NAME, but a bare path containing ':' is taken whole when it names an existing file.
  if (const auto colon = spec.rfind(':'); colon != std::string::npos && colon + 1 < spec.size()) {
    std::FILE* f = std::fopen(spec.c_str(), "rb");
    if (f != nullptr) {
      std::fclose(f);
    } else {
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

void print_line(const std::string& line) { std::printf("%s\n", line.c_str()); }

std::string format_values(const float* v, size_t n) {
  std::ostringstream ss;
  ss.precision(6);
  ss << "[";
  for (size_t i = 0; i < n; ++i) ss << (i ? ", " : "") << v[i];
  ss << "]";
  return ss.str();
}

}  // namespace dinov3::cli
