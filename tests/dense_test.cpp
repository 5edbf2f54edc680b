// Dense features: the --size / --long-side rule, the pixel -> patch mapping, the PCA and similarity
// pictures against independent computations from `dinov3 infer --save` output, and bad input.
//
// The independent side: the PCA is plain double loops (covariance) and power iteration on C^1024
// (repeated squaring, so a small gap between the 3rd and 4th eigenvalue still converges), with deflation;
// the pixel -> patch mapping of a center crop is written out from timm's resize rule for the fixture's
// sizes; pictures are decoded with the project's PNG decoder.
#include <gtest/gtest.h>
#include <limits>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dinov3/analysis.h"
#include "dinov3/files.h"
#include "dinov3/image.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "dinov3/tensor_file.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

const std::string kVits = test::fixture("models/vits16");
const std::string kTiny = test::fixture("models/tiny");
const std::string kChelsea = test::fixture("images/chelsea.png");        // 451 x 300
const std::string kRocket = test::fixture("images/rocket.jpg");          // 640 x 427
const std::string kPortrait = test::fixture("images/coffee_portrait.png");  // 400 x 600
constexpr int64_t kPrefix = 5;                                           // cls + 4 registers
constexpr int64_t kDim = 384;

test::CommandResult dinov3(const std::string& args) { return test::run_command(test::cli_path() + " " + args); }

ImageRGB8 decode(const std::string& path) {
  Result<ImageRGB8> im = decode_image_file(path);
  EXPECT_TRUE(im.ok()) << im.status().message();
  return im.ok() ? std::move(im).value() : ImageRGB8{};
}

// Patch features [P, D] of image b from an `infer --save` file.
std::vector<std::vector<double>> saved_patches(const std::string& file, int64_t b) {
  Result<TensorArchive> archive = open_safetensors(file);
  EXPECT_TRUE(archive.ok()) << archive.status().message();
  const Tensor f = *archive->load_f32("features");
  const int64_t T = f.shape[1], D = f.shape[2];
  std::vector<std::vector<double>> rows;
  for (int64_t t = kPrefix; t < T; ++t) {
    const float* r = f.ptr() + (b * T + t) * D;
    rows.emplace_back(r, r + D);
  }
  return rows;
}

// ---- the independent PCA ----------------------------------------------------------------------------

using Matrix = std::vector<std::vector<double>>;

Matrix multiply(const Matrix& a, const Matrix& b) {
  const size_t n = a.size();
  Matrix c(n, std::vector<double>(n, 0.0));
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < n; ++k)
      for (size_t j = 0; j < n; ++j) c[i][j] += a[i][k] * b[k][j];
  return c;
}

struct ReferencePca {
  std::vector<double> mean;
  Matrix axes;  // 3 rows, documented sign convention applied
  std::array<double, 3> ratio{};
};

ReferencePca reference_pca(const Matrix& rows) {
  const size_t n = rows.size(), D = rows[0].size();
  ReferencePca r;
  r.mean.assign(D, 0.0);
  for (const auto& x : rows)
    for (size_t d = 0; d < D; ++d) r.mean[d] += x[d] / static_cast<double>(n);
  Matrix cov(D, std::vector<double>(D, 0.0));
  for (const auto& x : rows)
    for (size_t i = 0; i < D; ++i)
      for (size_t j = 0; j < D; ++j) cov[i][j] += (x[i] - r.mean[i]) * (x[j] - r.mean[j]) / static_cast<double>(n - 1);
  double trace = 0.0;
  for (size_t i = 0; i < D; ++i) trace += cov[i][i];
  for (int k = 0; k < 3; ++k) {
    Matrix m = cov;
    for (int s = 0; s < 10; ++s) {  // m = cov^(2^10), rescaled
      m = multiply(m, m);
      double top = 0.0;
      for (const auto& row : m)
        for (double v : row) top = std::max(top, std::abs(v));
      for (auto& row : m)
        for (double& v : row) v /= top;
    }
    std::vector<double> v(D);
    for (size_t i = 0; i < D; ++i) v[i] = 1.0 + 0.01 * static_cast<double>(i % 7);
    for (int it = 0; it < 50; ++it) {
      std::vector<double> w(D, 0.0);
      const Matrix& op = it < 2 ? m : cov;
      for (size_t i = 0; i < D; ++i)
        for (size_t j = 0; j < D; ++j) w[i] += op[i][j] * v[j];
      double norm = 0.0;
      for (double x : w) norm += x * x;
      for (size_t i = 0; i < D; ++i) v[i] = w[i] / std::sqrt(norm);
    }
    double lambda = 0.0;
    for (size_t i = 0; i < D; ++i)
      for (size_t j = 0; j < D; ++j) lambda += v[i] * cov[i][j] * v[j];
    size_t largest = 0;
    for (size_t i = 1; i < D; ++i)
      if (std::abs(v[i]) > std::abs(v[largest])) largest = i;
    if (v[largest] < 0)
      for (double& x : v) x = -x;
    r.axes.push_back(v);
    r.ratio[static_cast<size_t>(k)] = lambda / trace;
    for (size_t i = 0; i < D; ++i)
      for (size_t j = 0; j < D; ++j) cov[i][j] -= lambda * v[i] * v[j];
  }
  return r;
}

