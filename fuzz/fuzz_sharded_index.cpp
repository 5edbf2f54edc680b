// open_sharded_safetensors on any index and shards: the input is model.safetensors.index.json's text, a NUL,
// the first shard's bytes, a NUL, the second's (model-00001-of-00002.safetensors and -00002-). Covers the
// index parser, the shard checks against it, and every tensor of the merged archive through load_f32.
#include "dinov3/tensor_file.h"
#include "fuzz_util.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<std::string_view> parts = fuzz::split(data, size, 3);
  const std::string index = fuzz::write_file("model.safetensors.index.json", parts[0]);
  fuzz::write_file("model-00001-of-00002.safetensors", parts[1]);
  fuzz::write_file("model-00002-of-00002.safetensors", parts[2]);
  Result<TensorArchive> archive = open_sharded_safetensors(index);
  if (archive.ok()) fuzz::load_every_tensor(*archive, size);
  return 0;
}
