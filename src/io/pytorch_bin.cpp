// pytorch_model.bin as torch.save writes it since PyTorch 1.6: a zip whose records all sit in one folder,
//   <archive>/data.pkl      the pickled state_dict, storages replaced by persistent ids
//   <archive>/data/<key>    one storage's raw bytes, stored uncompressed
//   <archive>/byteorder     "little" or "big" (newer versions only)
// Tensors point into the mapping of the zip; nothing is copied.
#include <memory>
#include <string_view>

#include "dinov3/tensor_file.h"
#include "io/pickle_reader.h"
#include "io/zip_reader.h"
#include "util/api_guard.h"

namespace dinov3 {
namespace {

constexpr std::string_view kPickleSuffix = "/data.pkl";

Status format_error(std::string message) { return make_error(ErrorCode::kFormatError, std::move(message)); }

// The folder name is whatever the file was called when saved, so it is taken from the data.pkl record.
Result<std::string> archive_prefix(const io::ZipDirectory& zip) {
  const std::string* pickle_name = nullptr;
  for (const io::ZipRecord& record : zip.records()) {
    const std::string_view name = record.name;
    if (name.size() <= kPickleSuffix.size() || !name.ends_with(kPickleSuffix) ||
        name.find('/') != name.size() - kPickleSuffix.size())
      continue;
    if (pickle_name != nullptr) return format_error("zip holds more than one data.pkl record");
    pickle_name = &record.name;
  }
  if (pickle_name == nullptr) return format_error("zip record missing: <archive>/data.pkl (not a PyTorch checkpoint)");
  return pickle_name->substr(0, pickle_name->size() - kPickleSuffix.size());
}

// Files written before the byteorder record existed carry none; they come from little-endian machines.
Status check_byteorder(const io::ZipDirectory& zip, const std::string& prefix) {
  const std::string name = prefix + "/byteorder";
  if (zip.find(name) == nullptr) return Status::ok_status();
  DINOV3_ASSIGN_OR_RETURN(const auto bytes, zip.stored(name));
  const std::string_view order(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (order == "little") return Status::ok_status();
  if (order == "big")
    return make_error(ErrorCode::kUnsupported, "checkpoint was saved big-endian; only little-endian is supported");
  return format_error("zip record '" + name + "' holds neither 'little' nor 'big'");
}

// Checks that the storage fits its record and that every element the tensor's sizes and strides reach
// lies inside the storage, then points the tensor at its first element.
Result<RawTensor> resolve_tensor(const io::PickledTensor& pickled, const io::PickledStorage& storage,
                                 std::span<const uint8_t> record) {
  const auto fail = [&](const std::string& why) { return format_error("tensor '" + pickled.name + "': " + why); };
  const size_t elem_size = dtype_size(storage.dtype);
  if (storage.numel < 0 || static_cast<uint64_t>(storage.numel) > record.size() / elem_size)
    return fail("storage " + storage.key + " claims " + std::to_string(storage.numel) +
                " elements but its record holds " + std::to_string(record.size()) + " bytes");
  if (pickled.offset < 0 || pickled.offset > storage.numel) return fail("storage offset is out of range");
  if (shape_numel(pickled.shape) < 0) return fail("shape " + shape_to_string(pickled.shape) + " is invalid");

  // Index of the last element reached; an empty tensor reaches none.
  int64_t last = pickled.offset;
  const bool empty = shape_numel(pickled.shape) == 0;
  for (size_t i = 0; i < pickled.shape.size() && !empty; ++i) {
    int64_t reach = 0;
    if (pickled.strides[i] < 0 || __builtin_mul_overflow(pickled.shape[i] - 1, pickled.strides[i], &reach) ||
        __builtin_add_overflow(last, reach, &last))
      return fail("strides " + shape_to_string(pickled.strides) + " are invalid");
  }
  if (!empty && last >= storage.numel)
    return fail("shape " + shape_to_string(pickled.shape) + " with strides " + shape_to_string(pickled.strides) +
                " reaches element " + std::to_string(last) + " of a storage of " + std::to_string(storage.numel));
  // A view with more elements than the storage span it covers repeats elements (a zero or overlapping
  // stride, as expand() makes). No saved parameter is one, and converting it would allocate memory no
  // byte of the file accounts for.
  if (!empty && shape_numel(pickled.shape) > last - pickled.offset + 1)
    return fail("shape " + shape_to_string(pickled.shape) + " with strides " + shape_to_string(pickled.strides) +
                " repeats elements of its storage (" + std::to_string(last - pickled.offset + 1) +
                " elements spanned); saved parameters never do");

  RawTensor raw;
  raw.name = pickled.name;
  raw.dtype = storage.dtype;
  raw.shape = pickled.shape;
  raw.strides = pickled.strides;
  raw.data = record.data() + static_cast<size_t>(pickled.offset) * elem_size;
  raw.nbytes = empty ? 0 : static_cast<size_t>(last - pickled.offset + 1) * elem_size;
  return raw;
}

Result<std::vector<RawTensor>> read_tensors(const MappedFile& file) {
  DINOV3_ASSIGN_OR_RETURN(const io::ZipDirectory zip, io::ZipDirectory::parse({file.data(), file.size()}));
  DINOV3_ASSIGN_OR_RETURN(const std::string prefix, archive_prefix(zip));
  DINOV3_RETURN_IF_ERROR(check_byteorder(zip, prefix));
  DINOV3_ASSIGN_OR_RETURN(const auto pickle, zip.stored(std::string(prefix).append(kPickleSuffix)));
  DINOV3_ASSIGN_OR_RETURN(const io::PickledStateDict state, io::read_state_dict_pickle(pickle));
  if (state.tensors.empty())
    return make_error(ErrorCode::kUnsupported, "the pickled state_dict holds no tensors at its top level");

  std::vector<RawTensor> tensors;
  tensors.reserve(state.tensors.size());
  for (const io::PickledTensor& pickled : state.tensors) {
    const io::PickledStorage& storage = state.storages[pickled.storage];
    DINOV3_ASSIGN_OR_RETURN(const auto record, zip.stored(prefix + "/data/" + storage.key));
    DINOV3_ASSIGN_OR_RETURN(RawTensor raw, resolve_tensor(pickled, storage, record));
    tensors.push_back(std::move(raw));
  }
  return tensors;
}

}  // namespace

Result<TensorArchive> open_pytorch_bin(const std::string& path) {
  return guard_api_call("reading a PyTorch checkpoint", [&]() -> Result<TensorArchive> {
    DINOV3_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
    Result<std::vector<RawTensor>> tensors = read_tensors(*file);
    if (!tensors.ok()) return tensors.status().with_context(path);
    return TensorArchive(std::move(file), std::move(tensors).value(), {});
  });
}

}  // namespace dinov3
