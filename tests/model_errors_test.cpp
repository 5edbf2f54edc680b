// Hostile and broken inputs to the loader and the forward: each must be a clear error, never a crash.
// The tests build the bad files themselves from the good fixtures.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "dinov3/model.h"
#include "dinov3/tensor_file.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

const std::string kTiny = "models/tiny";

// A copy of the tiny fixture folder whose files a test may then break.
struct ModelCopy {
  test::TempDir dir;
  ModelCopy() {
    fs::copy_file(test::fixture(kTiny + "/config.json"), dir.file("config.json"));
    fs::copy_file(test::fixture(kTiny + "/model.safetensors"), dir.file("model.safetensors"));
  }
  std::string weights() const { return dir.file("model.safetensors"); }
  // Replaces the first `from` in config.json with `to` (the fixture must contain `from`).
  void edit_config(const std::string& from, const std::string& to) const {
    std::string cfg = test::read_file(dir.file("config.json"));
    const size_t at = cfg.find(from);
    ASSERT_NE(at, std::string::npos) << "config.json has no " << from;
    cfg.replace(at, from.size(), to);
    test::write_file(dir.file("config.json"), cfg);
  }
};

Status load_status(const std::string& dir) {
  LoadOptions lo;
  lo.backend = "reference";
  return Model::load(dir, lo).status();
}

void expect_error(const Status& st, ErrorCode code, const std::string& fragment) {
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(st.code(), code) << st.message();
  EXPECT_NE(st.message().find(fragment), std::string::npos) << "message: " << st.message();
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file from a header text and a data section.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  return le64(header.size()) + header + data;
}

TEST(SafetensorsErrors, TruncatedAtManyLengths) {
  const std::string good = test::read_file(test::fixture(kTiny + "/model.safetensors"));
  test::TempDir tmp;
  for (size_t cut : {size_t{0}, size_t{3}, size_t{8}, size_t{100}, good.size() / 2, good.size() - 1}) {
    const std::string path = tmp.file("cut.safetensors");
    test::write_file(path, good.substr(0, cut));
    Result<TensorArchive> r = open_safetensors(path);
    EXPECT_FALSE(r.ok()) << "cut at " << cut;
    EXPECT_EQ(r.status().code(), ErrorCode::kFormatError) << r.status().message();
  }
}

TEST(SafetensorsErrors, HeaderProblems) {
  test::TempDir tmp;
  const std::string path = tmp.file("bad.safetensors");
  struct Case {
    std::string bytes;
    ErrorCode code;
    std::string fragment;
  };
  const std::string data(64, '\0');
  const std::vector<Case> cases = {
      {le64(1ull << 60) + "{}", ErrorCode::kFormatError, "absurd"},
      {safetensors_bytes("{not json", data), ErrorCode::kFormatError, "not a JSON object"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", data),
       ErrorCode::kFormatError, "overlap"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[32],"data_offsets":[0,128]}})", data), ErrorCode::kFormatError,
       "run past"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}})", data), ErrorCode::kFormatError,
       "needs 20"},
      {safetensors_bytes(R"({"a":{"dtype":"Q4_K","shape":[4],"data_offsets":[0,16]}})", data), ErrorCode::kUnsupported,
       "unknown dtype 'Q4_K'"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data), ErrorCode::kFormatError,
       "shape"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}})", data),
       ErrorCode::kFormatError, "overflows"},
      {safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[16,0]}})", data), ErrorCode::kFormatError,
       "data_offsets"},
  };
  for (const Case& c : cases) {
    test::write_file(path, c.bytes);
    expect_error(open_safetensors(path).status(), c.code, c.fragment);
  }
}

TEST(SafetensorsRoundTrip, SaveRefusesToOverwriteUnlessAsked) {
  test::TempDir tmp;
  const std::string path = tmp.file("out.safetensors");
  Tensor t({2, 3}, {1, 2, 3, 4, 5, 6});
  ASSERT_TRUE(save_safetensors(path, {{"x", &t}}, {{"k", "v"}}, /*overwrite=*/false).ok());
  const std::string before = test::read_file(path);
  Tensor other({1}, {9});
  expect_error(save_safetensors(path, {{"x", &other}}, {}, /*overwrite=*/false), ErrorCode::kInvalidArgument,
               "already exists");
  EXPECT_EQ(test::read_file(path), before);
  Result<TensorArchive> a = open_safetensors(path);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->metadata().at("k"), "v");
  Result<Tensor> x = a->load_f32("x");
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->shape, (Shape{2, 3}));
  EXPECT_EQ(x->data, t.data);
  ASSERT_TRUE(save_safetensors(path, {{"x", &other}}, {}, /*overwrite=*/true).ok());
  EXPECT_EQ(open_safetensors(path)->load_f32("x")->data, other.data);
}

