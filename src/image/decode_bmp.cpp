// Windows BMP, read the way Pillow 9.4's BmpImagePlugin does: uncompressed 1/4/8-bit palette,
// 16-bit 5-5-5 and 5-6-5, 24-bit and 32-bit, bottom-up or top-down rows, BITFIELDS only with the
// channel masks Pillow accepts. Every size and offset is checked against the file before it is used.
#include <algorithm>
#include <cstring>
#include <string>

#include "image/decoders.h"
#include "image/pillow_modes.h"

namespace dinov3::image_detail {
namespace {

constexpr size_t kFileHeaderSize = 14;
constexpr uint32_t kCompressionRaw = 0, kCompressionRle8 = 1, kCompressionRle4 = 2, kCompressionBitfields = 3;

uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

Status bmp_error(const std::string& what) { return make_error(ErrorCode::kFormatError, "invalid BMP data: " + what); }
Status bmp_unsupported(const std::string& what) {
  return make_error(ErrorCode::kUnsupported, "unsupported BMP: " + what);
}

// How the bytes of one pixel become RGB.
enum class PixelLayout { kPalette, kBgr15, kBgr16, kBytes };

struct BmpLayout {
  PixelLayout layout = PixelLayout::kBytes;
  int r = 2, g = 1, b = 0;  // byte offsets of the channels, for kBytes
};

// The pixel layout Pillow derives from the bit depth and, for BITFIELDS, the exact channel masks.
Result<BmpLayout> pixel_layout(int bits, uint32_t compression, const uint32_t masks[4]) {
  BmpLayout out;
  if (bits <= 8) {
    out.layout = PixelLayout::kPalette;
    return out;
  }
  if (compression == kCompressionRaw) {
    out.layout = bits == 16 ? PixelLayout::kBgr15 : PixelLayout::kBytes;  // 16-bit defaults to 5-5-5
    return out;
  }
  const uint32_t r = masks[0], g = masks[1], b = masks[2], a = masks[3];
  if (bits == 16 && r == 0xF800 && g == 0x7E0 && b == 0x1F) {
    out.layout = PixelLayout::kBgr16;
  } else if (bits == 16 && r == 0x7C00 && g == 0x3E0 && b == 0x1F) {
    out.layout = PixelLayout::kBgr15;
  } else if (bits == 24 && r == 0xFF0000 && g == 0xFF00 && b == 0xFF) {
    out = {PixelLayout::kBytes, 2, 1, 0};
  } else if (bits == 32 && r == 0xFF0000 && g == 0xFF00 && b == 0xFF && (a == 0 || a == 0xFF000000)) {
    out = {PixelLayout::kBytes, 2, 1, 0};  // BGRX, BGRA
  } else if (bits == 32 && r == 0xFF000000 && g == 0xFF0000 && b == 0xFF00 && (a == 0 || a == 0xFF)) {
    out = {PixelLayout::kBytes, 3, 2, 1};  // XBGR, ABGR
  } else if (bits == 32 && r == 0xFF && g == 0xFF00 && b == 0xFF0000 && a == 0xFF000000) {
    out = {PixelLayout::kBytes, 0, 1, 2};  // RGBA
  } else if (bits == 32 && r == 0 && g == 0 && b == 0 && a == 0) {
    out = {PixelLayout::kBytes, 2, 1, 0};  // Pillow reads all-zero masks as BGRA
  } else {
    return bmp_unsupported("bitfields layout");
  }
  return out;
}

// 5- and 6-bit channels widen as Pillow's unpackers do: v * 255 / max, truncated.
inline uint8_t widen(int v, int max) { return static_cast<uint8_t>(v * 255 / max); }

void convert_row(const uint8_t* src, int width, int bits, const BmpLayout& layout, const Palette& palette,
                 uint8_t* dst) {
  switch (layout.layout) {
    case PixelLayout::kPalette:
      for (int x = 0; x < width; ++x) {
        int index;
        if (bits == 8) {
          index = src[x];
        } else if (bits == 4) {
          index = (src[x >> 1] >> (x & 1 ? 0 : 4)) & 0xF;
        } else {
          index = (src[x >> 3] >> (7 - (x & 7))) & 1;
        }
        std::memcpy(dst + 3 * x, palette.lookup(static_cast<uint8_t>(index)), 3);
      }
      break;
    case PixelLayout::kBgr15:
    case PixelLayout::kBgr16:
      for (int x = 0; x < width; ++x) {
        const int p = le16(src + 2 * x);
        uint8_t* o = dst + 3 * x;
        if (layout.layout == PixelLayout::kBgr15) {
          o[0] = widen((p >> 10) & 31, 31);
          o[1] = widen((p >> 5) & 31, 31);
        } else {
          o[0] = widen((p >> 11) & 31, 31);
          o[1] = widen((p >> 5) & 63, 63);
        }
        o[2] = widen(p & 31, 31);
      }
      break;
    case PixelLayout::kBytes: {
      const int step = bits / 8;
      for (int x = 0; x < width; ++x) {
        const uint8_t* s = src + step * x;
        dst[3 * x] = s[layout.r];
        dst[3 * x + 1] = s[layout.g];
        dst[3 * x + 2] = s[layout.b];
      }
      break;
    }
  }
}

}  // namespace

Result<DecodedImage> decode_bmp(const uint8_t* data, size_t size, const DecodeOptions& options) {
  if (size < kFileHeaderSize + 4) return make_error(ErrorCode::kFormatError, "truncated BMP header");
  uint32_t offset = le32(data + 10);
  const uint32_t header_size = le32(data + kFileHeaderSize);
  if (header_size != 12 && header_size != 40 && header_size != 64 && header_size != 108 && header_size != 124) {
    return bmp_unsupported("header size " + std::to_string(header_size));
  }
  if (size < kFileHeaderSize + header_size) return make_error(ErrorCode::kFormatError, "truncated BMP header");
  const uint8_t* h = data + kFileHeaderSize + 4;  // the header after its size field

  int64_t width, height;
  int bits;
  bool top_down = false;
  uint32_t compression = kCompressionRaw, colors = 0;
  size_t palette_entry = 4;
  uint32_t masks[4] = {0, 0, 0, 0};
  if (header_size == 12) {  // OS/2 1.x: 16-bit sizes, 3-byte palette entries
    width = le16(h);
    height = le16(h + 2);
    bits = le16(h + 6);
    palette_entry = 3;
  } else {
    width = le32(h);
    // A negative height (top byte 0xFF, as Pillow tests it) means rows are stored top-down.
    const uint32_t raw_height = le32(h + 4);
    top_down = h[7] == 0xFF;
    height = top_down ? (int64_t{1} << 32) - raw_height : raw_height;
    bits = le16(h + 10);
    compression = le32(h + 12);
    colors = le32(h + 28);
    if (compression == kCompressionBitfields) {
      // Version 3 headers keep the three masks just after the header; later versions inside it.
      const size_t at = header_size >= 52 ? kFileHeaderSize + 4 + 36 : kFileHeaderSize + header_size;
      const int count = header_size >= 52 ? 4 : 3;
      if (size < at + 4 * size_t(count)) return make_error(ErrorCode::kFormatError, "truncated BMP header");
      for (int i = 0; i < count; ++i) masks[i] = le32(data + at + 4 * i);
    }
  }
  if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32) {
    return bmp_unsupported(std::to_string(bits) + " bits per pixel");
  }
  if (compression == kCompressionRle8 || compression == kCompressionRle4) {
    return bmp_unsupported("RLE compression");
  }
  if (compression != kCompressionRaw && compression != kCompressionBitfields) {
    return bmp_unsupported("compression " + std::to_string(compression));
  }
  if (compression == kCompressionBitfields && bits <= 8) return bmp_error("bitfields on a palette image");
  DINOV3_ASSIGN_OR_RETURN(const BmpLayout layout, pixel_layout(bits, compression, masks));
  DINOV3_RETURN_IF_ERROR(check_image_size(width, height, options, "BMP"));

