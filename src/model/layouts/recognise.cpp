// Which layout a path holds, told from the files themselves: a config.json says timm (architecture) or
// transformers (model_type); a folder without one holding a single .pth, or a .pth file, is Meta's.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dinov3/image.h"
#include "io/file_util.h"
#include "io/json_util.h"
#include "model/layouts/layout.h"

namespace dinov3 {

namespace layouts {

Result<TensorArchive> open_folder_weights(const std::string& dir, std::string* format) {
  const std::string st = dir + "/model.safetensors", index = dir + "/model.safetensors.index.json",
                    bin = dir + "/pytorch_model.bin";
  if (file_exists(st)) {
    *format = "safetensors";
    return open_safetensors(st);
  }
  if (file_exists(index)) {
    DINOV3_ASSIGN_OR_RETURN(TensorArchive archive, open_sharded_safetensors(index));
    *format = "safetensors (" + std::to_string(archive.file_count()) + " shards)";
    return archive;
  }
  if (file_exists(bin)) {
    *format = "pytorch";
    return open_pytorch_bin(bin);
  }
  return make_error(ErrorCode::kNotFound, dir + ": no weights file (expected model.safetensors, "
                                                "model.safetensors.index.json with its shards, or pytorch_model.bin)");
}

Status check_data_config(const DataConfig& d) {
  int64_t pixels = 0;
  if (d.height <= 0 || d.width <= 0) return make_error(ErrorCode::kFormatError, "preprocessing size must be positive");
  // An input no decodable image could fill (Pillow's decompression-bomb limit) is a broken config, not a
  // large one: a batch of it alone would take gigabytes.
  if (const int64_t limit = DecodeOptions{}.max_pixels; __builtin_mul_overflow(d.height, d.width, &pixels) || pixels > limit) {
    return make_error(ErrorCode::kFormatError, "preprocessing input size " + std::to_string(d.height) + "x" +
                                                   std::to_string(d.width) + " is more than " + std::to_string(limit) +
                                                   " pixels");
  }
  if (!(std::isfinite(d.rescale_factor) && d.rescale_factor > 0.0))
    return make_error(ErrorCode::kFormatError, "preprocessing rescale_factor must be finite and positive");
  if (d.normalize) {
    if (Status st = check_normalization(d.mean, d.std); !st.ok())
      return make_error(ErrorCode::kFormatError, "preprocessing " + st.message());
  }
  return {};
}

}  // namespace layouts

namespace {

namespace fs = std::filesystem;

Result<Checkpoint> open_folder(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  if (file_exists(config_path)) {
    DINOV3_ASSIGN_OR_RETURN(const std::string text, read_text_file(config_path));
    // Only the top level decides the layout; the layout's own parser reads the rest.
    Result<nlohmann::json> parsed = io::parse_json(text);
    if (!parsed.ok()) return parsed.status().with_context(config_path);
    const nlohmann::json& root = *parsed;
    if (!root.is_object()) return make_error(ErrorCode::kFormatError, config_path + ": not a JSON object");
    if (root.contains("model_type")) return layouts::open_hf(dir, text);
    if (root.contains("architecture")) return layouts::open_timm(dir, text);
    return make_error(ErrorCode::kFormatError,
                      config_path + ": neither a timm config (no 'architecture') nor a transformers config (no "
                                    "'model_type')");
  }
  std::vector<std::string> pth;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".pth" && it->is_regular_file(ec)) pth.push_back(it->path().string());
  }
  if (ec) return make_error(ErrorCode::kIoError, dir + ": cannot list the folder: " + ec.message());
  if (pth.size() == 1) return layouts::open_meta(pth[0]);
  if (pth.empty()) {
    return make_error(ErrorCode::kNotFound, dir + ": not a model folder (no config.json, and no Meta .pth checkpoint)");
  }
  std::sort(pth.begin(), pth.end());
  std::string names;
  for (const auto& p : pth) names += (names.empty() ? "" : ", ") + fs::path(p).filename().string();
  return make_error(ErrorCode::kInvalidArgument,
                    dir + ": holds " + std::to_string(pth.size()) + " .pth checkpoints (" + names +
                        "); pass the one you want as --model FILE");
}

}  // namespace

Result<Checkpoint> open_checkpoint(const std::string& path) {
  DINOV3_RETURN_IF_ERROR(check_path(path));
  std::error_code ec;
  const auto status = fs::status(path, ec);
  Result<Checkpoint> ckpt = make_error(ErrorCode::kNotFound, path + ": no such file or folder");
  if (fs::is_directory(status)) {
    ckpt = open_folder(path);
  } else if (fs::is_regular_file(status)) {
    ckpt = layouts::open_meta(path);
  } else {
    return ckpt;
  }
  if (!ckpt.ok()) return ckpt;
  Status st = check_checkpoint(ckpt->archive, ckpt->config);
  if (!st.ok()) return st.with_context(ckpt->archive.path());
  st = layouts::check_data_config(ckpt->config.data);
  if (!st.ok()) return st.with_context(path);
  return ckpt;
}

}  // namespace dinov3
