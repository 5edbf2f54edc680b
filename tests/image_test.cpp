// Decoding: timm's own preprocessed tensors for the fixture photos, Pillow's conversion rules per format
// (checked on images encoded here with known samples), EXIF orientation, and hostile or broken input.
#include <gtest/gtest.h>
#include <png.h>
#include <webp/encode.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

// jpeglib.h needs size_t and FILE declared before it.
#include <jpeglib.h>

#include "dinov3/image.h"
#include "dinov3/tensor_file.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

// ---------------------------------------------------------------------------------------------------
// Encoders for test inputs.

// A libjpeg encode of width x height pixels with `components` samples each (1 gray, 3 RGB, 4 CMYK),
// optionally with an EXIF APP1 block.
Bytes encode_jpeg(const std::vector<uint8_t>& samples, int width, int height, int components, int quality,
                  const Bytes& exif_app1 = {}) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* out = nullptr;
  unsigned long out_size = 0;
  jpeg_mem_dest(&cinfo, &out, &out_size);
  cinfo.image_width = width;
  cinfo.image_height = height;
  cinfo.input_components = components;
  cinfo.in_color_space = components == 1 ? JCS_GRAYSCALE : (components == 3 ? JCS_RGB : JCS_CMYK);
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  if (!exif_app1.empty()) jpeg_write_marker(&cinfo, JPEG_APP0 + 1, exif_app1.data(), exif_app1.size());
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(&samples[size_t(cinfo.next_scanline) * width * components]);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  Bytes bytes(out, out + out_size);
  std::free(out);
  return bytes;
}

struct PngSpec {
  int width = 0, height = 0;
  int color_type = PNG_COLOR_TYPE_RGB;
  int bit_depth = 8;
  bool interlaced = false;
  std::vector<png_color> palette;  // for PNG_COLOR_TYPE_PALETTE
  std::vector<uint8_t> trns;       // palette alpha (tRNS), when not empty
  Bytes exif;                      // eXIf payload, when not empty
};

void append_bytes(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<Bytes*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + n);
}

