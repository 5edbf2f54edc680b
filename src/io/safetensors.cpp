// safetensors reading (memory-mapped, every header field validated) and atomic writing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "dinov3/tensor_file.h"
#include "io/file_util.h"

namespace dinov3 {
namespace {

using json = nlohmann::json;

// The format caps the header at 100 MB; anything larger is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

Status format_error(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kFormatError, path + ": " + what);
}

Result<RawTensor> parse_entry(const std::string& path, const std::string& name, const json& entry,
                              const uint8_t* data, uint64_t data_size) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object()) return format_error(path, where + " is not an object");
  const auto dt = entry.find("dtype");
  const auto sh = entry.find("shape");
  const auto off = entry.find("data_offsets");
  if (dt == entry.end() || !dt->is_string()) return format_error(path, where + " has no dtype string");
  if (sh == entry.end() || !sh->is_array()) return format_error(path, where + " has no shape array");
  if (off == entry.end() || !off->is_array() || off->size() != 2)
    return format_error(path, where + " has no [begin, end] data_offsets");

  RawTensor t;
  t.name = name;
  const std::string dtype = dt->get<std::string>();
  if (!dtype_from_name(dtype, &t.dtype))
    return make_error(ErrorCode::kUnsupported, path + ": " + where + " has unknown dtype '" + dtype + "'");
  for (const auto& d : *sh) {
    if (!d.is_number_unsigned()) return format_error(path, where + " has a shape entry that is not a size");
    const uint64_t v = d.get<uint64_t>();
    if (v > (1ull << 40)) return format_error(path, where + " has an absurd dimension " + std::to_string(v));
    t.shape.push_back(static_cast<int64_t>(v));
  }
  const int64_t numel = shape_numel(t.shape);
  if (numel < 0) return format_error(path, where + " has a shape whose size overflows");
  for (const auto& o : *off)
    if (!o.is_number_unsigned()) return format_error(path, where + " has a data offset that is not a size");
  const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
  if (begin > end || end > data_size) {
    return format_error(path, where + " data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                                  "] run past the " + std::to_string(data_size) + "-byte data section");
  }
  const uint64_t expected = static_cast<uint64_t>(numel) * dtype_size(t.dtype);
  if (end - begin != expected) {
    return format_error(path, where + " spans " + std::to_string(end - begin) + " bytes but " + dtype + " " +
                                  shape_to_string(t.shape) + " needs " + std::to_string(expected));
  }
  t.strides.assign(t.shape.size(), 1);
  for (size_t i = t.shape.size(); i-- > 1;) t.strides[i - 1] = t.strides[i] * t.shape[i];
  t.data = data + begin;
  t.nbytes = static_cast<size_t>(expected);
  return t;
}

}  // namespace

Result<TensorArchive> open_safetensors(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  if (file->size() < 8) return format_error(path, "too short for a safetensors header (" + std::to_string(file->size()) + " bytes)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file->data()[i];
  if (header_len > kMaxHeaderBytes)
    return format_error(path, "header length " + std::to_string(header_len) + " is absurd (limit 100 MB)");
  if (header_len > file->size() - 8) {
    return format_error(path, "truncated: header claims " + std::to_string(header_len) + " bytes, file has " +
                                  std::to_string(file->size() - 8) + " after the length");
  }
  const char* text = reinterpret_cast<const char*>(file->data() + 8);
  json header = json::parse(text, text + header_len, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return format_error(path, "header is not a JSON object");

  const uint8_t* data = file->data() + 8 + header_len;
  const uint64_t data_size = file->size() - 8 - header_len;
  std::vector<RawTensor> tensors;
  std::map<std::string, std::string> metadata;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return format_error(path, "__metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m)
        if (m->is_string()) metadata[m.key()] = m->get<std::string>();
      continue;
    }
    DINOV3_ASSIGN_OR_RETURN(RawTensor t, parse_entry(path, it.key(), *it, data, data_size));
    tensors.push_back(std::move(t));
  }
  // Tensors may not share bytes: sort by position and check neighbours.
  std::vector<const RawTensor*> by_offset;
  for (const auto& t : tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const RawTensor* a, const RawTensor* b) { return a->data < b->data; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const RawTensor& prev = *by_offset[i - 1];
    if (prev.data + prev.nbytes > by_offset[i]->data) {
      return format_error(path, "tensors '" + prev.name + "' and '" + by_offset[i]->name + "' overlap in the data section");
    }
  }
  return TensorArchive(std::move(file), std::move(tensors), std::move(metadata));
}

Status save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata, bool overwrite) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (const auto& nt : tensors) {
    if (nt.tensor == nullptr || shape_numel(nt.tensor->shape) != nt.tensor->numel()) {
      return make_error(ErrorCode::kInvalidArgument, "tensor '" + nt.name + "' has a shape that does not match its data");
    }
    if (header.contains(nt.name)) return make_error(ErrorCode::kInvalidArgument, "duplicate tensor name '" + nt.name + "'");
    const uint64_t bytes = static_cast<uint64_t>(nt.tensor->numel()) * sizeof(float);
    header[nt.name] = {{"dtype", "F32"}, {"shape", nt.tensor->shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  std::string blob(8, '\0');
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) blob[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  blob += text;
  return write_file_atomic(path, overwrite, [&](const WriteFn& write) -> Status {
    DINOV3_RETURN_IF_ERROR(write(blob.data(), blob.size()));
    for (const auto& nt : tensors)
      DINOV3_RETURN_IF_ERROR(write(nt.tensor->ptr(), static_cast<size_t>(nt.tensor->numel()) * sizeof(float)));
    return {};
  });
}

}  // namespace dinov3
