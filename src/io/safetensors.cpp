// safetensors reading (memory-mapped, every header field validated) and atomic writing.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "dinov3/tensor_file.h"
#include "io/file_util.h"
#include "io/json_util.h"
#include "util/api_guard.h"

namespace dinov3 {
namespace {

using json = nlohmann::json;

// The format caps the header at 100 MB; anything larger is a corrupt or hostile file.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

Status format_error(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kFormatError, path + ": " + what);
}

// Dimensions of a tensor; no checkpoint comes near, and the cap keeps a header's memory to its tensors.
constexpr size_t kMaxRank = 64;

// One header entry as read, before it is checked against the data section.
struct EntryFields {
  std::string name;
  std::string dtype;
  Shape shape;
  std::vector<uint64_t> offsets;
  bool has_dtype = false, has_shape = false, has_offsets = false;
};

Result<RawTensor> make_tensor(const std::string& path, const EntryFields& e, const uint8_t* data, uint64_t data_size) {
  const std::string where = "tensor '" + e.name + "'";
  if (!e.has_dtype) return format_error(path, where + " has no dtype string");
  if (!e.has_shape) return format_error(path, where + " has no shape array");
  if (!e.has_offsets || e.offsets.size() != 2) return format_error(path, where + " has no [begin, end] data_offsets");
  RawTensor t;
  t.name = e.name;
  if (!dtype_from_name(e.dtype, &t.dtype))
    return make_error(ErrorCode::kUnsupported, path + ": " + where + " has unknown dtype '" + e.dtype + "'");
  t.shape = e.shape;
  const int64_t numel = shape_numel(t.shape);
  uint64_t expected = 0;
  if (numel < 0 || __builtin_mul_overflow(static_cast<uint64_t>(numel), dtype_size(t.dtype), &expected))
    return format_error(path, where + " has a shape whose size overflows");
  const uint64_t begin = e.offsets[0], end = e.offsets[1];
  if (begin > end || end > data_size) {
    return format_error(path, where + " data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                                  "] run past the " + std::to_string(data_size) + "-byte data section");
  }
  if (end - begin != expected) {
    return format_error(path, where + " spans " + std::to_string(end - begin) + " bytes but " + e.dtype + " " +
                                  shape_to_string(t.shape) + " needs " + std::to_string(expected));
  }
  t.strides.assign(t.shape.size(), 1);
  for (size_t i = t.shape.size(); i-- > 1;) t.strides[i - 1] = t.strides[i] * t.shape[i];
  t.data = data + begin;
  t.nbytes = static_cast<size_t>(expected);
  return t;
}

// Reads the header {name: {"dtype": str, "shape": [size...], "data_offsets": [begin, end]}, ...,
// "__metadata__": {str: str}} as nlohmann's SAX parser walks it: the schema is checked as it goes and
// only the tensors are kept, so memory follows what the header describes, never its nesting or the
// values it carries beside them (unknown entry fields are skipped, as other readers do).
class HeaderReader final : public nlohmann::json_sax<json> {
 public:
  HeaderReader(const std::string& path, const uint8_t* data, uint64_t data_size)
      : path_(path), data_(data), data_size_(data_size) {}

  Status status() const { return status_; }
  std::vector<RawTensor>& tensors() { return tensors_; }
  std::map<std::string, std::string>& metadata() { return metadata_; }