double project(const ReferencePca& r, int k, const std::vector<double>& x) {
  double s = 0.0;
  for (size_t d = 0; d < x.size(); ++d) s += (x[d] - r.mean[d]) * r.axes[static_cast<size_t>(k)][d];
  return s;
}

// ---- the independent pixel -> patch mapping ---------------------------------------------------------

// timm's center crop to 256 of a landscape image (shorter side = height): the height becomes 256, the
// width int(256 * w / h), and the crop starts at round((resized w - 256) / 2).
struct CenterCrop256 {
  int width, height, resized_w, offset_x;
  int64_t column(int x) const {  // -1: cropped away
    const double u = (x + 0.5) * resized_w / width - offset_x;
    return u >= 0 && u < 256 ? static_cast<int64_t>(std::floor(u / 16)) : -1;
  }
  int64_t row(int y) const { return static_cast<int64_t>(std::floor((y + 0.5) * 256 / height / 16)); }
};
constexpr CenterCrop256 kChelseaCrop{451, 300, 384, 64};  // 256 * 451 / 300 = 384.9; (384 - 256) / 2 = 64
constexpr CenterCrop256 kRocketCrop{640, 427, 383, 64};   // 256 * 640 / 427 = 383.7; round(63.5) = 64

// ---- sizes ------------------------------------------------------------------------------------------

DINOV3_SUITE_LABELS(InputSize, "unit");

TEST(InputSize, RoundsToTheNearestMultipleOfThePatchAtLeastOne) {
  EXPECT_EQ(round_to_patch(500, 16), 496);
  EXPECT_EQ(round_to_patch(700, 16), 704);
  EXPECT_EQ(round_to_patch(504, 16), 512);  // 31.5 patches: halves round up
  EXPECT_EQ(round_to_patch(503.9, 16), 496);
  EXPECT_EQ(round_to_patch(8, 16), 16);
  EXPECT_EQ(round_to_patch(3, 16), 16);  // at least one patch
  EXPECT_EQ(round_to_patch(1024, 16), 1024);
}

TEST(InputSize, SizeAndLongSideGiveTheDocumentedGrids) {
  auto hw = [](InputSize s, int w, int h) {
    Result<std::array<int, 2>> r = dense_input_size(s, w, h, 16);
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? *r : std::array<int, 2>{0, 0};
  };
  EXPECT_EQ(hw({500, 0}, 451, 300), (std::array<int, 2>{496, 496}));  // 31 x 31 patches
  // --long-side 700: longer side 704; shorter round16(700 * 300 / 451 = 465.6) = 464: 29 x 44 patches.
  EXPECT_EQ(hw({0, 700}, 451, 300), (std::array<int, 2>{464, 704}));
  // Portrait: round16(700 * 400 / 600 = 466.7) = 464 wide, 704 tall.
  EXPECT_EQ(hw({0, 700}, 400, 600), (std::array<int, 2>{704, 464}));
  EXPECT_EQ(hw({0, 700}, 500, 500), (std::array<int, 2>{704, 704}));
  EXPECT_EQ(hw({0, 512}, 5000, 20), (std::array<int, 2>{16, 512}));  // the short side keeps one patch
}

TEST(InputSize, BadRequestsAreClearErrors) {
  auto message = [](InputSize s, int w, int h) {
    Result<std::array<int, 2>> r = dense_input_size(s, w, h, 16);
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message();
  };
  EXPECT_NE(message({500, 700}, 451, 300).find("not both"), std::string::npos);
  EXPECT_NE(message({-5, 0}, 451, 300).find("positive"), std::string::npos);
  EXPECT_NE(message({0, 20000}, 451, 300).find("largest input side"), std::string::npos);
  EXPECT_NE(message({500, 0}, 12, 300).find("smaller than one 16x16 patch"), std::string::npos);
  EXPECT_NE(message({0, 500}, 300, 15).find("smaller than one 16x16 patch"), std::string::npos);
}

