// A restricted pickle reader for the data.pkl of a torch.save'd state_dict. It understands the opcodes
// pickle protocols 2 to 5 use for dicts, tuples, numbers and strings, and resolves globals against a
// short allow-list (OrderedDict, the tensor rebuild functions, the torch storage types); any other
// global is refused by name. Nothing is executed: the allowed callables only produce descriptors.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dinov3/status.h"
#include "dinov3/tensor.h"
#include "dinov3/tensor_file.h"

namespace dinov3::io {

// A storage named by a persistent id ('storage', <type>, key, location, numel); its bytes are the
// archive's data/<key> record.
struct PickledStorage {
  DType dtype = DType::kU8;
  std::string key;
  int64_t numel = 0;  // elements of `dtype` the storage claims to hold
};

// A view into a storage, as torch._utils._rebuild_tensor_v2 describes it.
struct PickledTensor {
  std::string name;
  size_t storage = 0;  // index into PickledStateDict::storages
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements
};

struct PickledStateDict {
  std::vector<PickledStorage> storages;
  std::vector<PickledTensor> tensors;  // in pickle order; entries that are not tensors are skipped
};

// Interprets `pickle`, whose top-level object must be a dict (or OrderedDict) keyed by strings.
// Fails on unknown opcodes, forbidden globals, malformed arguments and exceeded limits.
Result<PickledStateDict> read_state_dict_pickle(std::span<const uint8_t> pickle);

}  // namespace dinov3::io
