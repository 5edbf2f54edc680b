// open_pytorch_bin on any bytes: zip and pickle together, the storage and view checks, and every tensor
// it accepts through load_f32.
#include "dinov3/tensor_file.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<TensorArchive> archive =
      open_pytorch_bin(fuzz::write_file("pytorch_model.bin", std::string_view(reinterpret_cast<const char*>(data), size)));
  if (archive.ok()) fuzz::load_every_tensor(*archive, size);
  return 0;
}
