// libpng's error and warning handlers for the reader and the writer. libpng's defaults print; these keep
// the message in the caller's context (any struct with a `char message[N]`) and unwind to its setjmp.
#pragma once

#include <png.h>

#include <cstdio>

namespace dinov3::image_detail {

template <class Context>
[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* ctx = static_cast<Context*>(png_get_error_ptr(png));
  std::snprintf(ctx->message, sizeof(ctx->message), "%s", message);
  png_longjmp(png, 1);
}

// Warnings concern ancillary chunks, which Pillow ignores as well.
inline void on_png_warning(png_structp, png_const_charp) {}

}  // namespace dinov3::image_detail
