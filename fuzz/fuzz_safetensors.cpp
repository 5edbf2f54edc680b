// open_safetensors on any bytes, then every tensor it accepts through load_f32: the header parser, the
// offset and size checks, and the dtype conversion.
#include "dinov3/tensor_file.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<TensorArchive> archive =
      open_safetensors(fuzz::write_file("model.safetensors", std::string_view(reinterpret_cast<const char*>(data), size)));
  if (archive.ok()) fuzz::load_every_tensor(*archive, size);
  return 0;
}
