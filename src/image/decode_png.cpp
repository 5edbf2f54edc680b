// PNG through libpng, asking it only for raw samples (one byte per sample below 8 bits, interlace
// undone); the conversion to RGB then follows Pillow 9.4's PNG modes, which differ from libpng's own
// transforms in places: 16-bit gray is mode "I" and clamps to 255, short palettes fall back to a gray
// ramp, and transparency never turns into alpha.
#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "image/decoders.h"
#include "image/exif.h"
#include "image/png_handlers.h"
#include "image/pillow_modes.h"

namespace dinov3::image_detail {
namespace {

struct PngContext {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  const DecodeOptions* options = nullptr;
  DecodedImage* out = nullptr;
  bool exif_found = false;
  std::vector<uint8_t> raw;  // libpng's rows: one row, or the whole image when interlaced
  std::vector<png_bytep> row_pointers;
  Palette palette;
  bool truncated = false;
  uint64_t image_data = 0;  // IDAT bytes present (scan_chunks)
  char message[256] = {};
  Status status;  // a failure found by this code rather than by libpng
};

void read_png_bytes(png_structp png, png_bytep dst, size_t n) {
  auto* ctx = static_cast<PngContext*>(png_get_io_ptr(png));
  if (ctx->size - ctx->pos < n) {
    ctx->truncated = true;
    png_error(png, "truncated PNG data");
  }
  std::memcpy(dst, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

void take_exif(PngContext* ctx) {
  png_uint_32 size = 0;
  png_bytep exif = nullptr;
  if (png_get_eXIf_1(ctx->png, ctx->info, &size, &exif) != 0 && exif != nullptr) {
    ctx->out->exif_orientation = exif_orientation(exif, size);
    ctx->exif_found = true;
  }
}

// One walk over the chunk headers up to IEND. image_data: bytes of image data (IDAT) present, a chunk
// running past the end counting only what is there. runs_past_end: a chunk claims more bytes (its data and
// CRC) than the file holds after its header. libpng reads every chunk up to IEND and would fail at the end of
// the data all the same, but only after allocating and clearing the length an ancillary chunk's header
// claims: 911 MB for a 1 KB file whose zTXt said so (a ten-minute fuzzing run found it; 3.4 s per file).
// The data ending between two chunks is left to libpng, which says what it misses.
struct ChunkScan {
  uint64_t image_data = 0;
  bool runs_past_end = false;
};

ChunkScan scan_chunks(const uint8_t* data, size_t size) {
  ChunkScan scan;
  for (size_t pos = 8; pos <= size && size - pos >= 8;) {
    const uint64_t length = uint64_t{data[pos]} << 24 | uint64_t{data[pos + 1]} << 16 | uint64_t{data[pos + 2]} << 8 |
                            data[pos + 3];
    const size_t available = size - pos - 8;
    if (std::memcmp(data + pos + 4, "IDAT", 4) == 0) scan.image_data += std::min<uint64_t>(length, available);
    if (length + 4 > available) {
      scan.runs_past_end = true;
      break;
    }
    if (std::memcmp(data + pos + 4, "IEND", 4) == 0) break;
    pos += 8 + static_cast<size_t>(length) + 4;  // length, type, data, CRC
  }
  return scan;
}

// Deflate cannot expand data more than 1032 times (a 258-byte match in two bits), so image data shorter
// than that fraction of the samples the header promises cannot hold them: the file is truncated, and it
// is refused before any pixel memory is spent on it.
constexpr uint64_t kMaxDeflateRatio = 1032;

// One row of raw samples to RGB, as Pillow's unpacker for the PNG's mode and then convert('RGB').
void convert_row(const uint8_t* src, int width, int color_type, int bit_depth, const Palette& palette, uint8_t* dst) {
  switch (color_type) {
    case PNG_COLOR_TYPE_GRAY:
      if (bit_depth == 16) {
        // Mode "I": the 16-bit value itself, which convert('RGB') clamps to 255.
        for (int x = 0; x < width; ++x) {
          const int v = src[2 * x] << 8 | src[2 * x + 1];
          dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
        }
      } else {
        // 1, 2 and 4 bits scale to the full range (0/255, x85, x17), as Pillow's "1", "L;2", "L;4".
        const int scale = 255 / ((1 << bit_depth) - 1);
        for (int x = 0; x < width; ++x) {
          dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = static_cast<uint8_t>(src[x] * scale);
        }
      }
      break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: {
      // 16-bit keeps the high byte (Pillow's "LA;16B").
      const int step = bit_depth == 16 ? 4 : 2;
      for (int x = 0; x < width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = src[step * x];
      break;
    }
    case PNG_COLOR_TYPE_RGB:
      if (bit_depth == 8) {
        std::memcpy(dst, src, size_t(width) * 3);
      } else {
        for (int x = 0; x < 3 * width; ++x) dst[x] = src[2 * x];
      }
      break;
    case PNG_COLOR_TYPE_RGB_ALPHA: {
      const int sample = bit_depth / 8;
      for (int x = 0; x < width; ++x) {
        for (int c = 0; c < 3; ++c) dst[3 * x + c] = src[(4 * x + c) * sample];
      }
      break;
    }
    case PNG_COLOR_TYPE_PALETTE:
      for (int x = 0; x < width; ++x) std::memcpy(dst + 3 * x, palette.lookup(src[x]), 3);
      break;
  }
}

// Runs libpng over the file. Everything it touches lives in *ctx, so nothing in this frame is live
// across a longjmp. Returns false on failure: ctx->message holds libpng's reason, or ctx->status ours.
bool decompress(PngContext* ctx) {
  if (setjmp(png_jmpbuf(ctx->png))) return false;
  png_structp png = ctx->png;
  png_infop info = ctx->info;
  png_set_read_fn(png, ctx, read_png_bytes);
  // libpng's own cap (1M per side) would refuse long strips Pillow opens; the pixel budget governs.
  png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
  png_read_info(png, info);

  png_uint_32 width = 0, height = 0;
  int bit_depth = 0, color_type = 0;
  png_get_IHDR(png, info, &width, &height, &bit_depth, &color_type, nullptr, nullptr, nullptr);
  ctx->status = check_image_size(width, height, *ctx->options, "PNG");
  if (!ctx->status.ok()) return false;
  const uint64_t sample_bytes = uint64_t{height} * ((uint64_t{width} * png_get_channels(png, info) * bit_depth + 7) / 8);
  if (ctx->image_data * kMaxDeflateRatio < sample_bytes) {
    ctx->truncated = true;
    return false;
  }
  if (ctx->options->exif_transpose) take_exif(ctx);

  if (color_type == PNG_COLOR_TYPE_PALETTE) {
    png_colorp entries = nullptr;
    int count = 0;
    if (png_get_PLTE(png, info, &entries, &count) != 0) {
      for (int i = 0; i < count && i < 256; ++i) ctx->palette.set(i, entries[i].red, entries[i].green, entries[i].blue);
    }
  }
  if (bit_depth < 8) png_set_packing(png);
  const int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);

  ctx->status = allocate_image(static_cast<int>(width), static_cast<int>(height), &ctx->out->image);
  if (!ctx->status.ok()) return false;
  uint8_t* pixels = ctx->out->image.pixels.data();
  const size_t stride = size_t(width) * 3;
  const int w = static_cast<int>(width);
  if (passes == 1) {
    ctx->raw.resize(row_bytes);
    for (png_uint_32 y = 0; y < height; ++y) {
      png_read_row(png, ctx->raw.data(), nullptr);
      convert_row(ctx->raw.data(), w, color_type, bit_depth, ctx->palette, pixels + y * stride);
    }
  } else {
    // Adam7 fills every row over seven passes, so the whole raw image has to be held.
    try {
      ctx->raw.resize(row_bytes * height);
      ctx->row_pointers.resize(height);
    } catch (const std::bad_alloc&) {
      ctx->status = make_error(ErrorCode::kOutOfMemory, "cannot allocate an interlaced PNG's rows");
      return false;
    }
    for (png_uint_32 y = 0; y < height; ++y) ctx->row_pointers[y] = ctx->raw.data() + y * row_bytes;
    png_read_image(png, ctx->row_pointers.data());
    for (png_uint_32 y = 0; y < height; ++y) {
      convert_row(ctx->row_pointers[y], w, color_type, bit_depth, ctx->palette, pixels + y * stride);
    }
  }
  return true;
}

// An eXIf chunk may also follow the image data. Pillow reads what it can of the trailing chunks and
// tolerates a damaged or missing tail, so a failure here keeps the image and just finds no orientation.
void read_trailing_exif(PngContext* ctx) {
  if (setjmp(png_jmpbuf(ctx->png))) return;
  png_read_end(ctx->png, ctx->info);
  take_exif(ctx);
}

}  // namespace

Result<DecodedImage> decode_png(const uint8_t* data, size_t size, const DecodeOptions& options) {
  const ChunkScan scan = scan_chunks(data, size);
  if (scan.runs_past_end) return make_error(ErrorCode::kFormatError, "truncated PNG data");
  DecodedImage out;
  PngContext ctx;
  ctx.image_data = scan.image_data;
  ctx.data = data;
  ctx.size = size;
  ctx.options = &options;
  ctx.out = &out;
  ctx.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_png_error<PngContext>, on_png_warning);
  if (ctx.png == nullptr) return make_error(ErrorCode::kOutOfMemory, "cannot create a PNG reader");
  ctx.info = png_create_info_struct(ctx.png);
  if (ctx.info == nullptr) {
    png_destroy_read_struct(&ctx.png, nullptr, nullptr);
    return make_error(ErrorCode::kOutOfMemory, "cannot create a PNG reader");
  }
  bool ok = decompress(&ctx);
  if (ok && options.exif_transpose && !ctx.exif_found) read_trailing_exif(&ctx);
  png_destroy_read_struct(&ctx.png, &ctx.info, nullptr);
  if (ok) return out;
  if (!ctx.status.ok()) return ctx.status;
  if (ctx.truncated) return make_error(ErrorCode::kFormatError, "truncated PNG data");
  return make_error(ErrorCode::kFormatError, std::string("invalid PNG data: ") + ctx.message);
}

}  // namespace dinov3::image_detail
