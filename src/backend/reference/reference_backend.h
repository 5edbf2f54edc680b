#pragma once
#include <memory>

#include "dinov3/backend.h"

namespace dinov3 {
// Plain loops, reductions in double: the oracle every other backend is tested against.
Result<std::unique_ptr<Backend>> create_reference_backend(const BackendOptions& options);
}  // namespace dinov3
