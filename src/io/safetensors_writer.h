// The bytes of a float32 safetensors file, for writers that place the file themselves (save_safetensors
// writes one atomically; embed publishes one together with its index).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dinov3/tensor_file.h"
#include "io/file_util.h"

namespace dinov3 {

Status write_safetensors(const WriteFn& write, const std::vector<NamedTensor>& tensors,
                         const std::map<std::string, std::string>& metadata);

}  // namespace dinov3