// `rows` holds each row's samples exactly as PNG stores them (packed bits, big-endian 16-bit).
Bytes encode_png(const PngSpec& spec, const std::vector<Bytes>& rows) {
  Bytes out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    ADD_FAILURE() << "libpng failed to encode the test image";
    return {};
  }
  png_set_write_fn(png, &out, append_bytes, nullptr);
  png_set_IHDR(png, info, spec.width, spec.height, spec.bit_depth, spec.color_type,
               spec.interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (!spec.palette.empty()) png_set_PLTE(png, info, spec.palette.data(), static_cast<int>(spec.palette.size()));
  if (!spec.trns.empty()) png_set_tRNS(png, info, spec.trns.data(), static_cast<int>(spec.trns.size()), nullptr);
  if (!spec.exif.empty()) {
    png_set_eXIf_1(png, info, static_cast<png_uint_32>(spec.exif.size()), const_cast<uint8_t*>(spec.exif.data()));
  }
  png_write_info(png, info);
  std::vector<png_bytep> pointers;
  for (const Bytes& row : rows) pointers.push_back(const_cast<uint8_t*>(row.data()));
  png_write_image(png, pointers.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

void put_le16(Bytes* b, size_t at, uint32_t v) {
  (*b)[at] = v & 0xFF;
  (*b)[at + 1] = (v >> 8) & 0xFF;
}
void put_le32(Bytes* b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*b)[at + i] = (v >> (8 * i)) & 0xFF;
}

// A BMP with a 40-byte header (or 108 bytes when masks are given, as BITFIELDS needs), the given
// palette (BGRX entries) and pixel rows already padded to 4 bytes, stored bottom-up unless top_down.
Bytes make_bmp(int width, int height, int bits, const Bytes& palette_bgrx, const std::vector<Bytes>& rows_top_first,
               bool top_down, const std::vector<uint32_t>& masks = {}) {
  const uint32_t header = masks.empty() ? 40 : 108;
  const uint32_t offset = 14 + header + static_cast<uint32_t>(palette_bgrx.size());
  Bytes b(offset, 0);
  b[0] = 'B';
  b[1] = 'M';
  put_le32(&b, 10, offset);
  put_le32(&b, 14, header);
  put_le32(&b, 18, static_cast<uint32_t>(width));
  put_le32(&b, 22, top_down ? static_cast<uint32_t>(-height) : static_cast<uint32_t>(height));
  put_le16(&b, 26, 1);
  put_le16(&b, 28, static_cast<uint32_t>(bits));
  put_le32(&b, 30, masks.empty() ? 0 : 3);
  put_le32(&b, 46, static_cast<uint32_t>(palette_bgrx.size() / 4));
  for (size_t i = 0; i < masks.size(); ++i) put_le32(&b, 54 + 4 * i, masks[i]);
  std::copy(palette_bgrx.begin(), palette_bgrx.end(), b.begin() + 14 + header);
  for (int y = 0; y < height; ++y) {
    const Bytes& row = rows_top_first[top_down ? y : height - 1 - y];
    b.insert(b.end(), row.begin(), row.end());
  }
  put_le32(&b, 2, static_cast<uint32_t>(b.size()));
  return b;
}

// A TIFF-structured EXIF block (with JPEG's "Exif\0\0" header) holding only an orientation tag.
Bytes exif_with_orientation(int orientation, bool big_endian) {
  Bytes b = {'E', 'x', 'i', 'f', 0, 0};
  auto u16 = [&](uint16_t v) {
    if (big_endian) {
      b.push_back(v >> 8);
      b.push_back(v & 0xFF);
    } else {
      b.push_back(v & 0xFF);
      b.push_back(v >> 8);
    }
  };
  auto u32 = [&](uint32_t v) {
    if (big_endian) {
      u16(v >> 16);
      u16(v & 0xFFFF);
    } else {
      u16(v & 0xFFFF);
      u16(v >> 16);
    }
  };
  b.push_back(big_endian ? 'M' : 'I');
  b.push_back(big_endian ? 'M' : 'I');
  u16(42);
  u32(8);       // IFD0 right after the header
  u16(1);       // one entry
  u16(0x0112);  // Orientation
  u16(3);       // SHORT
  u32(1);
  u16(static_cast<uint16_t>(orientation));
  u16(0);
  u32(0);  // no next IFD
  return b;
}

ImageRGB8 decode_ok(const Bytes& bytes, const DecodeOptions& options = {}) {
  Result<ImageRGB8> r = decode_image_memory(bytes.data(), bytes.size(), options);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : ImageRGB8{};
}

std::vector<uint8_t> rgb_at(const ImageRGB8& im, int x, int y) {
  const uint8_t* p = &im.pixels[(size_t(y) * im.width + x) * 3];
  return {p[0], p[1], p[2]};
}

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

// ---------------------------------------------------------------------------------------------------
// Golden: timm's preprocessed tensors.

DINOV3_SUITE_LABELS(ImageGoldenTest, "golden");

TEST(ImageGoldenTest, EveryFixtureImageMatchesTimm) {
  const std::string dir = test::fixture("images");
  Result<TensorArchive> archive = open_safetensors(test::fixture("preprocess_vits16.safetensors"));
  ASSERT_TRUE(archive.ok()) << archive.status().message();
  const std::vector<std::string> names = files_in(dir);
  ASSERT_EQ(names.size(), 11u);
  const PreprocessConfig config;  // vit_small_patch16_dinov3: 256x256, bicubic, crop_pct 1.0, ImageNet stats
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    Result<Tensor> expected = archive->load_f32(name);
    ASSERT_TRUE(expected.ok()) << expected.status().message();
    Result<Tensor> got = preprocess_image_file(dir + "/" + name, config);
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(got->shape, expected->shape);
    double max_abs = 0.0;
    for (size_t i = 0; i < got->data.size(); ++i) {
      max_abs = std::max(max_abs, double(std::fabs(got->data[i] - expected->data[i])));
    }
    // Identical 8-bit pixels leave only float32 rounding of the normalisation.
    EXPECT_LE(max_abs, 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------------
// Bad and hostile input: a clear one-line error, never a crash or a huge allocation.

DINOV3_SUITE_LABELS(ImageErrorTest, "hostile");

TEST(ImageErrorTest, EveryBadFixtureGivesAnErrorNamingTheFile) {
  const std::string dir = test::fixture("images/bad");
  const std::vector<std::string> names = files_in(dir);
  ASSERT_EQ(names.size(), 4u);
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    Result<ImageRGB8> r = decode_image_file(dir + "/" + name);
    ASSERT_FALSE(r.ok());
    const std::string& message = r.status().message();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }
}

TEST(ImageErrorTest, TruncatedJpegSaysSo) {
  Result<ImageRGB8> r = decode_image_file(test::fixture("images/bad/cut_in_half.jpg"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cut_in_half.jpg: truncated JPEG data"), std::string::npos)
      << r.status().message();
}

TEST(ImageErrorTest, MissingFileIsNotFound) {
  Result<ImageRGB8> r = decode_image_file("/nonexistent/photo.jpg");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/photo.jpg"), std::string::npos);
}

TEST(ImageErrorTest, ZeroBytesAndUnknownFormats) {
  const uint8_t nothing = 0;
  EXPECT_EQ(decode_image_memory(&nothing, 0).status().code(), ErrorCode::kFormatError);
  const std::string gif = "GIF89a\x01\x00\x01\x00";
  EXPECT_EQ(decode_image_memory(reinterpret_cast<const uint8_t*>(gif.data()), gif.size()).status().code(),
            ErrorCode::kUnsupported);
  const std::string magic_only = "\xFF\xD8\xFF";
  EXPECT_FALSE(decode_image_memory(reinterpret_cast<const uint8_t*>(magic_only.data()), magic_only.size()).ok());
  const std::string png_magic_only = "\x89PNG\r\n\x1A\n";
  EXPECT_FALSE(
      decode_image_memory(reinterpret_cast<const uint8_t*>(png_magic_only.data()), png_magic_only.size()).ok());
}

uint32_t crc32_of(const uint8_t* p, size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

void append_png_chunk(Bytes* png, const char* type, const Bytes& data) {
  for (int s = 24; s >= 0; s -= 8) png->push_back((data.size() >> s) & 0xFF);
  const size_t start = png->size();
  png->insert(png->end(), type, type + 4);
  png->insert(png->end(), data.begin(), data.end());
  const uint32_t crc = crc32_of(png->data() + start, png->size() - start);
  for (int s = 24; s >= 0; s -= 8) png->push_back((crc >> s) & 0xFF);
}

TEST(ImageErrorTest, PngClaiming100000SquaredIsRefusedByThePixelBudget) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  for (int i = 0; i < 2; ++i) ihdr.insert(ihdr.end(), {0x00, 0x01, 0x86, 0xA0});  // 100000
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});                                       // 8-bit RGB
  append_png_chunk(&png, "IHDR", ihdr);
  append_png_chunk(&png, "IDAT", {0x78, 0x9C, 0x03, 0x00});
  Result<ImageRGB8> r = decode_image_memory(png.data(), png.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory) << r.status().message();
  EXPECT_NE(r.status().message().find("100000x100000"), std::string::npos) << r.status().message();
}

TEST(ImageErrorTest, JpegClaimingHugeSizeIsRefusedByThePixelBudget) {
  Bytes jpeg = encode_jpeg(Bytes(16 * 16 * 3, 128), 16, 16, 3, 90);
  // Rewrite the SOF0 frame size to 65000 x 65000 (4.2 G pixels).
  bool patched = false;
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = jpeg[i + 7] = 65000 >> 8;
      jpeg[i + 6] = jpeg[i + 8] = 65000 & 0xFF;
      patched = true;
      break;
    }
  }
  ASSERT_TRUE(patched);
  Result<ImageRGB8> r = decode_image_memory(jpeg.data(), jpeg.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory) << r.status().message();
}

