// Reading and writing tensor files: safetensors (memory-mapped) and PyTorch's pytorch_model.bin
// (zip container + a restricted pickle reader that only accepts what a saved state_dict holds).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dinov3/files.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3 {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

const char* dtype_name(DType dtype);        // safetensors spelling: "F32", "BF16", ...
size_t dtype_size(DType dtype);             // bytes per element
bool dtype_from_name(std::string_view name, DType* out);

// A read-only memory mapping of a whole file; tensors point into it.
class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Tells the kernel the byte range will not be read again, so its pages leave resident memory.
  void release(const uint8_t* begin, size_t nbytes) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// One stored tensor: its dtype, shape, element strides and a pointer to its first element.
struct RawTensor {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  Shape strides;                 // in elements; row-major for safetensors
  const uint8_t* data = nullptr;  // first element, inside the archive's mapping
  size_t nbytes = 0;             // bytes spanned from `data` (validated against the file)

  int64_t numel() const { return shape_numel(shape); }
  bool contiguous() const;  // row-major; false when strides and shape differ in length
};

// A weights file (or a set of shards) opened for reading. The tensors stay valid while the archive lives.
class TensorArchive {
 public:
  TensorArchive() = default;
  TensorArchive(std::shared_ptr<MappedFile> file, std::vector<RawTensor> tensors,
                std::map<std::string, std::string> metadata);
  // The shards of one checkpoint as one archive named `path`; a tensor name held twice is an error.
  static Result<TensorArchive> merge(const std::string& path, std::vector<TensorArchive> shards);

  const std::vector<RawTensor>& tensors() const { return tensors_; }
  const RawTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const;
  size_t file_count() const { return files_.size(); }  // shards

  // Converts any floating dtype (and strided layout) to a float32 host tensor.
  Result<Tensor> load_f32(const RawTensor& raw) const;
  Result<Tensor> load_f32(std::string_view name) const;
  // Lets the kernel drop the pages of a tensor that has been consumed (keeps peak memory low).
  void release(const RawTensor& raw) const;

 private:
  std::vector<std::shared_ptr<MappedFile>> files_;
  std::string path_;
  std::vector<RawTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::map<std::string, size_t, std::less<>> index_;
};

// safetensors: 8-byte little-endian header length, JSON header, data. Every offset is validated.
Result<TensorArchive> open_safetensors(const std::string& path);

// pytorch_model.bin: a zip holding data.pkl and data/<key> storages. The pickle is interpreted by a
// restricted reader: only OrderedDict, torch._utils._rebuild_tensor_v2 and the torch storage types.
Result<TensorArchive> open_pytorch_bin(const std::string& path);

// A sharded safetensors checkpoint: model.safetensors.index.json ({"weight_map": {tensor: shard file}})
// beside its shards. Shards must be plain file names in the index's folder; every listed tensor must be
// in the shard the index names, and every tensor in a shard must be listed.
Result<TensorArchive> open_sharded_safetensors(const std::string& index_path);

// Opens by content: safetensors, or a zip (pytorch_model.bin).
Result<TensorArchive> open_tensor_file(const std::string& path);

// Writes float32 tensors as safetensors, atomically (a temporary file, then rename). Refuses to replace
// an existing file unless `overwrite`.
struct NamedTensor {
  std::string name;
  const Tensor* tensor;
};
Status save_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                        const std::map<std::string, std::string>& metadata = {}, bool overwrite = true);
// The same bytes through `write`, for a caller that places the file itself (write_files_together).
Status write_safetensors(const WriteFn& write, const std::vector<NamedTensor>& tensors,
                         const std::map<std::string, std::string>& metadata = {});
// Tensors of any dtype: `data` holds shape_numel(shape) elements of dtype_size(dtype) bytes, row-major.
struct TensorBytes {
  std::string name;
  DType dtype = DType::kF32;
  Shape shape;
  const void* data = nullptr;
};
Status write_safetensors(const WriteFn& write, const std::vector<TensorBytes>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

}  // namespace dinov3
