// The Hugging Face cache layout, written down once for lookup (hub.cpp) and pull (pull.cpp):
//   <cache>/models--owner--name/blobs/<etag>
//                              /snapshots/<commit>/<file> -> ../../blobs/<etag>
//                              /refs/<revision>            (holds the commit sha)
#pragma once

#include <filesystem>
#include <string>

namespace dinov3::hub {

std::string env(const char* name);  // "" when unset
// huggingface_hub's truth test for flags such as HF_HUB_OFFLINE: 1, ON, YES or TRUE (any case).
bool env_flag(const char* name);

// "owner/name" as the hub spells repository ids: letters, digits, '-', '_', '.'; no "--" or "..".
bool is_repo_id(const std::string& spec);
// <cache>/models--owner--name
std::filesystem::path repo_cache_dir(const std::filesystem::path& cache, const std::string& repo_id);

bool is_commit_sha(const std::string& s);  // 40 lower-case hex digits
// The commit refs/<revision> names (or `revision` itself when it is a commit sha); "" when unknown.
std::string cached_commit(const std::filesystem::path& repo_dir, const std::string& revision);

// A folder holds a model when it has config.json with model.safetensors, model.safetensors.index.json or
// pytorch_model.bin (timm and Hugging Face layouts), or exactly one *.pth file (Meta's release).
bool holds_model(const std::filesystem::path& dir);

}  // namespace dinov3::hub
