// Pillow's resampling on hand-derived cases, the AVX2 kernels against the scalar ones, and timm's
// resize/crop/pad geometry for each crop mode.
#include "image/resample.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "dinov3/image.h"
#include "test_labels.h"

namespace dinov3 {
namespace {

ImageRGB8 make_image(int w, int h, uint8_t (*value)(int x, int y, int c)) {
  ImageRGB8 im;
  im.width = w;
  im.height = h;
  im.pixels.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      for (int c = 0; c < 3; ++c) im.pixels[(size_t(y) * w + x) * 3 + c] = value(x, y, c);
    }
  }
  return im;
}

ImageRGB8 gray_image(int w, int h, const std::vector<uint8_t>& levels) {
  ImageRGB8 im;
  im.width = w;
  im.height = h;
  for (uint8_t v : levels) im.pixels.insert(im.pixels.end(), {v, v, v});
  return im;
}

ImageRGB8 random_image(int w, int h, std::mt19937* rng) {
  ImageRGB8 im;
  im.width = w;
  im.height = h;
  im.pixels.resize(size_t(w) * h * 3);
  for (uint8_t& p : im.pixels) p = static_cast<uint8_t>((*rng)() & 0xFF);
  return im;
}

std::vector<int> row_levels(const ImageRGB8& im, int y) {
  std::vector<int> out;
  for (int x = 0; x < im.width; ++x) out.push_back(im.pixels[(size_t(y) * im.width + x) * 3]);
  return out;
}

ImageRGB8 resize_ok(const ImageRGB8& in, int w, int h, Interpolation interpolation,
                    ResampleKernel kernel = ResampleKernel::kAuto) {
  Result<ImageRGB8> r = resize_rgb8(in, w, h, interpolation, kernel);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : ImageRGB8{};
}

// ---------------------------------------------------------------------------------------------------
// Hand-derived cases.
//
// Bicubic 2 -> 4 (scale 0.5, support 2): output centers 0.25, 0.75, 1.25, 1.75 all see both inputs.
// The cubic (a = -0.5) at the input offsets, normalised by their sum, then times 2^22, rounded:
//   out 0: f(0.25) = 0.8671875, f(1.25) = -0.0703125; sum 0.796875 -> 37/34, -3/34 -> 4564390, -370086
//   out 1: f(0.25) = 0.8671875, f(0.75) = 0.2265625;  sum 1.09375  -> 111/140, 29/140 -> 3325427, 868877
//   out 2, 3 mirror out 1, 0.
constexpr int32_t kBicubic2To4[4][2] = {{4564390, -370086}, {3325427, 868877}, {868877, 3325427}, {-370086, 4564390}};

int apply_q22(int a, int b, const int32_t w[2]) {
  const int v = (a * w[0] + b * w[1] + (1 << 21)) >> 22;
  return v < 0 ? 0 : (v > 255 ? 255 : v);
}

DINOV3_SUITE_LABELS(ResampleTest, "unit");

TEST(ResampleTest, BicubicUpscale2To4ByHand) {
  // One row: only the horizontal pass runs. [0, 255] -> 0, 53.3, 202.7, 278.0 before clipping.
  const ImageRGB8 row = resize_ok(gray_image(2, 1, {0, 255}), 4, 1, Interpolation::kBicubic);
  EXPECT_EQ(row_levels(row, 0), (std::vector<int>{0, 53, 202, 255}));

  // 2x2 -> 4x4: horizontal pass, rounding and clipping to 8 bits, then the same weights vertically.
  const int in[2][2] = {{0, 255}, {255, 40}};
  const ImageRGB8 out = resize_ok(gray_image(2, 2, {0, 255, 255, 40}), 4, 4, Interpolation::kBicubic);
  int horizontal[2][4];
  for (int y = 0; y < 2; ++y) {
    for (int x = 0; x < 4; ++x) horizontal[y][x] = apply_q22(in[y][0], in[y][1], kBicubic2To4[x]);
  }
  for (int y = 0; y < 4; ++y) {
    for (int x = 0; x < 4; ++x) {
      EXPECT_EQ(row_levels(out, y)[x], apply_q22(horizontal[0][x], horizontal[1][x], kBicubic2To4[y])) << x << "," << y;
    }
  }
}

TEST(ResampleTest, BilinearUpscale2To4ByHand) {
  // Triangle filter, support 1: out 0 and 3 see one input (weight 1), out 1 = 0.75 a + 0.25 b,
  // out 2 = 0.25 a + 0.75 b; 0.25 * 255 = 63.75 rounds to 64.
  const ImageRGB8 row = resize_ok(gray_image(2, 1, {0, 255}), 4, 1, Interpolation::kBilinear);
  EXPECT_EQ(row_levels(row, 0), (std::vector<int>{0, 64, 191, 255}));
}

