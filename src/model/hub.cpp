#include "dinov3/hub.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

bool has_model_files(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "config.json", ec) &&
         (fs::exists(dir / "model.safetensors", ec) || fs::exists(dir / "pytorch_model.bin", ec));
}

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

fs::path hub_cache_dir() {
  if (std::string v = env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = env("HF_HOME"); !v.empty()) return fs::path(v) / "hub";
  if (std::string v = env("HOME"); !v.empty()) return fs::path(v) / ".cache" / "huggingface" / "hub";
  return {};
}

// A snapshot folder of one cached repo: the revision refs/main names, else the most recently written.
fs::path pick_snapshot(const fs::path& repo) {
  std::error_code ec;
  std::ifstream ref(repo / "refs" / "main");
  std::string revision;
  if (ref && std::getline(ref, revision) && !revision.empty() && revision.find('/') == std::string::npos) {
    const fs::path snap = repo / "snapshots" / revision;
    if (has_model_files(snap)) return snap;
  }
  fs::path best;
  fs::file_time_type best_time{};
  for (fs::directory_iterator it(repo / "snapshots", ec), end; !ec && it != end; it.increment(ec)) {
    if (!has_model_files(it->path())) continue;
    const auto t = fs::last_write_time(it->path(), ec);
    if (best.empty() || t > best_time) {
      best = it->path();
      best_time = t;
    }
  }
  return best;
}

bool looks_like_hub_id(const std::string& spec) {
  const auto slash = spec.find('/');
  return slash != std::string::npos && slash > 0 && slash + 1 < spec.size() &&
         spec.find('/', slash + 1) == std::string::npos && spec[0] != '.' && spec.find("..") == std::string::npos;
}

}  // namespace

Result<ModelLocation> resolve_model(const std::string& spec) {
  ModelLocation loc;
  std::error_code ec;
  if (spec.empty()) return make_error(ErrorCode::kInvalidArgument, "no model given");
  if (fs::is_directory(spec, ec) || fs::is_regular_file(spec, ec)) {  // a folder, or Meta's .pth itself
    loc.dir = spec;
    loc.searched.push_back(spec);
    return loc;
  }
  if (!looks_like_hub_id(spec)) {
    return make_error(ErrorCode::kNotFound, spec + ": no such model folder (give a folder holding config.json and "
                                                   "model.safetensors, or a hub id such as " + kDefaultModelId + ")");
  }
  const std::string owner = spec.substr(0, spec.find('/')), name = spec.substr(spec.find('/') + 1);
  if (const fs::path cache = hub_cache_dir(); !cache.empty()) {
    const fs::path repo = cache / ("models--" + owner + "--" + name);
    loc.searched.push_back((repo / "snapshots").string());
    if (const fs::path snap = pick_snapshot(repo); !snap.empty()) {
      loc.dir = snap.string();
      return loc;
    }
  }
  const fs::path atomgit = fs::path("/opt/atomgit/weight") / name;
  loc.searched.push_back(atomgit.string());
  if (has_model_files(atomgit)) {
    loc.dir = atomgit.string();
    return loc;
  }
  std::string where;
  for (const auto& s : loc.searched) where += (where.empty() ? "" : ", ") + s;
  return make_error(ErrorCode::kNotFound,
                    "model '" + spec + "' not found (looked in: " + where + "); download it on a connected machine with "
                    "`huggingface-cli download " + spec + "` and copy the cache folder here, or pass --model with "
                    "the folder holding config.json and model.safetensors");
}

}  // namespace dinov3
