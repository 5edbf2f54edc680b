// EXIF orientation: reading tag 0x0112 from IFD0 and applying ImageOps.exif_transpose's transform.
#pragma once

#include <cstddef>
#include <cstdint>

#include "dinov3/image.h"

namespace dinov3::image_detail {

// The orientation (1..8) in an EXIF block: a TIFF structure starting with "II" or "MM", optionally
// preceded by the "Exif\0\0" header that JPEG's APP1 carries. 1 when the block is malformed or has no
// valid orientation, as Pillow then leaves the image alone.
int exif_orientation(const uint8_t* data, size_t size);

// Flips and rotates `image` so that it displays upright: orientation 2..8 map to FLIP_LEFT_RIGHT,
// ROTATE_180, FLIP_TOP_BOTTOM, TRANSPOSE, ROTATE_270, TRANSVERSE, ROTATE_90 as in Pillow.
Status apply_exif_orientation(int orientation, ImageRGB8* image);

}  // namespace dinov3::image_detail
