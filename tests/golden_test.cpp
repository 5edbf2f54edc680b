// End-to-end against timm: every fixture model and expected file, through both weight formats and
// every backend. Expected outputs were computed by timm in float64; a float32 engine must land within
// relative L2 1e-5 and cosine 0.99999 per image (fixtures/README.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <utility>

#include "dinov3/backend.h"
#include "dinov3/model.h"
#include "dinov3/tensor_file.h"
#include "backend/reference/reference_backend.h"
#include "backend/forwarding_backend.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

constexpr double kMaxRelL2 = 1e-5;
constexpr double kMinCosine = 0.99999;

struct GoldenCase {
  std::string model;     // fixture folder under models/
  std::string expected;  // expected file in it
  std::string format;    // "safetensors" or "pytorch"
  std::string backend;
};

void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.model << "/" << c.expected << " via " << c.format << " on " << c.backend;
}

std::string case_name(const testing::TestParamInfo<GoldenCase>& info) {
  std::string n = info.param.model + "_" + info.param.expected + "_" + info.param.format + "_" + info.param.backend;
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

// Per image, the same metrics on one [B, ...] tensor pair.
void expect_close_per_image(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.shape, want.shape) << what;
  const size_t per_image = want.data.size() / static_cast<size_t>(want.shape[0]);
  for (int64_t b = 0; b < want.shape[0]; ++b) {
    const test::Compare c = test::compare(got, want, static_cast<size_t>(b) * per_image, per_image);
    EXPECT_LE(c.rel_l2, kMaxRelL2) << what << " image " << b << " (cosine " << c.cosine << ", max abs " << c.max_abs << ")";
    EXPECT_GE(c.cosine, kMinCosine) << what << " image " << b;
  }
}

class GoldenTest : public testing::TestWithParam<GoldenCase> {};

DINOV3_SUITE_LABELS(GoldenTest, "golden");

// The reference backend on the full ViT-S/16 takes minutes under the sanitizers (the cpu backend case does not).
DINOV3_TEST_LABELS(GoldenTest, MatchesTimm/vits16_expected_safetensors_safetensors_reference, "golden", "slow");
TEST_P(GoldenTest, MatchesTimm) {
  const GoldenCase& gc = GetParam();
  const std::string src = test::fixture("models/" + gc.model);
  std::string dir = src;
  test::TempDir tmp;
  if (gc.format == "pytorch") {
    // A folder holding only pytorch_model.bin, as users with older hub snapshots have.
    std::filesystem::copy_file(src + "/config.json", tmp.file("config.json"));
    std::filesystem::copy_file(src + "/pytorch_model.bin", tmp.file("pytorch_model.bin"));
    dir = tmp.path();
  }
  LoadOptions lo;
  lo.backend = gc.backend;
  Result<std::unique_ptr<Model>> model = Model::load(dir, lo);
  ASSERT_TRUE(model.ok()) << model.status().message();
  EXPECT_EQ((*model)->weights_info().format, gc.format);

  Result<TensorArchive> expected = open_safetensors(src + "/" + gc.expected);
  ASSERT_TRUE(expected.ok()) << expected.status().message();
  auto want = [&](const char* name) {
    Result<Tensor> t = expected->load_f32(name);
    EXPECT_TRUE(t.ok()) << t.status().message();
    return t.ok() ? std::move(t).value() : Tensor();
  };
  const Tensor input = want("input");

  ForwardOptions fo;
  fo.keep_embed = true;
  fo.intermediate_blocks = {0};
  Result<ForwardOutput> out = (*model)->forward(input, fo);
  ASSERT_TRUE(out.ok()) << out.status().message();
  expect_close_per_image(out->embed, want("stage.embed"), "stage.embed");
  ASSERT_EQ(out->intermediates.size(), 1u);
  expect_close_per_image(out->intermediates[0].tokens, want("stage.blocks.0"), "stage.blocks.0");
  expect_close_per_image(out->features, want("features"), "features");
  expect_close_per_image(out->pooled, want("pooled"), "pooled");

  // token pooling is the CLS row of the features.
  fo = {};
  fo.pool = PoolMode::kToken;
  Result<ForwardOutput> tok = (*model)->forward(input, fo);
  ASSERT_TRUE(tok.ok()) << tok.status().message();
  const Tensor features = want("features");
  const int64_t T = features.shape[1], D = features.shape[2];
  for (int64_t b = 0; b < features.shape[0]; ++b) {
    Tensor cls({1, D}, std::vector<float>(features.data.begin() + b * T * D, features.data.begin() + b * T * D + D));
    Tensor got({1, D}, std::vector<float>(tok->pooled.data.begin() + b * D, tok->pooled.data.begin() + (b + 1) * D));
    expect_close_per_image(got, cls, "token pooled");
  }
}

