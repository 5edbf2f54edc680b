// The pieces of Pillow's convert('RGB') that more than one decoder needs (libImaging/Convert.c and
// Palette.c in Pillow 9.4).
#pragma once

#include <array>
#include <cstdint>

namespace dinov3::image_detail {

// A "P" image's palette. Pillow starts every palette as a gray ramp (entry i = (i, i, i)) and
// overwrites only the entries the file defines, so an index past a short palette reads gray, not black.
class Palette {
 public:
  Palette() {
    for (int i = 0; i < 256; ++i) set(i, static_cast<uint8_t>(i), static_cast<uint8_t>(i), static_cast<uint8_t>(i));
  }
  void set(int index, uint8_t r, uint8_t g, uint8_t b) {
    rgb_[index * 3 + 0] = r;
    rgb_[index * 3 + 1] = g;
    rgb_[index * 3 + 2] = b;
  }
  const uint8_t* lookup(uint8_t index) const { return &rgb_[index * 3]; }

 private:
  std::array<uint8_t, 256 * 3> rgb_{};
};

// Pillow's (a * b + 127) / 255 approximation (MULDIV255), which cmyk2rgb uses.
inline int pillow_muldiv255(int a, int b) {
  const int t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

// cmyk2rgb: R = clip(255 - K - C * (255 - K) / 255), with Pillow's rounding.
inline void pillow_cmyk_to_rgb(const uint8_t* cmyk, uint8_t* rgb) {
  const int not_k = 255 - cmyk[3];
  for (int c = 0; c < 3; ++c) {
    const int v = not_k - pillow_muldiv255(cmyk[c], not_k);
    rgb[c] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

}  // namespace dinov3::image_detail
