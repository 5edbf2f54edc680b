// open_safetensors on any bytes, then every tensor it accepts through load_f32: the header parser, the
// offset and size checks, and the dtype conversion.
#include "dinov3/tensor_file.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path =
      fuzz::write_file("model.safetensors", std::string_view(reinterpret_cast<const char*>(data), size));
  Result<TensorArchive> archive = open_safetensors(path);
  if (!archive.ok()) return 0;
  for (const RawTensor& raw : archive->tensors()) {
    fuzz::expect(raw.nbytes <= size, "a tensor spans more bytes than the file");
    Result<Tensor> t = archive->load_f32(raw);
    if (t.ok()) fuzz::expect(t->numel() == raw.numel(), "a loaded tensor has the wrong number of values");
  }
  return 0;
}
