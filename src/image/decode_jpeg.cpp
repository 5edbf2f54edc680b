// JPEG through libjpeg(-turbo) with its default settings (islow IDCT, fancy upsampling): the decoder and
// settings Pillow uses, so the pixels match bit for bit.
#include <algorithm>
#include <cstdint>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared before it.
#include <jerror.h>
#include <jpeglib.h>

#include "image/decoders.h"
#include "image/exif.h"
#include "image/pillow_modes.h"

namespace dinov3::image_detail {
namespace {

// libjpeg's default error handler prints and calls exit(); this one records the message and unwinds to
// the setjmp in decompress() instead.
struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  bool scanlines_done = false;  // every row is out: from here on a missing tail does not matter
  bool truncated = false;
  char message[JMSG_LENGTH_MAX] = {};
};

[[noreturn]] void on_jpeg_error(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace output
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  // Image data that ends before the last row is an error. Pillow feeds libjpeg through a suspending
  // source, so running out of bytes is one there ("image file is truncated"); libjpeg's memory source
  // would instead warn and invent an end-of-image marker. Scan data cut short by a marker ("premature
  // end of data segment") is the same damage with an end marker appended: libjpeg would fill the rest
  // with gray and Pillow accept it, but a picture that is mostly invented is refused here. Every other
  // warning (corrupt entropy data, extraneous bytes) is ignored, as Pillow does.
  const int code = cinfo->err->msg_code;
  if ((code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) && !err->scanlines_done) {
    err->truncated = true;
    std::longjmp(err->jump, 1);
  }
}

// Huffman coding spends at least one bit on every 8x8 block's DC value, so a file too short to give each
// block of its smallest component a bit is truncated: it is refused before any pixel memory is spent on it.
// (Arithmetic coding has no such floor.)
bool too_short_for_its_blocks(const jpeg_decompress_struct& cinfo, size_t size) {
  if (cinfo.arith_code) return false;
  uint64_t fewest = UINT64_MAX;
  for (int c = 0; c < cinfo.num_components; ++c) {
    const jpeg_component_info& comp = cinfo.comp_info[c];
    fewest = std::min<uint64_t>(fewest, uint64_t{comp.width_in_blocks} * comp.height_in_blocks);
  }
  return fewest != UINT64_MAX && fewest / 8 > size;
}

void on_jpeg_output(j_common_ptr) {}

struct JpegContext {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err;
  const uint8_t* data = nullptr;
  size_t size = 0;
  const DecodeOptions* options = nullptr;
  DecodedImage* out = nullptr;
  std::vector<uint8_t> row;  // one decoded row for the layouts that need converting (L, CMYK)
  Status status;             // a failure found by this code rather than by libjpeg
};

void read_exif_orientation(JpegContext* ctx) {
  for (jpeg_saved_marker_ptr m = ctx->cinfo.marker_list; m != nullptr; m = m->next) {
    if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0) {
      // Pillow keeps the first EXIF block.
      ctx->out->exif_orientation = exif_orientation(m->data, m->data_length);
      return;
    }
  }
}

// Runs libjpeg over the file. Everything it touches lives in *ctx, so nothing in this frame is live
// across a longjmp. Returns false on failure: ctx->err holds libjpeg's reason, or ctx->status ours.
bool decompress(JpegContext* ctx) {
  if (setjmp(ctx->err.jump)) return false;
  jpeg_decompress_struct* cinfo = &ctx->cinfo;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, ctx->data, static_cast<unsigned long>(ctx->size));
  if (ctx->options->exif_transpose) jpeg_save_markers(cinfo, JPEG_APP0 + 1, 0xFFFF);
  jpeg_read_header(cinfo, TRUE);

  ctx->status = check_image_size(cinfo->image_width, cinfo->image_height, *ctx->options, "JPEG");
  if (!ctx->status.ok()) return false;
  if (too_short_for_its_blocks(*cinfo, ctx->size)) {
    ctx->err.truncated = true;
    return false;
  }
  // Pillow picks the mode from the component count alone (L, RGB, CMYK) and lets libjpeg work out the
  // stored color space (YCbCr, RGB, YCCK, ...) from the JFIF/Adobe markers.
  switch (cinfo->num_components) {
    case 1: cinfo->out_color_space = JCS_GRAYSCALE; break;
    case 3: cinfo->out_color_space = JCS_RGB; break;
    case 4: cinfo->out_color_space = JCS_CMYK; break;
    default:
      ctx->status = make_error(ErrorCode::kUnsupported,
                               "JPEG with " + std::to_string(cinfo->num_components) + " color components");
      return false;
  }
  if (ctx->options->exif_transpose) read_exif_orientation(ctx);

  jpeg_start_decompress(cinfo);
  const int width = static_cast<int>(cinfo->output_width);
  const int height = static_cast<int>(cinfo->output_height);
  ctx->status = allocate_image(width, height, &ctx->out->image);
  if (!ctx->status.ok()) return false;
  uint8_t* pixels = ctx->out->image.pixels.data();
  const size_t stride = size_t(width) * 3;

  if (cinfo->out_color_space == JCS_RGB) {
    while (cinfo->output_scanline < cinfo->output_height) {
      JSAMPROW rows[4];
      const int n = std::min<int>(4, height - static_cast<int>(cinfo->output_scanline));
      for (int i = 0; i < n; ++i) rows[i] = pixels + (cinfo->output_scanline + i) * stride;
      jpeg_read_scanlines(cinfo, rows, n);
    }
  } else {
    ctx->row.resize(size_t(width) * cinfo->output_components);
    JSAMPROW row = ctx->row.data();
    while (cinfo->output_scanline < cinfo->output_height) {
      uint8_t* dst = pixels + cinfo->output_scanline * stride;
      jpeg_read_scanlines(cinfo, &row, 1);
      if (cinfo->out_color_space == JCS_GRAYSCALE) {
        for (int x = 0; x < width; ++x) dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = row[x];
      } else {
        // Pillow reads 4-component JPEGs as "CMYK;I": Adobe's convention of storing inverted inks.
        for (int x = 0; x < width; ++x) {
          const uint8_t* s = row + 4 * x;
          const uint8_t cmyk[4] = {uint8_t(255 - s[0]), uint8_t(255 - s[1]), uint8_t(255 - s[2]), uint8_t(255 - s[3])};
          pillow_cmyk_to_rgb(cmyk, dst + 3 * x);
        }
      }
    }
  }
  ctx->err.scanlines_done = true;
  jpeg_finish_decompress(cinfo);
  return true;
}

}  // namespace

Result<DecodedImage> decode_jpeg(const uint8_t* data, size_t size, const DecodeOptions& options) {
  DecodedImage out;
  JpegContext ctx;
  ctx.cinfo.err = jpeg_std_error(&ctx.err.pub);
  ctx.err.pub.error_exit = on_jpeg_error;
  ctx.err.pub.emit_message = on_jpeg_message;
  ctx.err.pub.output_message = on_jpeg_output;
  ctx.data = data;
  ctx.size = size;
  ctx.options = &options;
  ctx.out = &out;
  const bool ok = decompress(&ctx);
  jpeg_destroy_decompress(&ctx.cinfo);
  if (ok) return out;
  if (!ctx.status.ok()) return ctx.status;
  if (ctx.err.truncated) return make_error(ErrorCode::kFormatError, "truncated JPEG data");
  return make_error(ErrorCode::kFormatError, std::string("invalid JPEG data: ") + ctx.err.message);
}

}  // namespace dinov3::image_detail