TEST(ResampleTest, ConstantImagesStayConstant) {
  auto constant = [](int, int, int c) -> uint8_t { return static_cast<uint8_t>(37 + 90 * c); };
  struct Case {
    int in_w, in_h, out_w, out_h;
  };
  for (const Case& c : {Case{1000, 700, 10, 7}, Case{1, 1, 5, 7}, Case{3, 997, 1234, 3}, Case{4000, 3, 7, 1}}) {
    for (Interpolation interpolation : {Interpolation::kBicubic, Interpolation::kBilinear}) {
      SCOPED_TRACE(testing::Message() << c.in_w << "x" << c.in_h << " -> " << c.out_w << "x" << c.out_h);
      const ImageRGB8 out = resize_ok(make_image(c.in_w, c.in_h, constant), c.out_w, c.out_h, interpolation);
      ASSERT_EQ(out.width, c.out_w);
      ASSERT_EQ(out.height, c.out_h);
      for (size_t i = 0; i < out.pixels.size(); ++i) ASSERT_EQ(out.pixels[i], 37 + 90 * (i % 3)) << i;
    }
  }
}

TEST(ResampleTest, LargeDownscaleOfARampFollowsTheRamp) {
  // 1000 -> 10: each output averages a symmetric window of +-200 inputs around its center
  // (i + 0.5) * 100, so on the linear ramp v = x / 4 it lands on the ramp at the center
  // (x = center - 0.5), up to the floor in the ramp and the final rounding. The outer two outputs on
  // each side see a window cut by the image edge and are skewed inwards.
  const ImageRGB8 ramp = make_image(1000, 1, [](int x, int, int) { return static_cast<uint8_t>(x / 4); });
  const ImageRGB8 out = resize_ok(ramp, 10, 1, Interpolation::kBicubic);
  const std::vector<int> levels = row_levels(out, 0);
  for (int i = 2; i <= 7; ++i) {
    const double at_center = ((i + 0.5) * 100 - 0.5) / 4 - 0.375;  // mean of floor(x / 4) near there
    EXPECT_NEAR(levels[i], at_center, 1.0) << i;
  }
  EXPECT_GT(levels[0], ((0.5 * 100) - 0.5) / 4);
  EXPECT_LT(levels[9], ((9.5 * 100) - 0.5) / 4);
}

TEST(ResampleTest, SameSizeIsTheIdentity) {
  std::mt19937 rng(7);
  const ImageRGB8 in = random_image(31, 17, &rng);
  EXPECT_EQ(resize_ok(in, 31, 17, Interpolation::kBicubic).pixels, in.pixels);
  // One axis unchanged: only the other pass runs, and a row-wise resize keeps rows independent.
  const ImageRGB8 wider = resize_ok(in, 45, 17, Interpolation::kBicubic);
  const ImageRGB8 first_row =
      resize_ok(ImageRGB8{31, 1, {in.pixels.begin(), in.pixels.begin() + 31 * 3}}, 45, 1, Interpolation::kBicubic);
  EXPECT_TRUE(std::equal(first_row.pixels.begin(), first_row.pixels.end(), wider.pixels.begin()));
}

TEST(ResampleTest, RejectsEmptySizes) {
  const ImageRGB8 in = gray_image(2, 1, {1, 2});
  EXPECT_FALSE(resize_rgb8(in, 0, 3, Interpolation::kBicubic).ok());
  EXPECT_FALSE(resize_rgb8(ImageRGB8{}, 3, 3, Interpolation::kBicubic).ok());
  EXPECT_FALSE(resize_rgb8(ImageRGB8{4, 4, {}}, 3, 3, Interpolation::kBicubic).ok());
}

// ---------------------------------------------------------------------------------------------------
// Every kernel gives the scalar kernel's bytes, on ragged sizes up and down, one axis or both.

DINOV3_SUITE_LABELS(ResampleKernelTest, "unit");