TEST(ImageErrorTest, BmpWithAbsurdOrInconsistentSizesIsRefused) {
  const Bytes row = {0, 0, 0, 0};
  Bytes huge = make_bmp(1, 1, 24, {}, {row}, false);
  put_le32(&huge, 18, 0x7FFFFFFF);
  put_le32(&huge, 22, 0x7FFFFFFF);
  Result<ImageRGB8> r = decode_image_memory(huge.data(), huge.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory);

  Bytes short_data = make_bmp(1, 1, 24, {}, {row}, false);
  put_le32(&short_data, 18, 1000);
  put_le32(&short_data, 22, 1000);
  r = decode_image_memory(short_data.data(), short_data.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().message();

  Bytes bad_offset = make_bmp(1, 1, 24, {}, {row}, false);
  put_le32(&bad_offset, 10, 0xFFFFFFF0u);
  EXPECT_FALSE(decode_image_memory(bad_offset.data(), bad_offset.size()).ok());

  Bytes bad_depth = make_bmp(1, 1, 24, {}, {row}, false);
  put_le16(&bad_depth, 28, 7);
  EXPECT_EQ(decode_image_memory(bad_depth.data(), bad_depth.size()).status().code(), ErrorCode::kUnsupported);

  const Bytes header_only(bad_depth.begin(), bad_depth.begin() + 20);
  EXPECT_FALSE(decode_image_memory(header_only.data(), header_only.size()).ok());
}

TEST(ImageErrorTest, PixelBudgetIsConfigurable) {
  DecodeOptions options;
  options.max_pixels = 100;
  Result<ImageRGB8> r = decode_image_file(test::fixture("images/rocket.jpg"), options);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory);
}

