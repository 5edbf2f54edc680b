// The restricted unpickler on any bytes (the data.pkl of a pytorch_model.bin).
#include <span>

#include "fuzz_util.h"
#include "io/pickle_reader.h"

using namespace dinov3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<io::PickledStateDict> state = io::read_state_dict_pickle(std::span<const uint8_t>(data, size));
  if (!state.ok()) return 0;
  for (const io::PickledTensor& t : state->tensors) {
    fuzz::expect(t.storage < state->storages.size(), "a tensor refers to a storage that does not exist");
    fuzz::expect(t.shape.size() == t.strides.size(), "a tensor has as many strides as sizes");
  }
  return 0;
}