std::vector<GoldenCase> golden_cases() {
  std::vector<GoldenCase> cases;
  for (const std::string backend : {"reference", "cpu"}) {
    for (const std::string format : {"safetensors", "pytorch"}) {
      cases.push_back({"tiny", "expected.safetensors", format, backend});
      cases.push_back({"tiny", "expected_48x80.safetensors", format, backend});
      cases.push_back({"tiny_swiglu_qkvb", "expected.safetensors", format, backend});
    }
    cases.push_back({"vits16", "expected.safetensors", "safetensors", backend});
    cases.push_back({"tiny", "expected_512.safetensors", "safetensors", backend});  // 1029 tokens: several key blocks
  }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest, testing::ValuesIn(golden_cases()), case_name);

DINOV3_SUITE_LABELS(RopeTest, "golden");

TEST(RopeTest, MatchesTimmTable) {
  struct Case {
    std::string file;
    int64_t gh, gw, head_dim;
  };
  for (const Case& c : {Case{"models/tiny/expected.safetensors", 4, 4, 32},
                        Case{"models/tiny/expected_48x80.safetensors", 3, 5, 32},
                        Case{"models/tiny_swiglu_qkvb/expected.safetensors", 4, 6, 32},
                        Case{"models/vits16/expected.safetensors", 16, 16, 64},
                        Case{"models/tiny/expected_512.safetensors", 32, 32, 32}}) {
    Result<TensorArchive> expected = open_safetensors(test::fixture(c.file));
    ASSERT_TRUE(expected.ok()) << expected.status().message();
    Result<Tensor> want = expected->load_f32("stage.rope");
    ASSERT_TRUE(want.ok());
    const Result<Tensor> got = compute_rope_table(c.gh, c.gw, c.head_dim, 100.0);
    ASSERT_TRUE(got.ok()) << got.status().message();
    ASSERT_EQ(got->shape, want->shape) << c.file;
    const test::Compare cmp = test::compare(*got, *want);
    EXPECT_LE(cmp.max_abs, 1e-6) << c.file;
  }
}

}  // namespace
}  // namespace dinov3