TEST(InputSize, OtherPreprocessingSettingsStayTheLayouts) {
  Result<std::unique_ptr<Model>> model = Model::load(kTiny);
  ASSERT_TRUE(model.ok()) << model.status().message();
  ModelConfig c = (*model)->config();
  c.data.interpolation = "bilinear";
  c.data.crop_pct = 0.875;
  c.data.mean = {0.5f, 0.5f, 0.5f};
  const ImageRGB8 image = decode(kChelsea);
  for (const char* mode : {"center", "squash", "border"}) {
    SCOPED_TRACE(mode);
    c.data.crop_mode = mode;
    Result<PreprocessConfig> p = preprocess_config_for_image(c, {0, 700}, image.width, image.height);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_EQ(p->height, 464);
    EXPECT_EQ(p->width, 704);
    EXPECT_STREQ(crop_mode_name(p->crop_mode), mode);
    EXPECT_EQ(p->interpolation, Interpolation::kBilinear);
    EXPECT_EQ(p->crop_pct, 0.875);
    EXPECT_EQ(p->mean[0], 0.5f);
  }
  // A center crop at a non-square size keeps the layout's interpolation (timm would switch to bilinear).
  c.data.crop_mode = "center";
  c.data.interpolation = "bicubic";
  c.data.crop_pct = 1.0;
  Result<PreprocessConfig> p = preprocess_config_for_image(c, {0, 700}, image.width, image.height);
  ASSERT_TRUE(p.ok());
  Result<PreprocessGeometry> g = preprocess_geometry(image.width, image.height, *p);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->interpolation, Interpolation::kBicubic);
  // Covering 704 x 464 by the shorter-side ratio min(300 / 464, 451 / 704) = 451 / 704: 704 x round(468.3).
  EXPECT_EQ(g->resize_width, 704);
  EXPECT_EQ(g->resize_height, 468);
  EXPECT_EQ(g->offset_y, 2);
  // Squash with crop_pct 1 is exactly Pillow's resize to W x H.
  c.data.crop_mode = "squash";
  p = preprocess_config_for_image(c, {0, 700}, image.width, image.height);
  ASSERT_TRUE(p.ok());
  Result<ImageRGB8> squashed = transform_rgb8(image, *p);
  Result<ImageRGB8> resized = resize_rgb8(image, 704, 464, Interpolation::kBicubic);
  ASSERT_TRUE(squashed.ok() && resized.ok());
  EXPECT_EQ(squashed->pixels, resized->pixels);
  // --size without an image (embed): square, and --long-side refused there.
  Result<PreprocessConfig> square = preprocess_config_for_size(c, {500, 0});
  ASSERT_TRUE(square.ok());
  EXPECT_EQ(square->height, 496);
  EXPECT_EQ(square->width, 496);
  EXPECT_FALSE(preprocess_config_for_size(c, {0, 700}).ok());
}

// A minute or more under the sanitizers.
DINOV3_TEST_LABELS(InputSize, CliSizesGiveTheDocumentedGrids, "unit", "slow");
TEST(InputSize, CliSizesGiveTheDocumentedGrids) {
  test::TempDir tmp;
  struct Case {
    std::string args;
    std::vector<int64_t> input, features;
  };
  for (const Case& c : {Case{"--image " + kChelsea + " --size 500", {1, 3, 496, 496}, {1, kPrefix + 31 * 31, kDim}},
                        Case{"--image " + kChelsea + " --long-side 700", {1, 3, 464, 704}, {1, kPrefix + 29 * 44, kDim}},
                        Case{"--image " + kPortrait + " --long-side 700", {1, 3, 704, 464}, {1, kPrefix + 44 * 29, kDim}}}) {
    SCOPED_TRACE(c.args);
    const test::CommandResult r = dinov3("infer --model " + kVits + " " + c.args + " --runs 1 --warmup 0 --output-dir " + tmp.path());
    ASSERT_EQ(r.exit_code, 0) << r.out;
    const auto j = nlohmann::json::parse(test::read_file(tmp.file("infer.json")));
    EXPECT_EQ(j["input"]["shape"].get<std::vector<int64_t>>(), c.input);
    EXPECT_EQ(j["features"]["shape"].get<std::vector<int64_t>>(), c.features);
  }
}

// ---- pixel -> patch -----------------------------------------------------------------------------------

DINOV3_SUITE_LABELS(DenseFeatures, "unit");

TEST(DenseFeatures, PixelsMapThroughTheCenterCrop) {
  Result<std::unique_ptr<Model>> model = Model::load(kTiny);
  ASSERT_TRUE(model.ok()) << model.status().message();
  // tiny's config is timm's 256 center crop, as vits16's.
  Result<DenseFeatures> f = compute_dense_features(**model, kChelsea, {});
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->grid_h, 16);
  EXPECT_EQ(f->grid_w, 16);
  EXPECT_EQ(f->patches.shape, (Shape{256, 64}));
  for (int y = 0; y < 300; ++y) {
    for (int x = 0; x < 451; ++x) {
      const int64_t col = kChelseaCrop.column(x);
      ASSERT_EQ(patch_at_pixel(*f, x, y), col < 0 ? -1 : kChelseaCrop.row(y) * 16 + col) << x << "," << y;
    }
  }
  EXPECT_EQ(patch_at_pixel(*f, -1, 0), -1);
  EXPECT_EQ(patch_at_pixel(*f, 0, 300), -1);
  Result<int64_t> cropped = patch_for_point(*f, 10, 10);
  ASSERT_FALSE(cropped.ok());
  EXPECT_NE(cropped.status().message().find("cropped away"), std::string::npos) << cropped.status().message();
  Result<int64_t> outside = patch_for_point(*f, 451, 10);
  ASSERT_FALSE(outside.ok());
  EXPECT_NE(outside.status().message().find("outside the 451x300 image"), std::string::npos);
}