TEST(SafetensorsDtypes, HalfAndBfloat16AreConverted) {
  test::TempDir tmp;
  const std::string path = tmp.file("h.safetensors");
  // 1.0, -2.0, 0.5, 65504 in F16; 1.0, -2.0, 0.5, 3.0 in BF16.
  const uint16_t f16[] = {0x3c00, 0xc000, 0x3800, 0x7bff};
  const uint16_t bf16[] = {0x3f80, 0xc000, 0x3f00, 0x4040};
  std::string data(reinterpret_cast<const char*>(f16), 8);
  data.append(reinterpret_cast<const char*>(bf16), 8);
  test::write_file(path, safetensors_bytes(R"({"h":{"dtype":"F16","shape":[4],"data_offsets":[0,8]},"b":{"dtype":"BF16","shape":[4],"data_offsets":[8,16]}})", data));
  Result<TensorArchive> a = open_safetensors(path);
  ASSERT_TRUE(a.ok()) << a.status().message();
  EXPECT_EQ(a->load_f32("h")->data, (std::vector<float>{1.0f, -2.0f, 0.5f, 65504.0f}));
  EXPECT_EQ(a->load_f32("b")->data, (std::vector<float>{1.0f, -2.0f, 0.5f, 3.0f}));
}

// Rewrites the fixture's safetensors with one tensor changed by `edit` (shape, name, dtype, removal).
void rewrite_weights(const std::string& src, const std::string& dst,
                     const std::function<bool(std::string* name, Tensor* t)>& edit,
                     const std::vector<std::pair<std::string, Tensor>>& extra = {}) {
  Result<TensorArchive> a = open_safetensors(src);
  ASSERT_TRUE(a.ok());
  std::vector<std::pair<std::string, Tensor>> kept;
  for (const auto& raw : a->tensors()) {
    std::string name = raw.name;
    Tensor t = *a->load_f32(raw);
    if (edit(&name, &t)) kept.emplace_back(name, std::move(t));
  }
  kept.insert(kept.end(), extra.begin(), extra.end());
  std::vector<NamedTensor> named;
  for (const auto& [n, t] : kept) named.push_back({n, &t});
  ASSERT_TRUE(save_safetensors(dst, named).ok());
}

TEST(ModelErrors, MissingTensorIsNamed) {
  ModelCopy m;
  rewrite_weights(test::fixture(kTiny + "/model.safetensors"), m.weights(),
                  [](std::string* name, Tensor*) { return *name != "blocks.1.attn.proj.weight"; });
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "missing tensor 'blocks.1.attn.proj.weight'");
}

TEST(ModelErrors, WrongShapeNamesFoundAndExpected) {
  ModelCopy m;
  rewrite_weights(test::fixture(kTiny + "/model.safetensors"), m.weights(), [](std::string* name, Tensor* t) {
    if (*name == "blocks.0.norm2.weight") *t = Tensor({65});
    return true;
  });
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError,
               "tensor 'blocks.0.norm2.weight' has shape [65], expected [64]");
}

TEST(ModelErrors, ExtraTensorIsNamed) {
  ModelCopy m;
  rewrite_weights(
      test::fixture(kTiny + "/model.safetensors"), m.weights(), [](std::string*, Tensor*) { return true; },
      {{"head.weight", Tensor({10, 64})}});
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "unexpected tensor 'head.weight' with shape [10, 64]");
}

TEST(ModelErrors, DepthFromModelArgsMustMatchWeights) {
  ModelCopy m;
  m.edit_config("\"depth\": 2", "\"depth\": 3");
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "missing tensor 'blocks.2.");
}

