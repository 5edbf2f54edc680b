// Finding NaNs and infinities in float arrays (weights as they load, model inputs, saved components).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace dinov3 {

// The index of the first NaN or infinity in x[0, n), or -1. Blocks are tested without branches (exponent
// bits all ones), so the common all-finite case runs at memory speed.
inline int64_t first_non_finite(const float* x, int64_t n) {
  constexpr int64_t kBlock = 4096;
  for (int64_t begin = 0; begin < n; begin += kBlock) {
    const int64_t end = std::min(n, begin + kBlock);
    uint32_t any = 0;
    for (int64_t i = begin; i < end; ++i) {
      uint32_t bits;
      std::memcpy(&bits, x + i, sizeof(bits));
      any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }
    if (any == 0) continue;
    for (int64_t i = begin; i < end; ++i)
      if (!std::isfinite(x[i])) return i;
  }
  return -1;
}

}  // namespace dinov3