TEST(ImageErrorTest, TruncatedAndCorruptedFilesNeverCrash) {
  std::mt19937 rng(1234);
  for (const char* name : {"rocket.jpg", "astronaut_progressive.jpg", "green_palette.png", "microaneurysms.png"}) {
    const std::string text = test::read_file(test::fixture(std::string("images/") + name));
    const Bytes original(text.begin(), text.end());
    for (int trial = 0; trial < 40; ++trial) {
      Bytes bytes = original;
      if (trial % 2 == 0) {
        bytes.resize(std::uniform_int_distribution<size_t>(1, bytes.size() - 1)(rng));
      } else {
        for (int k = 0; k < 8; ++k) {
          bytes[std::uniform_int_distribution<size_t>(0, bytes.size() - 1)(rng)] = rng() & 0xFF;
        }
      }
      Result<ImageRGB8> r = decode_image_memory(bytes.data(), bytes.size());
      if (r.ok()) {
        EXPECT_EQ(r->pixels.size(), size_t(r->width) * r->height * 3);
      } else {
        EXPECT_FALSE(r.status().message().empty());
      }
    }
  }
}

// A JPEG whose frame header is rewritten to width x height: the scan data of a 16x16 image follows.
Bytes jpeg_claiming(int width, int height) {
  Bytes jpeg = encode_jpeg(Bytes(16 * 16 * 3, 128), 16, 16, 3, 90);
  for (size_t i = 2; i + 9 < jpeg.size(); ++i) {
    if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xC0) {
      jpeg[i + 5] = height >> 8;
      jpeg[i + 6] = height & 0xFF;
      jpeg[i + 7] = width >> 8;
      jpeg[i + 8] = width & 0xFF;
      return jpeg;
    }
  }
  ADD_FAILURE() << "no SOF0 marker in the encoded JPEG";
  return jpeg;
}

// Decodes `bytes` in a child allowed `headroom` more bytes of address space: 0 when the result is an error
// whose message is `expected`, 1 for any other result. Proves the refusal comes before the allocation.
int decode_error_within(const Bytes& bytes, size_t headroom, const std::string& expected) {
  return test::run_with_memory_headroom(headroom, [&] {
    Result<ImageRGB8> r = decode_image_memory(bytes.data(), bytes.size());
    return !r.ok() && r.status().message() == expected ? 0 : 1;
  });
}

// The file is refused with `message` as a format error, and also in a child allowed only `headroom` more
// bytes of address space (so nothing big was allocated first; skipped under ASan).
void expect_format_error_within(const Bytes& file, const std::string& message, size_t headroom) {
  Result<ImageRGB8> r = decode_image_memory(file.data(), file.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kFormatError);
  EXPECT_EQ(r.status().message(), message);
  if (test::built_with_address_sanitizer()) GTEST_SKIP() << "AddressSanitizer cannot run under RLIMIT_AS";
  EXPECT_EQ(decode_error_within(file, headroom, message), 0);
}

TEST(ImageErrorTest, JpegTooShortForItsFrameIsRefusedBeforeAllocating) {
  // The reported case: a few hundred bytes whose header says 13000x13000 (inside the pixel budget) used
  // to decode to a 514 MB gray frame. 1 bit per 8x8 block of the smallest component is the floor.
  const Bytes jpeg = jpeg_claiming(13000, 13000);
  ASSERT_LT(jpeg.size(), 1000u);
  expect_format_error_within(jpeg, "truncated JPEG data", 64 << 20);
}

TEST(ImageErrorTest, PngChunkClaimingMoreThanTheFileHoldsIsRefusedBeforeAllocating) {
  // Found by a ten-minute fuzzing run: 1127 bytes whose zTXt chunk claims 911,681,078 bytes. libpng
  // allocated and cleared that much before the data ran out (3.4 s a file); the chunk walk refuses it first.
  const std::string file =
      test::read_file(std::string(DINOV3_SOURCE_DIR) + "/fuzz/regressions/fuzz_image_png/ztxt_claiming_911mb_in_1kb.png");
  const Bytes png(file.begin(), file.end());
  ASSERT_EQ(png.size(), 1127u);
  expect_format_error_within(png, "truncated PNG data", 256 << 20);  // 911 MB would not fit
}

