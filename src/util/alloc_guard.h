// Allocation failures become statuses at the library's API boundary. Sizes are checked against the
// bytes present before anything is allocated for them, so reaching these handlers means the machine
// (or an RLIMIT_AS) really ran out: std::bad_alloc, or std::length_error for a size no container holds.
#pragma once

#include <new>
#include <stdexcept>
#include <string>

#include "dinov3/status.h"

namespace dinov3 {

// Runs `body` (returning a Status or a Result) and turns an allocation failure inside it into
// kOutOfMemory: "<what>: out of memory".
template <typename Body>
auto guard_allocations(const char* what, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory, std::string(what) + ": out of memory");
  } catch (const std::length_error&) {
    return make_error(ErrorCode::kOutOfMemory, std::string(what) + ": a size too large to allocate");
  }
}

}  // namespace dinov3
