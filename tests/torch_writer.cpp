// Writing torch.save zip checkpoints byte by byte, for tests of the readers and of Meta's layout.
#include "torch_writer.h"

#include <string>

namespace dinov3::test {

void put_le(std::string* out, uint64_t value, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::string make_zip(const std::vector<ZipEntry>& entries, bool zip64) {
  constexpr uint32_t kMarker = 0xffffffff;
  std::string out, directory;
  for (const ZipEntry& entry : entries) {
    const uint64_t local_offset = out.size();
    put_le(&out, 0x04034b50, 4);
    put_le(&out, 20, 2);
    put_le(&out, 0, 2);  // flags
    put_le(&out, entry.method, 2);
    put_le(&out, 0, 4);  // time, date
    put_le(&out, 0, 4);  // crc32, which readers here do not check
    put_le(&out, zip64 ? kMarker : entry.data.size(), 4);
    put_le(&out, zip64 ? kMarker : entry.data.size(), 4);
    put_le(&out, entry.name.size(), 2);
    put_le(&out, zip64 ? 20 : 0, 2);
    out += entry.name;
    if (zip64) {
      put_le(&out, 1, 2);
      put_le(&out, 16, 2);
      put_le(&out, entry.data.size(), 8);
      put_le(&out, entry.data.size(), 8);
    }
    out += entry.data;

    put_le(&directory, 0x02014b50, 4);
    put_le(&directory, 45, 2);
    put_le(&directory, 45, 2);
    put_le(&directory, 0, 2);
    put_le(&directory, entry.method, 2);
    put_le(&directory, 0, 4);
    put_le(&directory, 0, 4);
    put_le(&directory, zip64 ? kMarker : entry.data.size(), 4);
    put_le(&directory, zip64 ? kMarker : entry.data.size(), 4);
    put_le(&directory, entry.name.size(), 2);
    put_le(&directory, zip64 ? 28 : 0, 2);
    put_le(&directory, 0, 2);  // comment
    put_le(&directory, 0, 2);  // disk
    put_le(&directory, 0, 2);  // internal attributes
    put_le(&directory, 0, 4);  // external attributes
    put_le(&directory, zip64 ? kMarker : local_offset, 4);
    directory += entry.name;
    if (zip64) {
      put_le(&directory, 1, 2);
      put_le(&directory, 24, 2);
      put_le(&directory, entry.data.size(), 8);
      put_le(&directory, entry.data.size(), 8);
      put_le(&directory, local_offset, 8);
    }
  }
  const uint64_t directory_offset = out.size();
  out += directory;
  if (zip64) {
    const uint64_t record_offset = out.size();
    put_le(&out, 0x06064b50, 4);
    put_le(&out, 44, 8);
    put_le(&out, 45, 2);
    put_le(&out, 45, 2);
    put_le(&out, 0, 4);
    put_le(&out, 0, 4);
    put_le(&out, entries.size(), 8);
    put_le(&out, entries.size(), 8);
    put_le(&out, directory.size(), 8);
    put_le(&out, directory_offset, 8);
    put_le(&out, 0x07064b50, 4);
    put_le(&out, 0, 4);
    put_le(&out, record_offset, 8);
    put_le(&out, 1, 4);
  }
  put_le(&out, 0x06054b50, 4);
  put_le(&out, 0, 4);  // disk numbers
  put_le(&out, zip64 ? 0xffff : entries.size(), 2);
  put_le(&out, zip64 ? 0xffff : entries.size(), 2);
  put_le(&out, zip64 ? kMarker : directory.size(), 4);
  put_le(&out, zip64 ? kMarker : directory_offset, 4);
  put_le(&out, 0, 2);
  return out;
}


std::string state_dict_pickle(const std::vector<TensorSpec>& specs) {
  Pickle p;
  p.proto(2).op('}').mark();
  for (const TensorSpec& s : specs) p.str(s.name).tensor(s.key, s.numel, s.shape, s.strides, s.offset);
  return p.op('u').op('.').bytes();
}

std::string float_bytes(int count) {
  std::vector<float> values(count);
  for (int i = 0; i < count; ++i) values[i] = static_cast<float>(i);
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

std::string checkpoint(const std::string& pickle, const std::vector<ZipEntry>& storages, bool zip64) {
  std::vector<ZipEntry> entries = {{"archive/data.pkl", pickle}};
  entries.insert(entries.end(), storages.begin(), storages.end());
  entries.push_back({"archive/version", "3\n"});
  return make_zip(entries, zip64);
}

std::string write_state_dict(const std::vector<StoredTensor>& tensors) {
  Pickle p;
  p.proto(2).op('}').mark();
  std::vector<ZipEntry> storages;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const StoredTensor& t = tensors[i];
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    std::vector<int64_t> strides(t.shape.size(), 1);
    for (size_t d = t.shape.size(); d-- > 1;) strides[d - 1] = strides[d] * t.shape[d];
    const std::string key = std::to_string(i);
    p.str(t.name).tensor(key, numel, t.shape, strides, 0, t.storage_type);
    storages.push_back({"archive/data/" + key, t.bytes});
  }
  return checkpoint(p.op('u').op('.').bytes(), storages);
}

}  // namespace dinov3::test
