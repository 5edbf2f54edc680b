// 8-bit RGB PNG encoding through libpng, for the pictures the dense-feature tools write. libpng reports
// failures by longjmp; everything it touches lives in the context, so no C++ object with a destructor is
// live across the jump.
#include <png.h>

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "dinov3/image.h"
#include "image/png_handlers.h"
#include "io/file_util.h"

namespace dinov3 {
namespace {

struct PngWriter {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::vector<uint8_t>* out = nullptr;
  bool out_of_memory = false;
  char message[256] = {};
};

void append_bytes(png_structp png, png_bytep data, size_t n) {
  auto* w = static_cast<PngWriter*>(png_get_io_ptr(png));
  try {
    w->out->insert(w->out->end(), data, data + n);
  } catch (const std::bad_alloc&) {
    w->out_of_memory = true;
    png_error(png, "out of memory");
  }
}

void flush_nothing(png_structp) {}

bool compress(PngWriter* w, const ImageRGB8& image) {
  if (setjmp(png_jmpbuf(w->png))) return false;
  png_set_write_fn(w->png, w, append_bytes, flush_nothing);
  png_set_IHDR(w->png, w->info, static_cast<png_uint_32>(image.width), static_cast<png_uint_32>(image.height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(w->png, w->info);
  const size_t stride = size_t(image.width) * 3;
  for (int y = 0; y < image.height; ++y) {
    // libpng takes a non-const row pointer but does not write through it.
    png_write_row(w->png, const_cast<png_bytep>(image.pixels.data() + size_t(y) * stride));
  }
  png_write_end(w->png, nullptr);
  return true;
}

}  // namespace

Result<std::vector<uint8_t>> encode_png(const ImageRGB8& image) {
  if (image.width <= 0 || image.height <= 0 || image.pixels.size() != size_t(image.width) * size_t(image.height) * 3) {
    return make_error(ErrorCode::kInvalidArgument, "encode_png: the image is empty or its pixel buffer has the wrong size");
  }
  std::vector<uint8_t> bytes;
  PngWriter w;
  w.out = &bytes;
  w.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &w, image_detail::on_png_error<PngWriter>,
                                  image_detail::on_png_warning);
  if (w.png == nullptr) return make_error(ErrorCode::kOutOfMemory, "cannot create a PNG writer");
  w.info = png_create_info_struct(w.png);
  if (w.info == nullptr) {
    png_destroy_write_struct(&w.png, nullptr);
    return make_error(ErrorCode::kOutOfMemory, "cannot create a PNG writer");
  }
  const bool ok = compress(&w, image);
  png_destroy_write_struct(&w.png, &w.info);
  if (ok) return bytes;
  if (w.out_of_memory) return make_error(ErrorCode::kOutOfMemory, "out of memory while encoding a PNG");
  return make_error(ErrorCode::kInternal, std::string("PNG encoding failed: ") + w.message);
}

Status write_png_file(const std::string& path, const ImageRGB8& image, bool overwrite) {
  DINOV3_ASSIGN_OR_RETURN(const std::vector<uint8_t> bytes, encode_png(image));
  return write_bytes_atomic(path, overwrite, std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace dinov3