TEST(DenseFeatures, AnImageAtTheInputSizeMapsOnePatchPer16Pixels) {
  Result<std::unique_ptr<Model>> model = Model::load(kTiny);
  ASSERT_TRUE(model.ok()) << model.status().message();
  ImageRGB8 image{80, 48, std::vector<uint8_t>(80 * 48 * 3)};
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(i * 7);
  Result<DenseFeatures> f = compute_dense_features(**model, image, {0, 80});
  ASSERT_TRUE(f.ok()) << f.status().message();
  EXPECT_EQ(f->preprocess.width, 80);
  EXPECT_EQ(f->preprocess.height, 48);
  for (int y = 0; y < 48; ++y)
    for (int x = 0; x < 80; ++x) ASSERT_EQ(patch_at_pixel(*f, x, y), (y / 16) * 5 + x / 16);
  ImageRGB8 tiny{15, 40, std::vector<uint8_t>(15 * 40 * 3)};
  Result<DenseFeatures> bad = compute_dense_features(**model, tiny, {});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("smaller than one 16x16 patch"), std::string::npos) << bad.status().message();
}

// ---- PNG ----------------------------------------------------------------------------------------------

DINOV3_SUITE_LABELS(Png, "unit");

TEST(Png, EncodesWhatTheDecoderReadsBack) {
  test::TempDir tmp;
  ImageRGB8 image{37, 11, std::vector<uint8_t>(37 * 11 * 3)};
  const auto noise = test::random_uniform(image.pixels.size(), 9, 0.0f, 255.0f);
  for (size_t i = 0; i < image.pixels.size(); ++i) image.pixels[i] = static_cast<uint8_t>(noise[i]);
  ASSERT_TRUE(write_png_file(tmp.file("a.png"), image, false).ok());
  EXPECT_EQ(decode(tmp.file("a.png")).pixels, image.pixels);
  const std::string before = test::read_file(tmp.file("a.png"));
  image.pixels[0] ^= 1;
  EXPECT_FALSE(write_png_file(tmp.file("a.png"), image, false).ok());
  EXPECT_EQ(test::read_file(tmp.file("a.png")), before);
  EXPECT_TRUE(write_png_file(tmp.file("a.png"), image, true).ok());
  EXPECT_EQ(decode(tmp.file("a.png")).pixels, image.pixels);
  EXPECT_FALSE(encode_png(ImageRGB8{}).ok());
}

// ---- PCA ------------------------------------------------------------------------------------------------

class DensePictures : public testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new test::TempDir();
    // Features of both photos at the model's own preprocessing (256 center crop), as infer gives them.
    const test::CommandResult r = dinov3("infer --model " + kVits + " --image " + kChelsea + " --image " + kRocket +
                                         " --save " + tmp_->file("features.safetensors") +
                                         " --runs 1 --warmup 0 --output-dir " + tmp_->path());
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  static void TearDownTestSuite() { delete tmp_; }
  static test::TempDir* tmp_;
};
test::TempDir* DensePictures::tmp_ = nullptr;

DINOV3_SUITE_LABELS(DensePictures, "unit");

