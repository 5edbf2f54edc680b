#include "image/exif.h"

#include <cstring>
#include <utility>

#include "image/decoders.h"

namespace dinov3::image_detail {
namespace {

constexpr uint16_t kOrientationTag = 0x0112;
constexpr uint16_t kTypeShort = 3;
constexpr uint16_t kTypeLong = 4;

// Reads TIFF integers in the block's byte order, refusing any read past its end.
class TiffReader {
 public:
  TiffReader(const uint8_t* data, size_t size, bool big_endian) : data_(data), size_(size), big_endian_(big_endian) {}

  bool u16(size_t offset, uint16_t* out) const {
    if (offset > size_ || size_ - offset < 2) return false;
    const uint8_t* p = data_ + offset;
    *out = big_endian_ ? static_cast<uint16_t>(p[0] << 8 | p[1]) : static_cast<uint16_t>(p[1] << 8 | p[0]);
    return true;
  }
  bool u32(size_t offset, uint32_t* out) const {
    if (offset > size_ || size_ - offset < 4) return false;
    const uint8_t* p = data_ + offset;
    *out = big_endian_ ? (uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3])
                       : (uint32_t{p[3]} << 24 | uint32_t{p[2]} << 16 | uint32_t{p[1]} << 8 | p[0]);
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  bool big_endian_;
};

}  // namespace

int exif_orientation(const uint8_t* data, size_t size) {
  static constexpr char kExifHeader[] = {'E', 'x', 'i', 'f', '\0', '\0'};
  if (size >= sizeof(kExifHeader) && std::memcmp(data, kExifHeader, sizeof(kExifHeader)) == 0) {
    data += sizeof(kExifHeader);
    size -= sizeof(kExifHeader);
  }
  if (size < 8) return 1;
  bool big_endian;
  if (data[0] == 'I' && data[1] == 'I') {
    big_endian = false;
  } else if (data[0] == 'M' && data[1] == 'M') {
    big_endian = true;
  } else {
    return 1;
  }
  const TiffReader tiff(data, size, big_endian);
  uint16_t magic = 0, entries = 0;
  uint32_t ifd0 = 0;
  if (!tiff.u16(2, &magic) || magic != 42 || !tiff.u32(4, &ifd0) || !tiff.u16(ifd0, &entries)) return 1;
  for (uint32_t i = 0; i < entries; ++i) {
    const size_t entry = size_t{ifd0} + 2 + size_t{i} * 12;
    uint16_t tag = 0, type = 0;
    if (!tiff.u16(entry, &tag) || !tiff.u16(entry + 2, &type)) return 1;
    if (tag != kOrientationTag) continue;
    // The value sits in the entry itself (one SHORT or LONG fits in the 4-byte value field).
    uint32_t value = 0;
    if (type == kTypeShort) {
      uint16_t v = 0;
      if (!tiff.u16(entry + 8, &v)) return 1;
      value = v;
    } else if (type == kTypeLong) {
      if (!tiff.u32(entry + 8, &value)) return 1;
    } else {
      return 1;
    }
    return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
  }
  return 1;
}

Status apply_exif_orientation(int orientation, ImageRGB8* image) {
  if (orientation < 2 || orientation > 8) return {};
  // Output pixel (x, y) reads source pixel (u, v) = transposed ? (y, x) : (x, y), each coordinate
  // mirrored where flipped. Orientation 2..8 are Pillow's FLIP_LEFT_RIGHT, ROTATE_180, FLIP_TOP_BOTTOM,
  // TRANSPOSE, ROTATE_270 (90 degrees clockwise), TRANSVERSE and ROTATE_90.
  struct Mapping {
    bool transposed, flip_x, flip_y;
  };
  static constexpr Mapping kMappings[9] = {{false, false, false}, {false, false, false}, {false, true, false},
                                           {false, true, true},   {false, false, true},  {true, false, false},
                                           {true, false, true},   {true, true, true},    {true, true, false}};
  const Mapping m = kMappings[orientation];
  const int w = image->width, h = image->height;
  ImageRGB8 out;
  DINOV3_RETURN_IF_ERROR(allocate_image(m.transposed ? h : w, m.transposed ? w : h, &out));
  for (int y = 0; y < out.height; ++y) {
    for (int x = 0; x < out.width; ++x) {
      int u = m.transposed ? y : x, v = m.transposed ? x : y;
      if (m.flip_x) u = w - 1 - u;
      if (m.flip_y) v = h - 1 - v;
      std::memcpy(&out.pixels[(size_t(y) * out.width + x) * 3], &image->pixels[(size_t(v) * w + u) * 3], 3);
    }
  }
  *image = std::move(out);
  return {};
}

}  // namespace dinov3::image_detail