namespace dinov3 {
namespace {

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fff + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// F16/BF16 checkpoints load as the float32 checkpoint of the same rounded values: identical outputs.
DINOV3_SUITE_LABELS(ReducedPrecisionCheckpoint, "unit");  // bf16 weights against their float32 rounding

// Direct callers with values no checkpoint would pass get errors, not exceptions or NaN tables.
TEST(RopeTest, RefusesBadArguments) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (const int64_t head_dim : {int64_t{-4}, int64_t{0}, int64_t{2}, int64_t{6}}) {
    const Result<std::vector<double>> p = rope_periods_from_temperature(head_dim, 100.0);
    ASSERT_FALSE(p.ok()) << head_dim;
    EXPECT_EQ(p.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(p.status().message().find("multiple of 4"), std::string::npos) << p.status().message();
  }
  for (const double t : {0.0, -100.0, nan, inf}) {
    const Result<std::vector<double>> p = rope_periods_from_temperature(32, t);
    ASSERT_FALSE(p.ok()) << t;
    EXPECT_NE(p.status().message().find("temperature"), std::string::npos) << p.status().message();
    EXPECT_FALSE(compute_rope_table(4, 4, 32, t).ok()) << t;
  }
  const std::vector<double> good = {1.0, 10.0};
  for (const auto& [gh, gw] : {std::pair<int64_t, int64_t>{0, 4}, {4, -1}, {-(int64_t{1} << 40), 4},
                                {kMaxRopeGridSide + 1, 1}, {4, int64_t{1} << 62}}) {
    const Result<Tensor> t = compute_rope_table(gh, gw, good);
    ASSERT_FALSE(t.ok()) << gh << " x " << gw;
    EXPECT_EQ(t.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(t.status().message().find("patch grid"), std::string::npos) << t.status().message();
  }
  // Both sides at the bound: more values than a table may hold.
  const Result<Tensor> huge = compute_rope_table(kMaxRopeGridSide, kMaxRopeGridSide, good);
  ASSERT_FALSE(huge.ok());
  EXPECT_EQ(huge.status().code(), ErrorCode::kOutOfMemory);
  EXPECT_FALSE(compute_rope_table(4, 4, std::vector<double>{}).ok());
  for (const double bad : {0.0, -1.0, nan, inf}) {
    const Result<Tensor> t = compute_rope_table(4, 4, std::vector<double>{1.0, bad});
    ASSERT_FALSE(t.ok()) << bad;
    EXPECT_NE(t.status().message().find("period 1"), std::string::npos) << t.status().message();
  }
  // An extreme but positive temperature: periods that round to 0 in float32, refused by the table.
  const Result<std::vector<double>> tiny = rope_periods_from_temperature(32, 1e-300);
  ASSERT_TRUE(tiny.ok());
  EXPECT_FALSE(compute_rope_table(2, 2, *tiny).ok());
  // The smallest valid arguments give a finite table of the stated shape.
  const Result<Tensor> one = compute_rope_table(1, 1, 4, 100.0);
  ASSERT_TRUE(one.ok()) << one.status().message();
  EXPECT_EQ(one->shape, (Shape{1, 8}));
  for (float v : one->data) EXPECT_TRUE(std::isfinite(v));
}

TEST(ReducedPrecisionCheckpoint, Bf16LoadsAsItsRoundedFloat32) {
  const std::string src = test::fixture("models/tiny");
  Result<TensorArchive> a = open_safetensors(src + "/model.safetensors");
  ASSERT_TRUE(a.ok());
  test::TempDir bf16_dir, f32_dir;
  std::string header = "{", data;
  std::vector<std::pair<std::string, Tensor>> rounded;
  for (const auto& raw : a->tensors()) {
    Tensor t = *a->load_f32(raw);
    const size_t begin = data.size();
    for (float& v : t.data) {
      const uint16_t h = to_bf16(v);
      data.append(reinterpret_cast<const char*>(&h), 2);
      v = from_bf16(h);
    }
    header += (header.size() > 1 ? "," : "") + std::string("\"") + raw.name + "\":{\"dtype\":\"BF16\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) header += (i ? "," : "") + std::to_string(t.shape[i]);
    header += "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
    rounded.emplace_back(raw.name, std::move(t));
  }
  header += "}";
  std::string len(8, '\0');
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  test::write_file(bf16_dir.file("model.safetensors"), len + header + data);
  std::vector<NamedTensor> named;
  for (const auto& [n, t] : rounded) named.push_back({n, &t});
  ASSERT_TRUE(save_safetensors(f32_dir.file("model.safetensors"), named).ok());
  for (const auto* d : {&bf16_dir, &f32_dir}) std::filesystem::copy_file(src + "/config.json", d->file("config.json"));

  LoadOptions lo;
  lo.backend = "reference";
  Result<std::unique_ptr<Model>> m16 = Model::load(bf16_dir.path(), lo), m32 = Model::load(f32_dir.path(), lo);
  ASSERT_TRUE(m16.ok()) << m16.status().message();
  ASSERT_TRUE(m32.ok()) << m32.status().message();
  EXPECT_EQ((*m16)->weights_info().dtype, "BF16");
  const Tensor input = *open_safetensors(src + "/expected.safetensors")->load_f32("input");
  EXPECT_EQ((*m16)->forward(input)->features.data, (*m32)->forward(input)->features.data);
}

}  // namespace
}  // namespace dinov3

namespace dinov3 {
namespace {

// The reference backend asking for one image per pass: a batch then runs as several passes.
class OneImagePerPass final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  int64_t max_rows_per_pass(int64_t) const override { return 1; }
};

DINOV3_SUITE_LABELS(Passes, "golden");

TEST(Passes, SubBatchesGiveTimmNumbersAndEqualOnePass) {
  const std::string dir = test::fixture("models/tiny_swiglu_qkvb");
  const Tensor input = *open_safetensors(dir + "/expected.safetensors")->load_f32("input");
  Result<std::unique_ptr<Backend>> inner = create_reference_backend({});
  ASSERT_TRUE(inner.ok());
  Result<std::unique_ptr<Model>> split = Model::load(dir, std::make_unique<OneImagePerPass>(std::move(*inner)));
  LoadOptions lo;
  lo.backend = "reference";
  Result<std::unique_ptr<Model>> whole = Model::load(dir, lo);
  ASSERT_TRUE(split.ok() && whole.ok());
  ForwardOptions fo;
  fo.keep_embed = true;
  fo.intermediate_blocks = {0, -1};
  fo.norm_intermediates = true;
  Result<ForwardOutput> a = (*split)->forward(input, fo), b = (*whole)->forward(input, fo);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(input.shape[0], 2);  // two passes
  EXPECT_EQ(a->features.data, b->features.data);
  EXPECT_EQ(a->pooled.data, b->pooled.data);
  EXPECT_EQ(a->embed.data, b->embed.data);
  ASSERT_EQ(a->intermediates.size(), 2u);
  EXPECT_EQ(a->intermediates[1].block, 1);
  EXPECT_EQ(a->intermediates[0].tokens.data, b->intermediates[0].tokens.data);
  EXPECT_EQ(a->intermediates[1].tokens.data, b->intermediates[1].tokens.data);
  fo = {};
  fo.pool = PoolMode::kToken;
  EXPECT_EQ((*split)->forward(input, fo)->pooled.data, (*whole)->forward(input, fo)->pooled.data);
}

}  // namespace
}  // namespace dinov3