// A minute or more under the sanitizers.
DINOV3_TEST_LABELS(DensePictures, PcaMatchesAnIndependentPcaAndThePictureIsItsDocumentedMapping, "unit", "slow");
TEST_F(DensePictures, PcaMatchesAnIndependentPcaAndThePictureIsItsDocumentedMapping) {
  const test::CommandResult r = dinov3("pca --model " + kVits + " " + kChelsea + " -o " + tmp_->file("pca.png") +
                                       " --components-out " + tmp_->file("pca.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const Matrix rows = saved_patches(tmp_->file("features.safetensors"), 0);
  ASSERT_EQ(rows.size(), 256u);
  const ReferencePca want = reference_pca(rows);

  Result<PatchPca> got = load_patch_pca(tmp_->file("pca.safetensors"));
  ASSERT_TRUE(got.ok()) << got.status().message();
  for (size_t k = 0; k < 3; ++k) {
    double dot = 0.0;
    for (int64_t d = 0; d < kDim; ++d) dot += got->components[k * kDim + static_cast<size_t>(d)] * want.axes[k][static_cast<size_t>(d)];
    EXPECT_GT(std::abs(dot), 1.0 - 1e-6) << "component " << k;  // the same axis up to sign ...
    EXPECT_GT(dot, 0.0) << "component " << k;                    // ... and the documented sign
    EXPECT_NEAR(got->explained_variance_ratio[k], want.ratio[k], 1e-5) << "component " << k;
  }
  EXPECT_GT(want.ratio[0], want.ratio[1]);
  EXPECT_GT(want.ratio[1], want.ratio[2]);

  // Every pixel: the patch under it (center crop), coloured by min/max scaling of the independent scores.
  std::array<double, 3> lo{1e300, 1e300, 1e300}, hi{-1e300, -1e300, -1e300};
  std::vector<std::array<double, 3>> scores;
  for (const auto& x : rows) {
    std::array<double, 3> s{};
    for (int k = 0; k < 3; ++k) {
      s[static_cast<size_t>(k)] = project(want, k, x);
      lo[static_cast<size_t>(k)] = std::min(lo[static_cast<size_t>(k)], s[static_cast<size_t>(k)]);
      hi[static_cast<size_t>(k)] = std::max(hi[static_cast<size_t>(k)], s[static_cast<size_t>(k)]);
    }
    scores.push_back(s);
  }
  const ImageRGB8 picture = decode(tmp_->file("pca.png"));
  ASSERT_EQ(picture.width, 451);
  ASSERT_EQ(picture.height, 300);
  int max_diff = 0, outside = 0;
  for (int y = 0; y < 300; ++y) {
    for (int x = 0; x < 451; ++x) {
      const uint8_t* px = &picture.pixels[(size_t(y) * 451 + x) * 3];
      const int64_t col = kChelseaCrop.column(x);
      if (col < 0) {
        ASSERT_EQ(px[0] + px[1] + px[2], 0) << "cropped-away pixel " << x << "," << y << " is not black";
        ++outside;
        continue;
      }
      const auto& s = scores[static_cast<size_t>(kChelseaCrop.row(y) * 16 + col)];
      for (size_t k = 0; k < 3; ++k) {
        const double t = std::clamp((s[k] - lo[k]) / (hi[k] - lo[k]), 0.0, 1.0);
        // The two PCAs agree to ~1e-9, so a colour may differ by one level where 255 * t sits on a .5.
        max_diff = std::max(max_diff, std::abs(px[k] - static_cast<int>(std::lround(255.0 * t))));
      }
    }
  }
  EXPECT_LE(max_diff, 1);
  EXPECT_EQ(outside, 300 * (451 - (376 - 75)));  // columns 75..375 are seen (u = (x + 0.5) * 384 / 451 - 64)

  // The saved PCA applied to the same image gives the same picture.
  const test::CommandResult again = dinov3("pca --model " + kVits + " " + kChelsea + " -o " + tmp_->file("again.png") +
                                           " --components-in " + tmp_->file("pca.safetensors"));
  ASSERT_EQ(again.exit_code, 0) << again.out;
  EXPECT_EQ(test::read_file(tmp_->file("again.png")), test::read_file(tmp_->file("pca.png")));
}

// A minute or more under the sanitizers.
DINOV3_TEST_LABELS(DensePictures, ForegroundIsDeterministicAndFollowsTheDocumentedRule, "unit", "slow");
TEST_F(DensePictures, ForegroundIsDeterministicAndFollowsTheDocumentedRule) {
  for (const char* name : {"fg1.png", "fg2.png"}) {
    const test::CommandResult r = dinov3("pca --model " + kVits + " " + kChelsea + " --foreground -o " + tmp_->file(name));
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  EXPECT_EQ(test::read_file(tmp_->file("fg1.png")), test::read_file(tmp_->file("fg2.png")));

  // First component of all patches, thresholded at 0 (the mean), foreground on the side the border is not.
  const Matrix rows = saved_patches(tmp_->file("features.safetensors"), 0);
  const ReferencePca all = reference_pca(rows);
  std::vector<double> first;
  double border = 0.0;
  int border_n = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    first.push_back(project(all, 0, rows[p]));
    const size_t r = p / 16, c = p % 16;
    if (r == 0 || c == 0 || r == 15 || c == 15) {
      border += first.back();
      ++border_n;
    }
  }
  const bool positive = border / border_n <= 0.0;
  int foreground = 0;
  for (double s : first) foreground += positive ? s > 0 : s < 0;
  ASSERT_GT(foreground, 1);
  ASSERT_LT(foreground, 256);
  const ImageRGB8 picture = decode(tmp_->file("fg1.png"));
  for (int y = 0; y < 300; ++y) {
    for (int x = 0; x < 451; ++x) {
      const int64_t col = kChelseaCrop.column(x);
      if (col < 0) continue;
      const size_t p = static_cast<size_t>(kChelseaCrop.row(y) * 16 + col);
      const bool fg = positive ? first[p] > 0 : first[p] < 0;
      const uint8_t* px = &picture.pixels[(size_t(y) * 451 + x) * 3];
      ASSERT_EQ(px[0] + px[1] + px[2] > 0, fg) << "pixel " << x << "," << y << " patch " << p;
    }
  }
}

// ---- similarity -------------------------------------------------------------------------------------

std::vector<double> cosines(const std::vector<double>& q, const Matrix& rows) {
  std::vector<double> out;
  for (const auto& x : rows) {
    double qx = 0, qq = 0, xx = 0;
    for (size_t d = 0; d < q.size(); ++d) {
      qx += q[d] * x[d];
      qq += q[d] * q[d];
      xx += x[d] * x[d];
    }
    out.push_back(qx / std::sqrt(qq * xx));
  }
  return out;
}

TEST_F(DensePictures, SimilarityEqualsCosinesOfInferFeatures) {
  const Matrix chelsea = saved_patches(tmp_->file("features.safetensors"), 0);
  const Matrix rocket = saved_patches(tmp_->file("features.safetensors"), 1);
  // Pixel (200, 150) of chelsea: u = 200.5 * 384 / 451 - 64 = 106.7 -> column 6; v = 150.5 * 256 / 300 -> row 8.
  const std::vector<double>& query = chelsea[8 * 16 + 6];

  // The library's map, on the same model and preprocessing.
  Result<std::unique_ptr<Model>> model = Model::load(kVits);
  ASSERT_TRUE(model.ok()) << model.status().message();
  Result<DenseFeatures> source = compute_dense_features(**model, kChelsea, {});
  Result<DenseFeatures> target = compute_dense_features(**model, kRocket, {});
  ASSERT_TRUE(source.ok() && target.ok());
  Result<int64_t> patch = patch_for_point(*source, 200, 150);
  ASSERT_TRUE(patch.ok()) << patch.status().message();
  EXPECT_EQ(*patch, 8 * 16 + 6);
  Result<std::vector<float>> sim = patch_similarity(source->patches.ptr() + *patch * kDim, kDim, *target);
  ASSERT_TRUE(sim.ok());
  const std::vector<double> want = cosines(query, rocket);
  ASSERT_EQ(sim->size(), want.size());
  for (size_t p = 0; p < want.size(); ++p) EXPECT_NEAR((*sim)[p], want[p], 1e-6) << "patch " << p;
  const std::vector<double> self = cosines(query, chelsea);
  EXPECT_NEAR(self[8 * 16 + 6], 1.0, 1e-12);

  // The command's picture: viridis of the min/max-scaled cosines, alpha 0.5 over rocket; the cropped-away
  // columns keep rocket's pixels.
  const test::CommandResult r = dinov3("similarity --model " + kVits + " " + kChelsea + " --point 200,150 --to " + kRocket +
                                       " -o " + tmp_->file("sim.png"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("patch row 8, column 6"), std::string::npos) << r.out;
  const double lo = *std::min_element(want.begin(), want.end()), hi = *std::max_element(want.begin(), want.end());
  const ImageRGB8 image = decode(kRocket), picture = decode(tmp_->file("sim.png"));
  ASSERT_EQ(picture.width, 640);
  ASSERT_EQ(picture.height, 427);
  int max_diff = 0;
  for (int y = 0; y < 427; ++y) {
    for (int x = 0; x < 640; ++x) {
      const size_t i = (size_t(y) * 640 + x) * 3;
      const int64_t col = kRocketCrop.column(x);
      if (col < 0) {
        ASSERT_TRUE(std::equal(&picture.pixels[i], &picture.pixels[i] + 3, &image.pixels[i])) << x << "," << y;
        continue;
      }
      const double t = (want[static_cast<size_t>(kRocketCrop.row(y) * 16 + col)] - lo) / (hi - lo);
      const auto color = viridis_color(static_cast<int>(std::lround(255.0 * t)));
      for (size_t c = 0; c < 3; ++c) {
        const int expect = static_cast<int>(std::lround(0.5 * image.pixels[i + c] + 0.5 * color[c]));
        max_diff = std::max(max_diff, std::abs(picture.pixels[i + c] - expect));
      }
    }
  }
  // Cosines agree to ~1e-7 (float features), so the colour index may differ by one on a .5 boundary,
  // moving a channel by at most one step of viridis (<= 3 levels) times alpha.
  EXPECT_LE(max_diff, 2);
}

DINOV3_SUITE_LABELS(Viridis, "unit");

TEST(Viridis, EndsAndMiddleAreMatplotlibs) {
  EXPECT_EQ(viridis_color(0), (std::array<uint8_t, 3>{68, 1, 84}));      // #440154
  EXPECT_EQ(viridis_color(128), (std::array<uint8_t, 3>{33, 145, 140}));  // #21918c
  EXPECT_EQ(viridis_color(255), (std::array<uint8_t, 3>{253, 231, 37}));  // #fde725
}

// ---- bad input --------------------------------------------------------------------------------------

DINOV3_SUITE_LABELS(DenseCli, "unit");

DINOV3_TEST_LABELS(DenseCli, SimilarityRefusesValuesThatAreNotFinite, "hostile");
TEST(DenseCli, SimilarityRefusesValuesThatAreNotFinite) {
  Result<std::unique_ptr<Model>> model = Model::load(kTiny);
  ASSERT_TRUE(model.ok()) << model.status().message();
  Result<DenseFeatures> f = compute_dense_features(**model, kChelsea, {});
  ASSERT_TRUE(f.ok()) << f.status().message();
  const int64_t dim = f->dim();
  ASSERT_GT(dim, 3);
  EXPECT_FALSE(patch_similarity(nullptr, dim, *f).ok());
  std::vector<float> query(f->patches.ptr(), f->patches.ptr() + dim);
  Result<std::vector<float>> sim = patch_similarity(query.data(), dim, *f);
  ASSERT_TRUE(sim.ok()) << sim.status().message();
  EXPECT_NEAR((*sim)[0], 1.0f, 1e-6f);  // the query is patch 0's own features
  ASSERT_TRUE(render_similarity(*f, *sim, 0.5).ok());
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> q = query;
    q[3] = bad;
    const Result<std::vector<float>> r = patch_similarity(q.data(), dim, *f);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("value 3"), std::string::npos) << r.status().message();
    std::vector<float> map = *sim;
    map[1] = bad;
    const Result<ImageRGB8> picture = render_similarity(*f, map, 0.5);
    ASSERT_FALSE(picture.ok()) << bad;
    EXPECT_NE(picture.status().message().find("value 1"), std::string::npos) << picture.status().message();
  }
}

DINOV3_TEST_LABELS(DenseCli, BadInputIsAClearError, "hostile");
DINOV3_TEST_LABELS(DenseCli, SavedComponentsWithInfiniteRangesAreRefused, "hostile");
TEST(DenseCli, BadInputIsAClearError) {
  test::TempDir tmp;
  ImageRGB8 small{12, 40, std::vector<uint8_t>(12 * 40 * 3, 100)};
  ASSERT_TRUE(write_png_file(tmp.file("small.png"), small, false).ok());
  const test::CommandResult tiny = dinov3("pca --model " + kTiny + " " + kChelsea + " -o " + tmp.file("tiny.png") +
                                          " --components-out " + tmp.file("tiny_pca.safetensors"));
  ASSERT_EQ(tiny.exit_code, 0) << tiny.out;
  struct Case {
    std::string args;
    int exit_code;
    std::string says;
  };
  const std::string m = "--model " + kVits + " ";
  for (const Case& c : {
           Case{"similarity " + m + kChelsea + " --point 451,10 -o " + tmp.file("s.png"), 1, "outside the 451x300 image"},
           Case{"similarity " + m + kChelsea + " --point 10,10 -o " + tmp.file("s.png"), 1, "cropped away"},
           Case{"similarity " + m + kChelsea + " --point 10 -o " + tmp.file("s.png"), 1, "--point must be X,Y"},
           Case{"pca " + m + tmp.file("small.png"), 1, "smaller than one 16x16 patch"},
           Case{"pca " + m + kChelsea + " --size 500 --long-side 700", 2, "--size excludes --long-side"},
           Case{"infer " + m + "--image " + kChelsea + " --size 500 --long-side 700", 2, "--size excludes --long-side"},
           Case{"infer " + m + "--image " + kChelsea + " --size 0", 2, "--size"},
           Case{"infer " + m + "--image " + kChelsea + " --image " + kPortrait + " --long-side 700 --output-dir " + tmp.path(),
                1, "one batch needs one size"},
           Case{"embed " + m + kChelsea + " -o " + tmp.file("e.npy") + " --long-side 700", 1, "use --size"},
           Case{"pca " + m + kChelsea + " --components-in " + tmp.file("tiny_pca.safetensors") + " -o " + tmp.file("p.png"),
                1, "the saved PCA is for features of width 64, this model's are 384"},
           Case{"pca " + m + kChelsea + " --components-in " + kVits + "/expected.safetensors -o " + tmp.file("p.png"), 1,
                "not a file saved by --components-out"},
       }) {
    SCOPED_TRACE(c.args);
    const test::CommandResult r = dinov3(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << r.out;
  }
  EXPECT_FALSE(fs::exists(tmp.file("s.png")));
  EXPECT_FALSE(fs::exists(tmp.file("p.png")));
}

TEST(DenseCli, OutputsAreNamedAndNeverWrittenOverUnasked) {
  test::TempDir tmp;
  const std::string m = "--model " + kVits + " ";
  // Several images with -o: a folder of <stem>.pca.png.
  test::CommandResult r = dinov3("pca " + m + kChelsea + " " + kRocket + " -o " + tmp.file("out"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(decode(tmp.file("out/chelsea.pca.png")).width, 451);
  EXPECT_EQ(decode(tmp.file("out/rocket.pca.png")).width, 640);
  const std::string before = test::read_file(tmp.file("out/rocket.pca.png"));
  r = dinov3("pca " + m + kRocket + " --long-side 320 -o " + tmp.file("out/rocket.pca.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("already exists"), std::string::npos) << r.out;
  EXPECT_EQ(test::read_file(tmp.file("out/rocket.pca.png")), before);
  r = dinov3("pca " + m + kRocket + " --long-side 320 --overwrite -o " + tmp.file("out/rocket.pca.png"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(test::read_file(tmp.file("out/rocket.pca.png")), before);
  // Without -o: beside the input.
  fs::copy_file(kChelsea, tmp.file("cat.png"));
  r = dinov3("pca " + m + tmp.file("cat.png") + " --long-side 256");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(decode(tmp.file("cat.pca.png")).height, 300);
  // An input is never an output, even with --overwrite.
  r = dinov3("pca " + m + tmp.file("cat.png") + " --overwrite -o " + tmp.file("cat.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("never written over"), std::string::npos) << r.out;
  EXPECT_EQ(decode(tmp.file("cat.png")).pixels, decode(kChelsea).pixels);
  // Nor is it --components-out (which replaced the image with safetensors bytes), nor is the picture.
  for (const std::string& target : {tmp.file("cat.png"), tmp.file("cat.pca.png")}) {
    const std::string kept = test::read_file(target);
    r = dinov3("pca " + m + tmp.file("cat.png") + " --long-side 256 --overwrite -o " + tmp.file("cat.pca.png") +
               " --components-out " + target);
    EXPECT_EQ(r.exit_code, 1) << target;
    EXPECT_NE(r.out.find("never written over"), std::string::npos) << r.out;
    EXPECT_EQ(test::read_file(target), kept);
  }
}

TEST(DenseCli, SavedComponentsWithInfiniteRangesAreRefused) {
  // An infinite end of a colour range gave NaN colours, then lround(NaN).
  test::TempDir tmp;
  PatchPca pca;
  pca.mean.assign(8, 0.0f);
  pca.components.assign(3 * 8, 0.0f);
  for (size_t k = 0; k < 3; ++k) {
    pca.components[k * 8 + k] = 1.0f;
    pca.low[k] = -1.0f;
    pca.high[k] = 1.0f;
    pca.explained_variance_ratio[k] = 0.3;
  }
  ASSERT_TRUE(save_patch_pca(tmp.file("ok.safetensors"), pca, {}, false).ok());
  EXPECT_TRUE(load_patch_pca(tmp.file("ok.safetensors")).ok());
  // Shapes whose element count overflows int64 wrapped past the checks, then read through a null pointer.
  Tensor huge;
  huge.shape = {int64_t{1} << 62, 8};
  EXPECT_EQ(fit_patch_pca({&huge}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(project_patches(pca, huge).status().code(), ErrorCode::kInvalidArgument);
  // Such a PCA is not written (the writer made files its reader refused), and a file holding one is refused.
  pca.high[1] = INFINITY;
  const Status unsaved = save_patch_pca(tmp.file("inf.safetensors"), pca, {}, false);
  EXPECT_EQ(unsaved.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(unsaved.message().find("PCA: component 1's colour range or explained variance is not finite"),
            std::string::npos) << unsaved.message();
  EXPECT_FALSE(file_exists(tmp.file("inf.safetensors")));
  Result<TensorArchive> ok = open_safetensors(tmp.file("ok.safetensors"));
  ASSERT_TRUE(ok.ok());
  const Tensor mean = *ok->load_f32("mean"), components = *ok->load_f32("components");
  const Tensor ratio = *ok->load_f32("explained_variance_ratio");
  Tensor range = *ok->load_f32("range");
  range.data[3] = INFINITY;  // component 1's high end
  ASSERT_TRUE(save_safetensors(tmp.file("inf.safetensors"),
                               {{"mean", &mean}, {"components", &components}, {"explained_variance_ratio", &ratio},
                                {"range", &range}},
                               ok->metadata(), false)
                  .ok());
  const Result<PatchPca> bad = load_patch_pca(tmp.file("inf.safetensors"));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("inf.safetensors: PCA: component 1's colour range or explained variance is "
                                        "not finite"),
            std::string::npos) << bad.status().message();
}

DINOV3_SUITE_LABELS(InputSize, "unit");
DINOV3_SUITE_LABELS(Viridis, "unit");
DINOV3_SUITE_LABELS(Png, "unit");
DINOV3_SUITE_LABELS(DenseFeatures, "unit");
DINOV3_SUITE_LABELS(DensePictures, "golden");
DINOV3_SUITE_LABELS(DenseCli, "unit");
DINOV3_TEST_LABELS(DenseCli, BadInputIsAClearError, "hostile");

}  // namespace
}  // namespace dinov3