TEST(ImageErrorTest, JpegScanCutShortAndClosedIsRefused) {
  // Scan data cut in the middle and an end-of-image marker appended: libjpeg warns of a premature end of
  // the data segment and would fill the rest with gray; that is a truncated image.
  const std::string text = test::read_file(test::fixture("images/rocket.jpg"));
  for (const double kept : {0.2, 0.6, 0.95}) {
    const size_t sos = text.find("\xFF\xDA");
    ASSERT_NE(sos, std::string::npos);
    Bytes cut(text.begin(), text.begin() + static_cast<long>(sos + (text.size() - sos) * kept));
    cut.insert(cut.end(), {0xFF, 0xD9});
    Result<ImageRGB8> r = decode_image_memory(cut.data(), cut.size());
    ASSERT_FALSE(r.ok()) << "kept " << kept;
    EXPECT_EQ(r.status().message(), "truncated JPEG data");
  }
  // Garbage after a complete image is not truncation.
  Bytes trailing(text.begin(), text.end());
  trailing.insert(trailing.end(), {0x00, 0x11, 0xFF, 0xD9});
  EXPECT_TRUE(decode_image_memory(trailing.data(), trailing.size()).ok());
}

TEST(ImageErrorTest, PngPromisingMoreThanItsDataHoldsIsRefusedBeforeAllocating) {
  // The reported case: 74 bytes whose header says 13000x13000 RGBA16 interlaced took 1.8 GB before
  // failing. Deflate expands at most 1032 times, so the IDAT bytes bound the samples.
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr = {0x00, 0x00, 0x32, 0xC8, 0x00, 0x00, 0x32, 0xC8};  // 13000 x 13000
  ihdr.insert(ihdr.end(), {16, 6, 0, 0, 1});                       // 16-bit RGBA, Adam7
  append_png_chunk(&png, "IHDR", ihdr);
  Bytes idat = {0x78, 0x9C};  // a zlib header, then bytes libpng never gets to inflate
  idat.resize(17, 0x00);
  append_png_chunk(&png, "IDAT", idat);
  append_png_chunk(&png, "IEND", {});
  ASSERT_EQ(png.size(), 74u);
  Result<ImageRGB8> r = decode_image_memory(png.data(), png.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "truncated PNG data");
  if (test::built_with_address_sanitizer()) GTEST_SKIP() << "AddressSanitizer cannot run under RLIMIT_AS";
  EXPECT_EQ(decode_error_within(png, 64 << 20, "truncated PNG data"), 0);
}

TEST(ImageErrorTest, TruncatedPngSaysSo) {
  const std::string text = test::read_file(test::fixture("images/chelsea.png"));
  const Bytes half(text.begin(), text.begin() + text.size() / 2);
  Result<ImageRGB8> r = decode_image_memory(half.data(), half.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "truncated PNG data");
}

// ---------------------------------------------------------------------------------------------------
// Pillow's conversion to RGB, per format.

DINOV3_SUITE_LABELS(ImageDecodeTest, "unit");