  bool null() override { return scalar("null"); }
  bool boolean(bool) override { return scalar("a bool"); }
  bool number_integer(number_integer_t) override { return scalar("a negative number"); }  // others come unsigned
  bool number_float(number_float_t, const string_t&) override { return scalar("a fraction"); }
  bool binary(binary_t&) override { return scalar("binary data"); }
  bool number_unsigned(number_unsigned_t v) override {
    if (skip_ > 0 || depth_ != 3) return scalar("a number");
    if (array_ == Array::kShape) {
      if (v > (1ull << 40)) return fail(where() + " has an absurd dimension " + std::to_string(v));
      if (entry_.shape.size() == kMaxRank) return fail(where() + " has more than " + std::to_string(kMaxRank) + " dimensions");
      entry_.shape.push_back(static_cast<int64_t>(v));
      return true;
    }
    if (entry_.offsets.size() == 2) return fail(where() + " has no [begin, end] data_offsets");
    entry_.offsets.push_back(v);
    return true;
  }
  bool string(string_t& v) override {
    if (skip_ > 0) return true;
    if (depth_ == 2 && in_metadata_) {
      metadata_[field_] = std::move(v);
      return true;
    }
    if (depth_ == 2 && field_ == "dtype") {
      entry_.dtype = std::move(v);
      return true;
    }
    return scalar("a string");
  }
  bool start_object(std::size_t) override {
    if (skip_ > 0 || (depth_ == 2 && !in_metadata_ && !known_field())) return enter_skipped();
    if (depth_ == 0) return ++depth_ > 0;
    if (depth_ != 1) return scalar("an object");
    in_metadata_ = key_ == "__metadata__";
    entry_ = EntryFields{};
    entry_.name = key_;
    ++depth_;
    return true;
  }
  bool end_object() override {
    if (skip_ > 0) return --skip_ >= 0;
    if (depth_-- == 2 && !in_metadata_) {
      Result<RawTensor> t = make_tensor(path_, entry_, data_, data_size_);
      if (!t.ok()) return fail_status(t.status());
      tensors_.push_back(std::move(t).value());
    }
    return true;
  }
  bool start_array(std::size_t) override {
    if (skip_ > 0 || (depth_ == 2 && !in_metadata_ && !known_field())) return enter_skipped();
    if (depth_ != 2 || in_metadata_ || field_ == "dtype") return scalar("an array");
    array_ = field_ == "shape" ? Array::kShape : Array::kOffsets;
    ++depth_;
    return true;
  }
  bool end_array() override {
    if (skip_ > 0) return --skip_ >= 0;
    --depth_;
    return true;
  }
  bool key(string_t& k) override {
    if (skip_ > 0) return true;
    if (depth_ == 1) {
      if (!names_.insert(k).second) return fail("tensor '" + k + "' appears twice in the header");
      key_ = std::move(k);
      return true;
    }
    field_ = std::move(k);
    if (in_metadata_) return true;
    bool* seen = field_ == "dtype" ? &entry_.has_dtype : field_ == "shape" ? &entry_.has_shape
                 : field_ == "data_offsets" ? &entry_.has_offsets : nullptr;
    if (seen == nullptr) return true;
    if (*seen) return fail(where() + " gives '" + field_ + "' twice");
    *seen = true;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    return fail(std::string("header is not a JSON object (") + e.what() + ")");
  }

 private:
  enum class Array { kShape, kOffsets };

  bool known_field() const { return field_ == "dtype" || field_ == "shape" || field_ == "data_offsets"; }
  std::string where() const { return in_metadata_ ? "__metadata__" : "tensor '" + entry_.name + "'"; }

  // A value the schema has no place for at this position.
  bool scalar(const char* what) {
    if (skip_ > 0) return true;
    if (depth_ == 0) return fail("header is not a JSON object");
    if (depth_ == 1) return fail((key_ == "__metadata__" ? "__metadata__" : "tensor '" + key_ + "'") + " is not an object");
    if (in_metadata_) return fail("__metadata__ value '" + field_ + "' is not a string");
    if (depth_ == 2 && !known_field()) return true;  // an unknown field's value: ignored
    if (depth_ == 2 && field_ == "dtype") return fail(where() + " has no dtype string");
    if (depth_ == 2 && field_ == "shape") return fail(where() + " has no shape array");
    if (depth_ == 2) return fail(where() + " has no [begin, end] data_offsets");
    if (array_ == Array::kShape) return fail(where() + " has a shape entry that is not a size (" + what + ")");
    return fail(where() + " has a data offset that is not a size (" + what + ")");
  }
  bool enter_skipped() {
    if (depth_ + ++skip_ > io::kMaxJsonDepth) return fail("header is nested deeper than " + std::to_string(io::kMaxJsonDepth) + " levels");
    return true;
  }
  bool fail(const std::string& what) { return fail_status(format_error(path_, what)); }
  bool fail_status(Status st) {
    if (status_.ok()) status_ = std::move(st);
    return false;
  }