TEST(ModelErrors, UnknownArchitecture) {
  ModelCopy m;
  m.edit_config("vit_small_patch16_dinov3", "vit_tiny_patch16_dinov9");
  expect_error(load_status(m.dir.path()), ErrorCode::kUnsupported, "unknown architecture 'vit_tiny_patch16_dinov9'");
}

TEST(ModelErrors, ConfigNotJson) {
  ModelCopy m;
  test::write_file(m.dir.file("config.json"), "architecture = vit_small_patch16_dinov3\n");
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "not valid JSON");
}

TEST(ModelErrors, UnknownModelArg) {
  ModelCopy m;
  m.edit_config("\"num_heads\": 2", "\"num_heads\": 2, \"warp_factor\": 9");
  expect_error(load_status(m.dir.path()), ErrorCode::kUnsupported, "warp_factor");
}

TEST(ModelErrors, HeadsMustDivideEmbedDim) {
  ModelCopy m;
  m.edit_config("\"num_heads\": 2", "\"num_heads\": 3");
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "not divisible");
}

TEST(ModelErrors, MissingFolderAndWeights) {
  expect_error(load_status("/nonexistent/model"), ErrorCode::kNotFound, "/nonexistent/model");
  test::TempDir empty;
  fs::copy_file(test::fixture(kTiny + "/config.json"), empty.file("config.json"));
  expect_error(load_status(empty.path()), ErrorCode::kNotFound, "no weights file");
}

TEST(ModelErrors, UnknownBackend) {
  LoadOptions lo;
  lo.backend = "abacus";
  const Status st = Model::load(test::fixture(kTiny), lo).status();
  expect_error(st, ErrorCode::kNotFound, "unknown backend 'abacus'");
}

TEST(ForwardErrors, BadInputShapes) {
  LoadOptions lo;
  lo.backend = "reference";
  Result<std::unique_ptr<Model>> model = Model::load(test::fixture(kTiny), lo);
  ASSERT_TRUE(model.ok()) << model.status().message();
  Model& m = **model;
  expect_error(m.forward(Tensor({1, 3, 64, 60})).status(), ErrorCode::kInvalidArgument, "not a multiple of the patch size");
  expect_error(m.forward(Tensor({1, 3, 50, 64})).status(), ErrorCode::kInvalidArgument, "not a multiple");
  expect_error(m.forward(Tensor({3, 64, 64})).status(), ErrorCode::kInvalidArgument, "[B, C, H, W]");
  expect_error(m.forward(Tensor({1, 4, 64, 64})).status(), ErrorCode::kInvalidArgument, "channels");
  expect_error(m.forward(Tensor({0, 3, 64, 64})).status(), ErrorCode::kInvalidArgument, "empty");
  Tensor lying({1, 3, 1 << 20, 1 << 20}, std::vector<float>(16));  // shape claims 3 TB, data is tiny
  expect_error(m.forward(lying).status(), ErrorCode::kInvalidArgument, "values");
  ForwardOptions fo;
  fo.intermediate_blocks = {5};
  expect_error(m.forward(Tensor({1, 3, 32, 32}), fo).status(), ErrorCode::kInvalidArgument, "out of range");
  // A good call still works after the failures.
  EXPECT_TRUE(m.forward(Tensor({2, 3, 32, 48})).ok());
}

TEST(ForwardIntermediates, NegativeIndicesAndNormMatchFeatures) {
  LoadOptions lo;
  lo.backend = "reference";
  Result<std::unique_ptr<Model>> model = Model::load(test::fixture(kTiny), lo);
  ASSERT_TRUE(model.ok());
  Result<TensorArchive> expected = open_safetensors(test::fixture(kTiny + "/expected.safetensors"));
  ASSERT_TRUE(expected.ok());
  ForwardOptions fo;
  fo.intermediate_blocks = {-1, 0};
  fo.norm_intermediates = true;
  Result<ForwardOutput> out = (*model)->forward(*expected->load_f32("input"), fo);
  ASSERT_TRUE(out.ok()) << out.status().message();
  ASSERT_EQ(out->intermediates.size(), 2u);
  EXPECT_EQ(out->intermediates[0].block, 1);
  EXPECT_EQ(out->intermediates[1].block, 0);
  // The last block, normed, is forward_features.
  EXPECT_EQ(out->intermediates[0].tokens.data, out->features.data);
}

}  // namespace
}  // namespace dinov3