TEST(ImageDecodeTest, FormatComesFromTheBytesNotTheName) {
  const std::string text = test::read_file(test::fixture("images/chelsea.png"));
  test::TempDir tmp;
  const std::string misnamed = tmp.file("really_a_png.jpg");
  test::write_file(misnamed, text);
  Result<ImageRGB8> a = decode_image_file(misnamed);
  Result<ImageRGB8> b = decode_image_file(test::fixture("images/chelsea.png"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->pixels, b->pixels);
}

TEST(ImageDecodeTest, PngGrayDepthsScaleLikePillow) {
  // 1, 2 and 4 bits widen to the full range; 16 bits is mode "I", which convert('RGB') clamps at 255.
  struct Case {
    int bits;
    Bytes row;              // packed samples
    std::vector<int> want;  // gray level per pixel
  };
  const std::vector<Case> cases = {
      {1, {0b10100000}, {255, 0, 255, 0}},
      {2, {0b00011011}, {0, 85, 170, 255}},
      {4, {0x0F, 0x79}, {0, 255, 119, 153}},
      {8, {0, 17, 200, 255}, {0, 17, 200, 255}},
      {16, {0x00, 0x07, 0x00, 0xFF, 0x01, 0x00, 0xFF, 0xFF}, {7, 255, 255, 255}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.bits);
    PngSpec spec;
    spec.width = 4;
    spec.height = 1;
    spec.color_type = PNG_COLOR_TYPE_GRAY;
    spec.bit_depth = c.bits;
    const ImageRGB8 im = decode_ok(encode_png(spec, {c.row}));
    ASSERT_EQ(im.width, 4);
    for (int x = 0; x < 4; ++x) EXPECT_EQ(rgb_at(im, x, 0), std::vector<uint8_t>(3, c.want[x])) << x;
  }
}

TEST(ImageDecodeTest, Png16BitColorKeepsTheHighByteAndAlphaIsDropped) {
  PngSpec spec;
  spec.width = 2;
  spec.height = 1;
  spec.bit_depth = 16;
  spec.color_type = PNG_COLOR_TYPE_RGB;
  ImageRGB8 im =
      decode_ok(encode_png(spec, {{0x12, 0xFF, 0x34, 0x00, 0x56, 0x80, 0xAB, 0x01, 0xCD, 0x02, 0xEF, 0x03}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{0x12, 0x34, 0x56}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{0xAB, 0xCD, 0xEF}));

  spec.color_type = PNG_COLOR_TYPE_RGB_ALPHA;
  spec.bit_depth = 8;
  im = decode_ok(encode_png(spec, {{10, 20, 30, 0, 40, 50, 60, 128}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{10, 20, 30}));  // not composited: alpha 0 keeps its color
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{40, 50, 60}));

  spec.bit_depth = 16;
  im = decode_ok(encode_png(spec, {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{1, 3, 5}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{9, 11, 13}));

  spec.color_type = PNG_COLOR_TYPE_GRAY_ALPHA;
  spec.bit_depth = 8;
  im = decode_ok(encode_png(spec, {{77, 0, 200, 255}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{77, 77, 77}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{200, 200, 200}));

  spec.bit_depth = 16;
  im = decode_ok(encode_png(spec, {{0x9A, 0xBC, 0, 0, 0x01, 0xFF, 0xFF, 0xFF}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{0x9A, 0x9A, 0x9A}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{0x01, 0x01, 0x01}));
}

TEST(ImageDecodeTest, PngPaletteIgnoresTransparencyAndPadsWithAGrayRamp) {
  PngSpec spec;
  spec.width = 4;
  spec.height = 1;
  spec.color_type = PNG_COLOR_TYPE_PALETTE;
  spec.bit_depth = 4;
  spec.palette = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}};
  spec.trns = {0, 128};
  // Indices 0, 1, 2 and 9: 9 is past the 3-entry palette, where Pillow's palette still holds its
  // initial gray ramp.
  const ImageRGB8 im = decode_ok(encode_png(spec, {{0x01, 0x29}}));
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{255, 0, 0}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{0, 255, 0}));
  EXPECT_EQ(rgb_at(im, 2, 0), (std::vector<uint8_t>{0, 0, 255}));
  EXPECT_EQ(rgb_at(im, 3, 0), (std::vector<uint8_t>{9, 9, 9}));
}

TEST(ImageDecodeTest, InterlacedPngEqualsProgressiveRows) {
  PngSpec spec;
  spec.width = 13;
  spec.height = 11;
  std::vector<Bytes> rows;
  for (int y = 0; y < spec.height; ++y) {
    Bytes row;
    for (int x = 0; x < spec.width; ++x) row.insert(row.end(), {uint8_t(x * 19), uint8_t(y * 23), uint8_t(x * y)});
    rows.push_back(row);
  }
  const ImageRGB8 plain = decode_ok(encode_png(spec, rows));
  spec.interlaced = true;
  const ImageRGB8 interlaced = decode_ok(encode_png(spec, rows));
  ASSERT_EQ(plain.width, 13);
  EXPECT_EQ(plain.pixels, interlaced.pixels);
  EXPECT_EQ(rgb_at(plain, 5, 7), (std::vector<uint8_t>{95, 161, 35}));
}

TEST(ImageDecodeTest, JpegGrayReplicatesAndCmykFollowsAdobeInversion) {
  // Flat 16x16 images at quality 100 decode back to their exact values.
  const ImageRGB8 gray = decode_ok(encode_jpeg(Bytes(16 * 16, 77), 16, 16, 1, 100));
  EXPECT_EQ(rgb_at(gray, 3, 5), (std::vector<uint8_t>{77, 77, 77}));

  // Stored (inverted) CMYK 255, 155, 55, 205 is ink 0, 100, 200, 50. With nk = 255 - 50 = 205 Pillow
  // gives R = 205 - 0, G = 205 - muldiv255(100, 205) = 205 - 80, B = 205 - muldiv255(200, 205) = 205 - 161.
  Bytes cmyk;
  for (int i = 0; i < 16 * 16; ++i) cmyk.insert(cmyk.end(), {255, 155, 55, 205});
  const ImageRGB8 rgb = decode_ok(encode_jpeg(cmyk, 16, 16, 4, 100));
  EXPECT_EQ(rgb_at(rgb, 8, 8), (std::vector<uint8_t>{205, 125, 44}));
}