TEST(ResampleKernelTest, Avx2MatchesScalar) {
  if (!resample_kernel_available(ResampleKernel::kAvx2)) GTEST_SKIP() << "this CPU has no AVX2";
  std::mt19937 rng(42);
  struct Case {
    int in_w, in_h, out_w, out_h;
  };
  const Case cases[] = {{1, 1, 5, 7},         {2, 2, 4, 4},         {3, 5, 3, 11},        {7, 3, 1, 1},
                        {33, 17, 31, 17},     {640, 427, 383, 256}, {427, 640, 256, 383}, {102, 102, 256, 256},
                        {384, 191, 515, 256}, {1001, 3, 13, 9},     {5, 999, 3, 37},      {1, 9, 4, 9},
                        {1, 6, 5, 2},         {97, 61, 96, 60},     {64, 64, 8, 8}};
  for (const Case& c : cases) {
    const ImageRGB8 in = random_image(c.in_w, c.in_h, &rng);
    for (Interpolation interpolation : {Interpolation::kBicubic, Interpolation::kBilinear}) {
      SCOPED_TRACE(testing::Message() << c.in_w << "x" << c.in_h << " -> " << c.out_w << "x" << c.out_h << " "
                                      << interpolation_name(interpolation));
      const ImageRGB8 scalar = resize_ok(in, c.out_w, c.out_h, interpolation, ResampleKernel::kScalar);
      const ImageRGB8 avx2 = resize_ok(in, c.out_w, c.out_h, interpolation, ResampleKernel::kAvx2);
      ASSERT_EQ(avx2.pixels, scalar.pixels);
    }
  }
}

