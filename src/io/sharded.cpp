// Sharded safetensors checkpoints (Hugging Face's model.safetensors.index.json + model-0000i-of-0000n files).
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "dinov3/tensor_file.h"
#include "io/file_util.h"
#include "io/json_util.h"

namespace dinov3 {
namespace {

Status index_error(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kFormatError, path + ": " + what);
}

// A shard must be a plain file name: the index may not reach outside its own folder.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\\') == std::string::npos && name.find('\0') == std::string::npos;
}

}  // namespace

Result<TensorArchive> open_sharded_safetensors(const std::string& index_path) {
  DINOV3_ASSIGN_OR_RETURN(const std::string text, read_text_file(index_path));
  // The index is flat: {"metadata": {...}, "weight_map": {name: file}}. A deeply nested document is not one.
  Result<nlohmann::json> parsed = io::parse_json(text, 8);
  if (!parsed.ok()) return parsed.status().with_context(index_path);
  const nlohmann::json& root = *parsed;
  if (!root.is_object()) return index_error(index_path, "not a JSON object");
  const auto map_it = root.find("weight_map");
  if (map_it == root.end() || !map_it->is_object() || map_it->empty())
    return index_error(index_path, "no 'weight_map' object naming each tensor's shard");

  std::map<std::string, std::set<std::string>> by_shard;  // shard file -> tensors the index puts there
  for (auto it = map_it->begin(); it != map_it->end(); ++it) {
    if (!it->is_string()) return index_error(index_path, "weight_map['" + it.key() + "'] is not a file name");
    const std::string shard = it->get<std::string>();
    if (!plain_file_name(shard))
      return index_error(index_path, "weight_map['" + it.key() + "'] names '" + shard +
                                         "', which is not a file in the index's own folder");
    by_shard[shard].insert(it.key());
  }

  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  std::vector<TensorArchive> shards;
  for (const auto& [shard, names] : by_shard) {
    const std::string shard_path = (dir / shard).string();
    if (!file_exists(shard_path))
      return make_error(ErrorCode::kNotFound, index_path + ": shard '" + shard + "' is missing (" +
                                                  std::to_string(names.size()) + " tensors are stored there)");
    DINOV3_ASSIGN_OR_RETURN(TensorArchive archive, open_safetensors(shard_path));
    for (const std::string& name : names) {
      if (archive.find(name) == nullptr)
        return index_error(index_path, "tensor '" + name + "' is not in shard '" + shard + "' where the index puts it");
    }
    for (const RawTensor& t : archive.tensors()) {
      if (names.count(t.name) == 0)
        return index_error(index_path, "shard '" + shard + "' holds tensor '" + t.name + "', which the index does not list there");
    }
    shards.push_back(std::move(archive));
  }
  return TensorArchive::merge(index_path, std::move(shards));
}

}  // namespace dinov3
