// Writing torch.save zip checkpoints byte by byte (no PyTorch here), for tests of the zip and pickle
// readers and of Meta's .pth layout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dinov3::test {

void put_le(std::string* out, uint64_t value, int nbytes);

struct ZipEntry {
  std::string name;
  std::string data;
  uint16_t method = 0;  // 8 = deflate (the data is not really compressed; readers must refuse it first)
};

// Lays out a minimal zip: local headers each followed by its data, the central directory, the end
// records. With `zip64`, every size and offset moves into ZIP64 fields as for a multi-gigabyte file.
std::string make_zip(const std::vector<ZipEntry>& entries, bool zip64 = false);

// Emits pickle opcodes by name; each call appends one opcode and its operand.
class Pickle {
 public:
  Pickle& op(uint8_t opcode) {
    bytes_.push_back(static_cast<char>(opcode));
    return *this;
  }
  Pickle& proto(int version) { return op(0x80).raw(version, 1); }
  Pickle& mark() { return op('('); }
  Pickle& str(const std::string& s) {
    op('X').raw(s.size(), 4);
    bytes_ += s;
    return *this;
  }
  Pickle& short_str(const std::string& s) {
    op(0x8c).raw(s.size(), 1);
    bytes_ += s;
    return *this;
  }
  Pickle& integer(int64_t value) {
    if (value >= 0 && value < 256) return op('K').raw(value, 1);
    return op('J').raw(static_cast<uint64_t>(value), 4);
  }
  Pickle& global(const std::string& module, const std::string& name) {
    op('c');
    bytes_ += module + "\n" + name + "\n";
    return *this;
  }
  Pickle& ints(const std::vector<int64_t>& values) {
    mark();
    for (const int64_t v : values) integer(v);
    return op('t');
  }
  // torch._utils._rebuild_tensor_v2(<storage key of numel floats>, offset, shape, strides, False, OrderedDict())
  Pickle& tensor(const std::string& key, int64_t numel, const std::vector<int64_t>& shape,
                 const std::vector<int64_t>& strides, int64_t offset = 0,
                 const std::string& storage_type = "FloatStorage") {
    global("torch._utils", "_rebuild_tensor_v2").mark();
    mark().str("storage").global("torch", storage_type).str(key).str("cpu").integer(numel).op('t').op('Q');
    integer(offset).ints(shape).ints(strides).op(0x89);
    global("collections", "OrderedDict").op(')').op('R');
    return op('t').op('R');
  }
  Pickle& raw(uint64_t value, int nbytes) {
    put_le(&bytes_, value, nbytes);
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

struct TensorSpec {
  std::string name;
  std::string key;
  int64_t numel;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;
  int64_t offset = 0;
};

// {name: tensor, ...} as torch.save(state_dict) pickles it with protocol 2.
std::string state_dict_pickle(const std::vector<TensorSpec>& specs);

// count float32 values 0, 1, 2, ... as bytes.
std::string float_bytes(int count);

// A torch.save zip: archive/data.pkl, the storages, archive/version.
std::string checkpoint(const std::string& pickle, const std::vector<ZipEntry>& storages, bool zip64 = false);

// A contiguous tensor with its raw little-endian bytes, stored as `storage_type` (FloatStorage,
// BFloat16Storage, ...).
struct StoredTensor {
  std::string name;
  std::string storage_type;
  std::vector<int64_t> shape;
  std::string bytes;
};
// A whole state_dict checkpoint, one storage per tensor, in the given order.
std::string write_state_dict(const std::vector<StoredTensor>& tensors);

}  // namespace dinov3::test
