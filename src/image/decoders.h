// The per-format decoders behind decode_image_memory. Each one turns a whole file held in memory into
// RGB8 exactly as Pillow 9.4's plugin for that format followed by convert('RGB') would.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dinov3/image.h"

namespace dinov3::image_detail {

struct DecodedImage {
  ImageRGB8 image;
  // The EXIF orientation tag (1..8), read only when DecodeOptions::exif_transpose asks for it; 1 means
  // "stored upright" and is also what a file without the tag gets.
  int exif_orientation = 1;
};

Result<DecodedImage> decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options);
Result<DecodedImage> decode_png(const uint8_t* data, size_t size, const DecodeOptions& options);
Result<DecodedImage> decode_webp(const uint8_t* data, size_t size, const DecodeOptions& options);
Result<DecodedImage> decode_bmp(const uint8_t* data, size_t size, const DecodeOptions& options);

// Refuses a width x height image before anything is allocated for it: non-positive sizes, and more
// pixels than options.max_pixels (Pillow's decompression-bomb limit by default).
Status check_image_size(int64_t width, int64_t height, const DecodeOptions& options, const char* format);

// Sizes `image` to width x height RGB pixels; kOutOfMemory instead of an exception when the
// allocation fails. The caller has already passed check_image_size.
Status allocate_image(int width, int height, ImageRGB8* image);

}  // namespace dinov3::image_detail
