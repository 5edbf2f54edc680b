// Round-to-nearest for the library's own arithmetic on the caller's thread, whatever rounding mode the
// application set (fesetround): weight preparation rounds values onto the int8 grid and divides scales, and
// another mode would bias them. Kernels get the same from the thread pool, which runs every task with
// round-to-nearest and FTZ/DAZ (thread_pool.cpp).
#pragma once

#include <cfenv>

namespace dinov3::cpu {

class ScopedRoundToNearest {
 public:
  ScopedRoundToNearest() : saved_(std::fegetround()) {
    if (saved_ != FE_TONEAREST) std::fesetround(FE_TONEAREST);
  }
  ~ScopedRoundToNearest() {
    if (saved_ != FE_TONEAREST) std::fesetround(saved_);
  }
  ScopedRoundToNearest(const ScopedRoundToNearest&) = delete;
  ScopedRoundToNearest& operator=(const ScopedRoundToNearest&) = delete;

 private:
  int saved_;
};

}  // namespace dinov3::cpu