TEST(ImageDecodeTest, BmpLayoutsMatchPillow) {
  // 2x2, top row red then green, bottom row blue then white, in every layout.
  const std::vector<std::vector<uint8_t>> want = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
  auto check = [&](const Bytes& bmp, const char* what) {
    SCOPED_TRACE(what);
    const ImageRGB8 im = decode_ok(bmp);
    ASSERT_EQ(im.width, 2);
    ASSERT_EQ(im.height, 2);
    EXPECT_EQ(rgb_at(im, 0, 0), want[0]);
    EXPECT_EQ(rgb_at(im, 1, 0), want[1]);
    EXPECT_EQ(rgb_at(im, 0, 1), want[2]);
    EXPECT_EQ(rgb_at(im, 1, 1), want[3]);
  };
  const std::vector<Bytes> rows24 = {{0, 0, 255, 0, 255, 0, 0, 0}, {255, 0, 0, 255, 255, 255, 0, 0}};
  check(make_bmp(2, 2, 24, {}, rows24, false), "24-bit bottom-up");
  check(make_bmp(2, 2, 24, {}, rows24, true), "24-bit top-down");
  const std::vector<Bytes> rows32 = {{0, 0, 255, 9, 0, 255, 0, 9}, {255, 0, 0, 9, 255, 255, 255, 9}};
  check(make_bmp(2, 2, 32, {}, rows32, false), "32-bit BGRX");
  const std::vector<Bytes> rows32rgba = {{255, 0, 0, 9, 0, 255, 0, 9}, {0, 0, 255, 9, 255, 255, 255, 9}};
  check(make_bmp(2, 2, 32, {}, rows32rgba, false, {0xFF, 0xFF00, 0xFF0000, 0xFF000000}), "32-bit RGBA bitfields");
  const Bytes palette = {0, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0};
  check(make_bmp(2, 2, 8, palette, {{0, 1, 0, 0}, {2, 3, 0, 0}}, false), "8-bit palette");
  check(make_bmp(2, 2, 4, palette, {{0x01, 0, 0, 0}, {0x23, 0, 0, 0}}, false), "4-bit palette");
  // 5-6-5: red 0xF800, green 0x07E0, blue 0x001F, white 0xFFFF.
  check(make_bmp(2, 2, 16, {}, {{0x00, 0xF8, 0xE0, 0x07}, {0x1F, 0x00, 0xFF, 0xFF}}, false, {0xF800, 0x7E0, 0x1F, 0}),
        "16-bit 5-6-5");
  // Default 16-bit is 5-5-5: red 0x7C00, green 0x03E0, blue 0x001F, white 0x7FFF.
  check(make_bmp(2, 2, 16, {}, {{0x00, 0x7C, 0xE0, 0x03}, {0x1F, 0x00, 0xFF, 0x7F}}, false), "16-bit 5-5-5");

  const Bytes two_colors = {0, 0, 0, 0, 255, 255, 255, 0};
  const ImageRGB8 mono = decode_ok(make_bmp(9, 1, 1, two_colors, {{0b10100000, 0b10000000, 0, 0}}, false));
  EXPECT_EQ(rgb_at(mono, 0, 0), (std::vector<uint8_t>{255, 255, 255}));
  EXPECT_EQ(rgb_at(mono, 1, 0), (std::vector<uint8_t>{0, 0, 0}));
  EXPECT_EQ(rgb_at(mono, 8, 0), (std::vector<uint8_t>{255, 255, 255}));
}

