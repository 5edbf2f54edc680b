// float32 <-> bfloat16 (the upper half of a float32). Rounding is to nearest, ties to even; like the
// AVX512_BF16 conversions, subnormal inputs become signed zero and NaNs stay (quiet) NaNs. Every path
// (vector and scalar) converts with this same integer formula, so they all see identical bf16 operands.
#pragma once

#include <cstdint>
#include <cstring>

namespace dinov3::cpu::lowp {

inline uint16_t bf16_from_float(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7F800000u) == 0) return static_cast<uint16_t>((u >> 16) & 0x8000u);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float float_from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace dinov3::cpu::lowp
