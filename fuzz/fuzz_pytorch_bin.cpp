// open_pytorch_bin on any bytes: zip and pickle together, the storage and view checks, and every tensor
// it accepts through load_f32.
#include "dinov3/tensor_file.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::write_file("pytorch_model.bin", std::string_view(reinterpret_cast<const char*>(data), size));
  Result<TensorArchive> archive = open_pytorch_bin(path);
  if (!archive.ok()) return 0;
  for (const RawTensor& raw : archive->tensors()) {
    fuzz::expect(raw.nbytes <= size, "a tensor spans more bytes than the file");
    Result<Tensor> t = archive->load_f32(raw);
    if (t.ok()) {
      fuzz::expect(t->numel() == raw.numel(), "a loaded tensor has the wrong number of values");
      // Memory follows the bytes present: no view may hold more elements than the bytes it spans.
      fuzz::expect(static_cast<uint64_t>(t->numel()) * dtype_size(raw.dtype) <= raw.nbytes,
                   "a tensor holds more elements than its bytes");
    }
  }
  return 0;
}