TEST(ResampleKernelTest, WindowEqualsCropOfFullResize) {
  std::mt19937 rng(3);
  const ImageRGB8 in = random_image(123, 77, &rng);
  const ImageRGB8 full = resize_ok(in, 301, 188, Interpolation::kBicubic, ResampleKernel::kScalar);
  const image_detail::OutputWindow window{17, 29, 200, 101};
  Result<ImageRGB8> part =
      image_detail::resize_window(in, 301, 188, window, Interpolation::kBicubic, ResampleKernel::kAuto);
  ASSERT_TRUE(part.ok()) << part.status().message();
  for (int y = 0; y < window.height; ++y) {
    for (int x = 0; x < window.width * 3; ++x) {
      ASSERT_EQ(part->pixels[size_t(y) * window.width * 3 + x],
                full.pixels[size_t(y + window.y) * 301 * 3 + window.x * 3 + x]);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// timm's eval geometry.

// Pixel values that encode their coordinates, to see where each output pixel came from.
uint8_t coordinate_value(int x, int y, int c) { return static_cast<uint8_t>(c == 0 ? x : (c == 1 ? y : x ^ y)); }

ImageRGB8 transform_ok(const ImageRGB8& in, const PreprocessConfig& config) {
  Result<ImageRGB8> r = transform_rgb8(in, config);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : ImageRGB8{};
}

DINOV3_SUITE_LABELS(TransformTest, "unit");

TEST(TransformTest, CenterCropWithoutResizeUsesRoundHalfEven) {
  // Shorter side already at the resize size: no resampling, only the crop. The left offset is
  // int(round((w - 224) / 2.0)): 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  PreprocessConfig config;
  config.height = config.width = 224;
  for (auto [width, left] : {std::pair{225, 0}, std::pair{227, 2}, std::pair{229, 2}, std::pair{224, 0}}) {
    SCOPED_TRACE(width);
    const ImageRGB8 out = transform_ok(make_image(width, 224, coordinate_value), config);
    ASSERT_EQ(out.width, 224);
    ASSERT_EQ(out.height, 224);
    EXPECT_EQ(out.pixels[0], left);
    EXPECT_EQ(out.pixels[(223 * 224 + 223) * 3 + 1], 223);
  }
}

TEST(TransformTest, CenterModeResizesTheShorterSideAndTruncatesTheLonger) {
  // 224 / 0.875 = 256: a 255x200 image becomes int(256 * 255 / 200) = 326 wide, 256 tall, then the
  // center 224x224 is cut at left round(51), top round(16).
  std::mt19937 rng(11);
  const ImageRGB8 in = random_image(255, 200, &rng);
  PreprocessConfig config;
  config.height = config.width = 224;
  config.crop_pct = 0.875;
  const ImageRGB8 out = transform_ok(in, config);
  const ImageRGB8 full = resize_ok(in, 326, 256, Interpolation::kBicubic);
  ASSERT_EQ(out.width, 224);
  for (int y = 0; y < 224; ++y) {
    ASSERT_TRUE(std::equal(out.pixels.begin() + y * 224 * 3, out.pixels.begin() + (y + 1) * 224 * 3,
                           full.pixels.begin() + ((y + 16) * 326 + 51) * 3))
        << y;
  }
}

TEST(TransformTest, CenterModeNonSquareUsesBilinearKeepRatio) {
  // timm's ResizeKeepRatio for a non-square target scales by the smaller ratio (here 400 / 256 for
  // the height) and, built without an interpolation argument, resamples bilinearly.
  std::mt19937 rng(5);
  const ImageRGB8 in = random_image(500, 400, &rng);
  PreprocessConfig config;
  config.height = 256;
  config.width = 320;
  const ImageRGB8 out = transform_ok(in, config);
  const ImageRGB8 full = resize_ok(in, 320, 256, Interpolation::kBilinear);  // round(500 / 1.5625) = 320
  EXPECT_EQ(out.pixels, full.pixels);
}

TEST(TransformTest, CropLargerThanTheResizedImagePadsWithZero) {
  // crop_pct 1.25: resize to floor(224 / 1.25) = 179, then CenterCrop(224) pads 22 before, 23 after.
  PreprocessConfig config;
  config.height = config.width = 224;
  config.crop_pct = 1.25;
  const ImageRGB8 out = transform_ok(make_image(300, 300, [](int, int, int) -> uint8_t { return 200; }), config);
  auto at = [&](int x, int y) { return out.pixels[(size_t(y) * 224 + x) * 3]; };
  EXPECT_EQ(at(21, 100), 0);
  EXPECT_EQ(at(22, 100), 200);
  EXPECT_EQ(at(200, 100), 200);
  EXPECT_EQ(at(201, 100), 0);
  EXPECT_EQ(at(100, 21), 0);
  EXPECT_EQ(at(100, 22), 200);
  EXPECT_EQ(at(100, 201), 0);
}

TEST(TransformTest, SquashResizesBothSides) {
  std::mt19937 rng(9);
  const ImageRGB8 in = random_image(300, 120, &rng);
  PreprocessConfig config;
  config.height = config.width = 224;
  config.crop_pct = 0.875;
  config.crop_mode = CropMode::kSquash;
  const ImageRGB8 out = transform_ok(in, config);
  const ImageRGB8 full = resize_ok(in, 256, 256, Interpolation::kBicubic);
  for (int y = 0; y < 224; ++y) {
    ASSERT_TRUE(std::equal(out.pixels.begin() + y * 224 * 3, out.pixels.begin() + (y + 1) * 224 * 3,
                           full.pixels.begin() + ((y + 16) * 256 + 16) * 3))
        << y;
  }
}

TEST(TransformTest, BorderFitsTheLongerSideAndPadsWithTheMeanColor) {
  // 400x200 -> ratio max(200/256, 400/256) = 1.5625 -> 256x128, padded by 64 rows above and below with
  // round(255 * mean) = (124, 116, 104).
  PreprocessConfig config;
  config.crop_mode = CropMode::kBorder;
  const ImageRGB8 out = transform_ok(make_image(400, 200, [](int, int, int) -> uint8_t { return 255; }), config);
  ASSERT_EQ(out.width, 256);
  ASSERT_EQ(out.height, 256);
  auto at = [&](int x, int y) {
    const uint8_t* p = &out.pixels[(size_t(y) * 256 + x) * 3];
    return std::vector<int>{p[0], p[1], p[2]};
  };
  EXPECT_EQ(at(0, 0), (std::vector<int>{124, 116, 104}));
  EXPECT_EQ(at(255, 63), (std::vector<int>{124, 116, 104}));
  EXPECT_EQ(at(0, 64), (std::vector<int>{255, 255, 255}));
  EXPECT_EQ(at(255, 191), (std::vector<int>{255, 255, 255}));
  EXPECT_EQ(at(128, 192), (std::vector<int>{124, 116, 104}));
}

TEST(TransformTest, NormalizeIsToTensorThenNormalize) {
  PreprocessConfig config;
  config.height = 1;
  config.width = 2;
  const ImageRGB8 im{2, 1, {0, 128, 255, 10, 20, 30}};
  float out[6];
  ASSERT_TRUE(to_normalized_chw(im, config, out).ok());
  EXPECT_EQ(out[0], (0.0f / 255.0f - 0.485f) / 0.229f);
  EXPECT_EQ(out[1], (10.0f / 255.0f - 0.485f) / 0.229f);
  EXPECT_EQ(out[2], (128.0f / 255.0f - 0.456f) / 0.224f);
  EXPECT_EQ(out[5], (30.0f / 255.0f - 0.406f) / 0.225f);
  config.width = 3;
  EXPECT_FALSE(to_normalized_chw(im, config, out).ok());
}

TEST(TransformTest, ExtremeAspectRatioIsAnErrorNotACrash) {
  PreprocessConfig config;
  config.crop_mode = CropMode::kBorder;
  // 1 x 1000 fitted into 256: the short side rounds to 0 pixels.
  EXPECT_FALSE(transform_rgb8(make_image(1, 1000, coordinate_value), config).ok());
  config.crop_mode = CropMode::kCenter;
  // The other way round, the long side becomes 256000 pixels, of which only the crop is computed.
  const ImageRGB8 out = transform_ok(make_image(1, 1000, [](int, int, int) -> uint8_t { return 9; }), config);
  EXPECT_EQ(out.pixels[0], 9);
}

}  // namespace
}  // namespace dinov3
