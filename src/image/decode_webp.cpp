// WebP through libwebp. Pillow decodes to RGBA with libwebp's defaults (fancy upsampling) and
// convert('RGB') drops the alpha, which is the RGB libwebp gives directly.
#include <webp/decode.h>

#include <cstring>
#include <string>

#include "image/decoders.h"
#include "image/exif.h"

namespace dinov3::image_detail {
namespace {

const char* vp8_status_text(VP8StatusCode code) {
  switch (code) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated data";
    default: return "unknown error";
  }
}

uint32_t read_le32(const uint8_t* p) {
  return uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24;
}

// The orientation from the RIFF container's EXIF chunk, walking chunks after the 12-byte file header.
int find_exif_orientation(const uint8_t* data, size_t size) {
  size_t pos = 12;
  while (size - pos >= 8) {
    const uint32_t chunk_size = read_le32(data + pos + 4);
    if (chunk_size > size - pos - 8) break;
    if (std::memcmp(data + pos, "EXIF", 4) == 0) return exif_orientation(data + pos + 8, chunk_size);
    pos += 8 + size_t{chunk_size} + (chunk_size & 1);  // chunks are padded to an even size
    if (pos > size) break;
  }
  return 1;
}

}  // namespace

Result<DecodedImage> decode_webp(const uint8_t* data, size_t size, const DecodeOptions& options) {
  WebPBitstreamFeatures features;
  const VP8StatusCode header = WebPGetFeatures(data, size, &features);
  if (header == VP8_STATUS_NOT_ENOUGH_DATA) return make_error(ErrorCode::kFormatError, "truncated WebP data");
  if (header != VP8_STATUS_OK) {
    return make_error(ErrorCode::kFormatError, std::string("invalid WebP data: ") + vp8_status_text(header));
  }
  if (features.has_animation) {
    return make_error(ErrorCode::kUnsupported, "animated WebP is not supported");
  }
  DINOV3_RETURN_IF_ERROR(check_image_size(features.width, features.height, options, "WebP"));

  DecodedImage out;
  DINOV3_RETURN_IF_ERROR(allocate_image(features.width, features.height, &out.image));
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) return make_error(ErrorCode::kInternal, "libwebp version mismatch");
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out.image.pixels.data();
  config.output.u.RGBA.stride = features.width * 3;
  config.output.u.RGBA.size = out.image.pixels.size();
  const VP8StatusCode code = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);
  if (code == VP8_STATUS_NOT_ENOUGH_DATA) return make_error(ErrorCode::kFormatError, "truncated WebP data");
  if (code != VP8_STATUS_OK) {
    return make_error(ErrorCode::kFormatError, std::string("invalid WebP data: ") + vp8_status_text(code));
  }
  if (options.exif_transpose) out.exif_orientation = find_exif_orientation(data, size);
  return out;
}

}  // namespace dinov3::image_detail
