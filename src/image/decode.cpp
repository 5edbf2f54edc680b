// Format detection and the public decode entry points.
#include <cstring>
#include <limits>
#include <new>
#include <string>
#include <vector>

#include "dinov3/image.h"
#include "image/decoders.h"
#include "image/exif.h"
#include "io/file_util.h"
#include "util/api_guard.h"

namespace dinov3 {
namespace image_detail {

Status check_image_size(int64_t width, int64_t height, const DecodeOptions& options, const char* format) {
  if (width <= 0 || height <= 0) {
    return make_error(ErrorCode::kFormatError, std::string(format) + " header gives an empty image (" +
                                                   std::to_string(width) + "x" + std::to_string(height) + ")");
  }
  // Both sides must fit ImageRGB8's ints; their product then fits int64 without overflow.
  constexpr int64_t kMaxSide = 1 << 30;
  if (width > kMaxSide || height > kMaxSide || width * height > options.max_pixels) {
    return make_error(ErrorCode::kOutOfMemory, std::string(format) + " image is " + std::to_string(width) + "x" +
                                                   std::to_string(height) + ", more than the limit of " +
                                                   std::to_string(options.max_pixels) + " pixels");
  }
  return {};
}

Status allocate_image(int width, int height, ImageRGB8* image) {
  try {
    image->pixels.resize(size_t(width) * size_t(height) * 3);
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory,
                      "cannot allocate a " + std::to_string(width) + "x" + std::to_string(height) + " image");
  }
  image->width = width;
  image->height = height;
  return {};
}

}  // namespace image_detail

namespace {

bool starts_with(const uint8_t* data, size_t size, const char* magic, size_t magic_size) {
  return size >= magic_size && std::memcmp(data, magic, magic_size) == 0;
}

// Picks the decoder from the leading bytes: a file's name may lie about its format, its magic does not.
Result<image_detail::DecodedImage> decode_by_magic(const uint8_t* data, size_t size, const DecodeOptions& options) {
  using namespace image_detail;
  if (starts_with(data, size, "\xFF\xD8\xFF", 3)) return decode_jpeg(data, size, options);
  if (starts_with(data, size, "\x89PNG\r\n\x1A\n", 8)) return decode_png(data, size, options);
  if (size >= 12 && starts_with(data, size, "RIFF", 4) && std::memcmp(data + 8, "WEBP", 4) == 0) {
    return decode_webp(data, size, options);
  }
  if (starts_with(data, size, "BM", 2)) return decode_bmp(data, size, options);
  if (starts_with(data, size, "GIF8", 4) || starts_with(data, size, "II*\0", 4) ||
      starts_with(data, size, "MM\0*", 4)) {
    return make_error(ErrorCode::kUnsupported, "GIF and TIFF images are not supported (JPEG, PNG, WebP, BMP are)");
  }
  if (size == 0) return make_error(ErrorCode::kFormatError, "empty file, not an image");
  return make_error(ErrorCode::kFormatError, "not an image: the bytes are not JPEG, PNG, WebP or BMP");
}

}  // namespace

Result<ImageRGB8> decode_image_memory(const uint8_t* data, size_t size, const DecodeOptions& options) {
  return guard_api_call("decode", [&]() -> Result<ImageRGB8> {
    if (data == nullptr && size > 0) return make_error(ErrorCode::kInvalidArgument, "decode: no bytes at a null pointer");
    DINOV3_ASSIGN_OR_RETURN(image_detail::DecodedImage decoded, decode_by_magic(data, size, options));
    if (options.exif_transpose) {
      DINOV3_RETURN_IF_ERROR(image_detail::apply_exif_orientation(decoded.exif_orientation, &decoded.image));
    }
    return std::move(decoded.image);
  });
}

Result<ImageRGB8> decode_image_file(const std::string& path, const DecodeOptions& options) {
  // The file whole, regular files only (a FIFO would block, /dev/zero never end); its errors name the path.
  const std::string reading = "reading " + path;
  Result<std::string> bytes = guard_api_call(reading.c_str(), [&] {
    return read_text_file(path, std::numeric_limits<size_t>::max());
  });
  if (!bytes.ok()) return bytes.status();
  Result<ImageRGB8> image =
      decode_image_memory(reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size(), options);
  if (!image.ok()) return image.status().with_context(path);
  return image;
}

}  // namespace dinov3