  const std::string& path_;
  const uint8_t* data_;
  uint64_t data_size_;
  Status status_;
  int depth_ = 0;  // 1 inside the root object, 2 inside an entry, 3 inside its shape or offsets
  int skip_ = 0;   // open containers inside a skipped value
  bool in_metadata_ = false;
  Array array_ = Array::kShape;
  std::string key_, field_;
  EntryFields entry_;
  std::set<std::string> names_;
  std::vector<RawTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

Result<TensorArchive> read_safetensors(const std::string& path) {
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
  HeaderReader reader(path, file->data() + 8 + header_len, file->size() - 8 - header_len);
  const bool parsed = json::sax_parse(text, text + header_len, &reader);
  if (!reader.status().ok()) return reader.status();
  if (!parsed) return format_error(path, "header is not a JSON object");
  std::vector<RawTensor> tensors = std::move(reader.tensors());
  std::map<std::string, std::string> metadata = std::move(reader.metadata());
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

}  // namespace

Result<TensorArchive> open_safetensors(const std::string& path) {
  return guard_api_call("reading a safetensors file", [&] { return read_safetensors(path); });
}

Status write_safetensors(const WriteFn& write, const std::vector<TensorBytes>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  return guard_api_call("writing a safetensors file", [&]() -> Status {
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) {
      nlohmann::ordered_json meta = nlohmann::ordered_json::object();
      for (const auto& [k, v] : metadata) meta[k] = v;
      header["__metadata__"] = meta;
    }
    uint64_t offset = 0;
    std::vector<size_t> sizes;
    for (const auto& t : tensors) {
      const int64_t numel = shape_numel(t.shape);
      if (numel < 0 || (numel > 0 && t.data == nullptr)) {
        return make_error(ErrorCode::kInvalidArgument, "tensor '" + t.name + "' has a shape that does not match its data");
      }
      if (header.contains(t.name)) return make_error(ErrorCode::kInvalidArgument, "duplicate tensor name '" + t.name + "'");
      // What open_safetensors would refuse is not written: the header's own key, a dtype it does not know.
      if (t.name == "__metadata__") return make_error(ErrorCode::kInvalidArgument, "a tensor cannot be named '__metadata__'");
      if (dtype_size(t.dtype) == 0) {
        return make_error(ErrorCode::kInvalidArgument, "tensor '" + t.name + "' has an unknown dtype (" +
                                                           std::to_string(static_cast<int>(t.dtype)) + ")");
      }
      const uint64_t bytes = static_cast<uint64_t>(numel) * dtype_size(t.dtype);
      header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
      offset += bytes;
      sizes.push_back(static_cast<size_t>(bytes));
    }
    DINOV3_ASSIGN_OR_RETURN(std::string text, io::dump_json(header, "the safetensors header (tensor names, metadata)"));
    text.append((8 - text.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
    std::string blob(8, '\0');
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) blob[i] = static_cast<char>((n >> (8 * i)) & 0xff);
    blob += text;
    DINOV3_RETURN_IF_ERROR(write(blob.data(), blob.size()));
    for (size_t i = 0; i < tensors.size(); ++i) DINOV3_RETURN_IF_ERROR(write(tensors[i].data, sizes[i]));
    return {};
  });
}

Status write_safetensors(const WriteFn& write, const std::vector<NamedTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::vector<TensorBytes> bytes;
  for (const auto& nt : tensors) {
    if (nt.tensor == nullptr || shape_numel(nt.tensor->shape) != nt.tensor->numel()) {
      return make_error(ErrorCode::kInvalidArgument, "tensor '" + nt.name + "' has a shape that does not match its data");
    }
    bytes.push_back({nt.name, DType::kF32, nt.tensor->shape, nt.tensor->ptr()});
  }
  return write_safetensors(write, bytes, metadata);
}

Status save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata, bool overwrite) {
  return write_file_atomic(path, overwrite,
                           [&](const WriteFn& write) { return write_safetensors(write, tensors, metadata); });
}

}  // namespace dinov3