TEST(ImageDecodeTest, WebpLosslessRoundTrips) {
  const int w = 7, h = 5;
  Bytes rgb;
  for (int i = 0; i < w * h; ++i) rgb.insert(rgb.end(), {uint8_t(i * 7), uint8_t(255 - i), uint8_t(i * i)});
  uint8_t* encoded = nullptr;
  const size_t size = WebPEncodeLosslessRGB(rgb.data(), w, h, w * 3, &encoded);
  ASSERT_GT(size, 0u);
  const Bytes webp(encoded, encoded + size);
  WebPFree(encoded);
  const ImageRGB8 im = decode_ok(webp);
  ASSERT_EQ(im.width, w);
  ASSERT_EQ(im.height, h);
  EXPECT_EQ(im.pixels, rgb);

  const Bytes cut(webp.begin(), webp.begin() + webp.size() / 2);
  Result<ImageRGB8> r = decode_image_memory(cut.data(), cut.size());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("WebP"), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------------------------------------------
// EXIF orientation.

// The pixel of `upright` that ImageOps.exif_transpose puts at (x, y), for a stored image w x h.
std::vector<uint8_t> expected_after_transpose(const ImageRGB8& stored, int orientation, int x, int y) {
  const int w = stored.width, h = stored.height;
  switch (orientation) {
    case 2: return rgb_at(stored, w - 1 - x, y);
    case 3: return rgb_at(stored, w - 1 - x, h - 1 - y);
    case 4: return rgb_at(stored, x, h - 1 - y);
    case 5: return rgb_at(stored, y, x);
    case 6: return rgb_at(stored, y, h - 1 - x);
    case 7: return rgb_at(stored, w - 1 - y, h - 1 - x);
    case 8: return rgb_at(stored, w - 1 - y, x);
    default: return rgb_at(stored, x, y);
  }
}

DINOV3_SUITE_LABELS(ImageExifTest, "unit");

TEST(ImageExifTest, JpegOrientationIsAppliedOnlyWhenAsked) {
  // 32x16: a gradient that makes every flip and rotation distinguishable.
  const int w = 32, h = 16;
  Bytes rgb;
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) rgb.insert(rgb.end(), {uint8_t(x * 8), uint8_t(y * 16), 100});
  }
  for (int orientation = 1; orientation <= 8; ++orientation) {
    for (bool big_endian : {false, true}) {
      SCOPED_TRACE(testing::Message() << "orientation " << orientation << (big_endian ? " MM" : " II"));
      const Bytes jpeg = encode_jpeg(rgb, w, h, 3, 95, exif_with_orientation(orientation, big_endian));
      const ImageRGB8 stored = decode_ok(jpeg);  // timm's default: no transpose
      ASSERT_EQ(stored.width, w);
      DecodeOptions options;
      options.exif_transpose = true;
      const ImageRGB8 upright = decode_ok(jpeg, options);
      const bool swapped = orientation >= 5;
      ASSERT_EQ(upright.width, swapped ? h : w);
      ASSERT_EQ(upright.height, swapped ? w : h);
      for (int y = 0; y < upright.height; ++y) {
        for (int x = 0; x < upright.width; ++x) {
          ASSERT_EQ(rgb_at(upright, x, y), expected_after_transpose(stored, orientation, x, y)) << x << "," << y;
        }
      }
    }
  }
}

TEST(ImageExifTest, PngExifChunkIsRead) {
  PngSpec spec;
  spec.width = 3;
  spec.height = 2;
  const Bytes exif = exif_with_orientation(6, true);
  spec.exif.assign(exif.begin() + 6, exif.end());  // eXIf holds the TIFF structure without "Exif\0\0"
  const std::vector<Bytes> rows = {{1, 1, 1, 2, 2, 2, 3, 3, 3}, {4, 4, 4, 5, 5, 5, 6, 6, 6}};
  DecodeOptions options;
  options.exif_transpose = true;
  const ImageRGB8 im = decode_ok(encode_png(spec, rows), options);
  ASSERT_EQ(im.width, 2);
  ASSERT_EQ(im.height, 3);
  // Rotated 90 degrees clockwise: the bottom-left pixel comes to the top-left.
  EXPECT_EQ(rgb_at(im, 0, 0), (std::vector<uint8_t>{4, 4, 4}));
  EXPECT_EQ(rgb_at(im, 1, 0), (std::vector<uint8_t>{1, 1, 1}));
  EXPECT_EQ(rgb_at(im, 0, 2), (std::vector<uint8_t>{6, 6, 6}));
}

// ---------------------------------------------------------------------------------------------------
// Names.

DINOV3_SUITE_LABELS(ImageNamesTest, "unit");

TEST(ImageNamesTest, ParseTimmSpellings) {
  Interpolation interpolation;
  EXPECT_TRUE(parse_interpolation("bilinear", &interpolation));
  EXPECT_EQ(interpolation, Interpolation::kBilinear);
  EXPECT_TRUE(parse_interpolation("bicubic", &interpolation));
  EXPECT_EQ(interpolation, Interpolation::kBicubic);
  EXPECT_FALSE(parse_interpolation("lanczos", &interpolation));
  CropMode mode;
  for (const char* name : {"center", "squash", "border"}) {
    ASSERT_TRUE(parse_crop_mode(name, &mode));
    EXPECT_STREQ(crop_mode_name(mode), name);
  }
  EXPECT_FALSE(parse_crop_mode("random", &mode));
}

}  // namespace
}  // namespace dinov3
