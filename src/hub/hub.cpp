// Model lookup: a folder or file as given, else a hub id in the Hugging Face cache, else /opt/atomgit.
#include "dinov3/hub.h"

#include <filesystem>

#include "hub/cache.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

// A snapshot folder of one cached repo: the revision refs/main names, else the most recently written.
fs::path pick_snapshot(const fs::path& repo) {
  std::error_code ec;
  if (const std::string commit = hub::cached_commit(repo, "main"); !commit.empty()) {
    const fs::path snap = repo / "snapshots" / commit;
    if (hub::holds_model(snap)) return snap;
  }
  fs::path best;
  fs::file_time_type best_time{};
  for (fs::directory_iterator it(repo / "snapshots", ec), end; !ec && it != end; it.increment(ec)) {
    if (!hub::holds_model(it->path())) continue;
    const auto t = fs::last_write_time(it->path(), ec);
    if (best.empty() || t > best_time) {
      best = it->path();
      best_time = t;
    }
  }
  return best;
}

}  // namespace

Result<ModelLocation> resolve_model(const std::string& spec) {
  ModelLocation loc;
  std::error_code ec;
  if (spec.empty()) return make_error(ErrorCode::kInvalidArgument, "no model given");
  if (fs::is_directory(spec, ec) || fs::is_regular_file(spec, ec)) {
    loc.dir = spec;
    loc.searched.push_back(spec);
    return loc;
  }
  if (!hub::is_repo_id(spec)) {
    return make_error(ErrorCode::kNotFound,
                      spec + ": no such model folder or file (give a folder holding config.json and "
                             "model.safetensors, a Meta .pth file, or a hub id such as " + kDefaultModelId + ")");
  }
  const std::string name = spec.substr(spec.find('/') + 1);
  if (const std::string cache = hub_cache_dir(); !cache.empty()) {
    const fs::path repo = hub::repo_cache_dir(cache, spec);
    loc.searched.push_back((repo / "snapshots").string());
    if (const fs::path snap = pick_snapshot(repo); !snap.empty()) {
      loc.dir = snap.string();
      return loc;
    }
  }
  const fs::path atomgit = fs::path("/opt/atomgit/weight") / name;
  loc.searched.push_back(atomgit.string());
  if (hub::holds_model(atomgit)) {
    loc.dir = atomgit.string();
    return loc;
  }
  std::string where;
  for (const auto& s : loc.searched) where += (where.empty() ? "" : ", ") + s;
  return make_error(ErrorCode::kNotFound,
                    "model '" + spec + "' not found (looked in: " + where + "); download it with `dinov3 pull " +
                        spec + "` (on a connected machine, then copy the cache folder here), or pass --model with "
                        "the folder holding config.json and model.safetensors");
}

std::vector<std::string> model_files(const std::string& location) {
  std::error_code ec;
  if (!fs::is_directory(location, ec)) return {location};
  std::vector<std::string> files = {(fs::path(location) / "config.json").string()};
  for (fs::directory_iterator it(location, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && it->path().filename() != "config.json") files.push_back(it->path().string());
  }
  return files;
}

}  // namespace dinov3
