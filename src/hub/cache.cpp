#include "hub/cache.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "dinov3/hub.h"
#include "io/file_util.h"

namespace dinov3 {

std::string hub_cache_dir() {
  if (std::string v = hub::env("HF_HUB_CACHE"); !v.empty()) return v;
  if (std::string v = hub::env("HF_HOME"); !v.empty()) return (std::filesystem::path(v) / "hub").string();
  if (std::string v = hub::env("HOME"); !v.empty()) {
    return (std::filesystem::path(v) / ".cache" / "huggingface" / "hub").string();
  }
  return {};
}

namespace hub {

namespace fs = std::filesystem;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

bool env_flag(const char* name) {
  std::string v = env(name);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return std::toupper(c); });
  return v == "1" || v == "ON" || v == "YES" || v == "TRUE";
}

bool is_repo_id(const std::string& spec) {
  const auto slash = spec.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= spec.size() || spec.size() > 96) return false;
  if (spec.find('/', slash + 1) != std::string::npos) return false;
  if (spec.find("--") != std::string::npos || spec.find("..") != std::string::npos) return false;
  for (const std::string& part : {spec.substr(0, slash), spec.substr(slash + 1)}) {
    if (part.front() == '.' || part.front() == '-' || part.back() == '.' || part.back() == '-') return false;
    for (const unsigned char c : part) {
      if (!std::isalnum(c) && c != '-' && c != '_' && c != '.') return false;
    }
  }
  return true;
}

fs::path repo_cache_dir(const fs::path& cache, const std::string& repo_id) {
  std::string folder = "models--" + repo_id;
  const auto slash = folder.find('/');
  if (slash != std::string::npos) folder.replace(slash, 1, "--");
  return cache / folder;
}

bool is_commit_sha(const std::string& s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string cached_commit(const fs::path& repo_dir, const std::string& revision) {
  if (is_commit_sha(revision)) return revision;
  // A regular file of a commit id: a FIFO or /dev/zero there is no ref (read_text_file refuses them).
  Result<std::string> text = read_text_file((repo_dir / "refs" / revision).string(), 4096);
  if (!text.ok()) return {};
  std::string commit = text->substr(0, text->find('\n'));
  while (!commit.empty() && std::isspace(static_cast<unsigned char>(commit.back()))) commit.pop_back();
  return is_commit_sha(commit) ? commit : std::string();
}

bool holds_model(const fs::path& dir) {
  std::error_code ec;
  if (fs::is_regular_file(dir / "config.json", ec) &&
      (fs::is_regular_file(dir / "model.safetensors", ec) ||
       fs::is_regular_file(dir / "model.safetensors.index.json", ec) ||
       fs::is_regular_file(dir / "pytorch_model.bin", ec))) {
    return true;
  }
  int pth = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".pth" && fs::is_regular_file(it->path(), ec)) ++pth;
  }
  return pth == 1;
}

}  // namespace hub
}  // namespace dinov3
