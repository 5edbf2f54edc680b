// decode_image_memory, the public decode entry point, with EXIF orientation applied, then timm's
// transform of what it decodes to a small model input. One binary per format (built with DINOV3_FUZZ_JPEG,
// _PNG, _WEBP or _BMP): inputs that do not start with that format's magic bytes belong to another one.
#include <cstring>
#include <string_view>
#include <vector>

#include "dinov3/image.h"
#include "fuzz_util.h"

using namespace dinov3;

namespace {
#if defined(DINOV3_FUZZ_JPEG)
constexpr std::string_view kMagic("\xFF\xD8\xFF", 3);
#elif defined(DINOV3_FUZZ_PNG)
constexpr std::string_view kMagic("\x89PNG\r\n\x1A\n", 8);
#elif defined(DINOV3_FUZZ_WEBP)
constexpr std::string_view kMagic("RIFF", 4);
#elif defined(DINOV3_FUZZ_BMP)
constexpr std::string_view kMagic("BM", 2);
#else
#error "build with one of DINOV3_FUZZ_JPEG, DINOV3_FUZZ_PNG, DINOV3_FUZZ_WEBP, DINOV3_FUZZ_BMP"
#endif
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < kMagic.size() || std::memcmp(data, kMagic.data(), kMagic.size()) != 0) return -1;
  DecodeOptions options;
  options.exif_transpose = true;
  options.max_pixels = 1 << 22;  // keeps each run small; the limit itself is tested elsewhere
  Result<ImageRGB8> image = decode_image_memory(data, size, options);
  if (!image.ok()) return 0;
  fuzz::expect(image->width > 0 && image->height > 0 &&
                   image->pixels.size() == size_t(image->width) * size_t(image->height) * 3,
               "a decoded image's pixels do not match its size");

  // The last byte picks the geometry, so the fuzzer reaches every crop mode and interpolation.
  PreprocessConfig config;
  config.height = 32;
  config.width = 24;
  config.crop_mode = static_cast<CropMode>(data[size - 1] % 3);
  config.interpolation = data[size - 1] & 4 ? Interpolation::kBilinear : Interpolation::kBicubic;
  config.crop_pct = data[size - 1] & 8 ? 0.875 : 1.0;
  Result<ImageRGB8> input = transform_rgb8(*image, config);
  if (!input.ok()) return 0;
  std::vector<float> chw(3 * 32 * 24);
  fuzz::expect(to_normalized_chw(*input, config, chw.data()).ok(), "a transformed image cannot be normalised");
  return 0;
}