  Palette palette;
  if (layout.layout == PixelLayout::kPalette) {
    if (colors == 0) colors = 1u << bits;
    if (colors > 256) return bmp_unsupported("palette of " + std::to_string(colors) + " colors");
    // An offset that points at the palette itself is read as "the pixels follow the palette", as Pillow does.
    if (offset == kFileHeaderSize + header_size) offset += 4 * colors;
    const size_t palette_at = kFileHeaderSize + header_size;
    const size_t available = palette_at < size ? (size - palette_at) / palette_entry : 0;
    const size_t entries = std::min<size_t>(colors, available);
    for (size_t i = 0; i < entries; ++i) {
      const uint8_t* e = data + palette_at + i * palette_entry;
      palette.set(static_cast<int>(i), e[2], e[1], e[0]);
    }
  }

  const uint64_t stride = ((uint64_t(width) * uint64_t(bits) + 31) / 32) * 4;
  if (offset > size || (size - offset) / stride < uint64_t(height)) {
    return make_error(ErrorCode::kFormatError, "truncated BMP pixel data");
  }
  DecodedImage out;
  DINOV3_RETURN_IF_ERROR(allocate_image(static_cast<int>(width), static_cast<int>(height), &out.image));
  const size_t out_stride = size_t(width) * 3;
  for (int64_t y = 0; y < height; ++y) {
    const int64_t stored_row = top_down ? y : height - 1 - y;
    convert_row(data + offset + stored_row * stride, static_cast<int>(width), bits, layout, palette,
                out.image.pixels.data() + y * out_stride);
  }
  return out;
}

}  // namespace dinov3::image_detail
