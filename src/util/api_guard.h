// What every entry point of the library's API runs its work through (`guard_api_call`):
// - allocation failures become statuses. Sizes are checked against the bytes present before anything is
//   allocated for them, so reaching these handlers means the machine (or an RLIMIT_AS) really ran out:
//   std::bad_alloc, or std::length_error for a size no container holds;
// - the work runs in the default floating-point environment whatever the application set
//   (util/float_env.h), so its numbers do not depend on the program it runs in.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

#include "dinov3/status.h"
#include "util/float_env.h"

namespace dinov3 {

// Runs `body` (returning a Status or a Result) in the default floating-point environment and turns an
// allocation failure inside it into kOutOfMemory: "<what>: out of memory".
template <typename Body>
auto guard_api_call(const char* what, Body&& body) -> decltype(body()) {
  const ScopedDefaultFloatEnv float_env;
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory, std::string(what) + ": out of memory");
  } catch (const std::length_error&) {
    return make_error(ErrorCode::kOutOfMemory, std::string(what) + ": a size too large to allocate");
  }
}

}  // namespace dinov3
