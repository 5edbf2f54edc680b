// Hostile and broken inputs to the loader and the forward: each must be a clear error, never a crash.
// The tests build the bad files themselves from the good fixtures.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "dinov3/backend.h"
#include "dinov3/collection.h"
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

DINOV3_SUITE_LABELS(SafetensorsErrors, "hostile");

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

TEST(SafetensorsErrors, ElementCountTimesDtypeSizeMayNotWrap) {
  // The reported 96-byte file: 2^62 F64 elements are 2^65 bytes, which wraps to the 0 its offsets give.
  test::TempDir tmp;
  const std::string path = tmp.file("wrap.safetensors");
  std::string header = R"({"x":{"dtype":"F64","shape":[2147483648,2147483648],"data_offsets":[0,0]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  const std::string bytes = safetensors_bytes(header, "") + std::string(96 - 8 - header.size(), '\0');
  ASSERT_EQ(bytes.size(), 96u);
  test::write_file(path, bytes);
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "tensor 'x' has a shape whose size overflows");
  // 2^40 x 2^21 F64 elements wrap the same way with dimensions inside the per-dimension limit.
  test::write_file(path, safetensors_bytes(R"({"x":{"dtype":"F64","shape":[1099511627776,2097152],"data_offsets":[0,0]}})", ""));
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "overflows");
}

TEST(SafetensorsErrors, HeaderNestingIsBoundedBeforeAnythingGrows) {
  // The reported header nested ~50 million deep took 3.9 GB; here 2 MB of nesting inside an ignored
  // field and inside the root must be refused at once, whatever the depth.
  test::TempDir tmp;
  const std::string path = tmp.file("deep.safetensors");
  const size_t depth = 1 << 20;
  const std::string nested = std::string(depth, '[') + std::string(depth, ']');
  test::write_file(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":)" + nested + "}}",
                                           std::string(4, '\0')));
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "nested deeper than 64 levels");
  test::write_file(path, safetensors_bytes(nested, ""));
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "header is not a JSON object");
  // A field the schema does not know is skipped, as other readers do; a metadata value must be a string.
  test::write_file(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"note":{"x":[1,{}]}}})",
                                           std::string(4, '\0')));
  EXPECT_TRUE(open_safetensors(path).ok());
  test::write_file(path, safetensors_bytes(R"({"__metadata__":{"k":[1]}})", ""));
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "__metadata__ value 'k' is not a string");
  test::write_file(path, safetensors_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                           std::string(4, '\0')));
  expect_error(open_safetensors(path).status(), ErrorCode::kFormatError, "tensor 'a' appears twice");
}

DINOV3_SUITE_LABELS(SafetensorsRoundTrip, "unit");

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

TEST(SafetensorsRoundTrip, TextThatIsNotUtf8IsAnErrorNotAnAbort) {
  // JSON cannot carry these bytes: nlohmann threw, and the uncaught exception ended the program.
  test::TempDir tmp;
  Tensor t({1}, {1});
  expect_error(save_safetensors(tmp.file("a.safetensors"), {{"x", &t}}, {{"k", "caf\xe9"}}, false),
               ErrorCode::kInvalidArgument, "holds text that is not UTF-8");
  expect_error(save_safetensors(tmp.file("a.safetensors"), {{"\xff\xfe", &t}}, {}, false), ErrorCode::kInvalidArgument,
               "holds text that is not UTF-8");
  EXPECT_FALSE(fs::exists(tmp.file("a.safetensors")));
  // Files the reader refuses are not written: the header's own key as a tensor name, an unknown dtype.
  expect_error(save_safetensors(tmp.file("a.safetensors"), {{"__metadata__", &t}}, {}, false),
               ErrorCode::kInvalidArgument, "cannot be named '__metadata__'");
  const float one = 1.0f;
  expect_error(write_file_atomic(tmp.file("a.safetensors"), false,
                                 [&](const WriteFn& w) {
                                   return write_safetensors(w, {{"x", static_cast<DType>(99), {1}, &one}}, {});
                                 }),
               ErrorCode::kInvalidArgument, "tensor 'x' has an unknown dtype (99)");
  EXPECT_FALSE(fs::exists(tmp.file("a.safetensors")));
}

DINOV3_SUITE_LABELS(SafetensorsDtypes, "unit");

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

DINOV3_SUITE_LABELS(ModelErrors, "hostile");

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

TEST(ModelErrors, DeepNestingInAConfigIsAnErrorNotAStackOverflow) {
  // The reported config.json: 200 KB nested 100,000 deep inside a known key crashed while the error
  // message quoted the value.
  ModelCopy m;
  m.edit_config("\"num_classes\": 0", "\"num_classes\": " + std::string(100000, '[') + std::string(100000, ']'));
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "config.json: JSON nested deeper than 64 levels");
  // Within the limit, a wrong value is quoted briefly.
  ModelCopy shallow;
  shallow.edit_config("\"num_classes\": 0", "\"num_classes\": " + std::string(40, '[') + std::string(40, ']'));
  const Status st = load_status(shallow.dir.path());
  expect_error(st, ErrorCode::kUnsupported, "num_classes [[[[");
  EXPECT_LT(st.message().size(), 200u) << st.message();
}

TEST(ModelErrors, InputSizeNoImageCouldFillIsRefused) {
  // The reported [3, 65536, 65536] made infer allocate a 51 GB batch and abort.
  ModelCopy m;
  m.edit_config("256,\n      256", "65536,\n      65536");
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError,
               "config.json: pretrained_cfg: preprocessing input size 65536x65536 is more than 178956970 pixels");
}

TEST(ModelErrors, NormalizationMustGiveFiniteValues) {
  // Each of these gave NaN or infinite inputs, and so NaN features with exit code 0.
  for (const auto& [from, to] : std::vector<std::pair<std::string, std::string>>{
           {"0.229", "0"},       // std zero
           {"0.229", "1e-45"},   // a float32 denormal: (v - mean) / std overflows
           {"0.229", "1e39"},    // beyond float32: infinite
           {"0.485", "-1e39"},   // mean beyond float32
       }) {
    ModelCopy m;
    m.edit_config(from, to);
    const Status st = load_status(m.dir.path());
    expect_error(st, ErrorCode::kFormatError, "config.json: pretrained_cfg: preprocessing normalize: channel 0");
  }
  PreprocessConfig pc;
  pc.std = {0.2f, 0.0f, 0.2f};
  ImageRGB8 image{pc.width, pc.height, std::vector<uint8_t>(size_t(pc.width) * pc.height * 3, 7)};
  std::vector<float> out(3 * size_t(pc.width) * pc.height);
  expect_error(to_normalized_chw(image, pc, out.data()), ErrorCode::kInvalidArgument, "channel 1");
}

TEST(ModelErrors, PreprocessingNoImageCanGoThroughIsRefusedUpFront) {
  // check_preprocess_config passed each of these, and then every image failed with a misleading message
  // ("aspect ratio too extreme", "rescale factor nan"); a patch size of 0 divided by zero.
  const auto refused = [](const std::function<void(PreprocessConfig&)>& edit, const std::string& fragment) {
    PreprocessConfig pc;
    edit(pc);
    expect_error(check_preprocess_config(pc), ErrorCode::kInvalidArgument, fragment);
  };
  refused([](PreprocessConfig& p) { p.crop_pct = 1000; }, "crop_pct 1000 resizes a 256x256 input to nothing");
  refused([](PreprocessConfig& p) { p.rescale_factor = std::nan(""); }, "rescale factor nan gives values that are not finite");
  refused([](PreprocessConfig& p) { p.rescale_factor = 1e39; }, "gives values that are not finite");
  refused([](PreprocessConfig& p) { p.crop_mode = static_cast<CropMode>(9); }, "crop mode 9 is none of center, squash");
  expect_error(preprocess_geometry(-5, -5, PreprocessConfig{}).status(), ErrorCode::kInvalidArgument,
               "a -5x-5 image has no pixels to resize");
  ModelConfig c;
  c.patch_size = 0;
  expect_error(preprocess_config_for(c).status(), ErrorCode::kInvalidArgument, "patch size 0 is not positive");
  EXPECT_EQ(forward_flops(c, 32, 32), 0.0);
  c.patch_size = 16;
  c.data.height = (int64_t{1} << 32) + 256;  // was cut to 256 by the cast to int
  expect_error(preprocess_config_for(c).status(), ErrorCode::kInvalidArgument, "is not in [1, 8192]");
  EXPECT_EQ(round_to_patch(2147483647.0, 16), 2147483632);  // wrapped to -2147483648
  EXPECT_EQ(round_to_patch(1e12, 16), 2147483632);          // was 0
  EXPECT_EQ(round_to_patch(500, 16), 496);
}

TEST(ModelErrors, RopePeriodsMustBePositiveAndFinite) {
  // A temperature of 1e-300 gives periods that round to 0 in float32 (the reported config: NaN features,
  // exit code 0); a negative or infinite one is refused as it is read.
  ModelCopy m;
  m.edit_config("\"num_heads\": 2", "\"num_heads\": 2, \"rope_temperature\": 1e-300");
  expect_error(load_status(m.dir.path()), ErrorCode::kFormatError, "RoPE period 2 is 0: the periods");
  ModelCopy fine;  // a small but usable temperature loads
  fine.edit_config("\"num_heads\": 2", "\"num_heads\": 2, \"rope_temperature\": 1e-3");
  EXPECT_TRUE(load_status(fine.dir.path()).ok());
}

TEST(ModelErrors, PathsMustNameRegularFilesWithoutNul) {
  // A NUL byte (possible in a Python string) would end the C string early: "tiny\0x" loaded tiny.
  const std::string tiny = test::fixture(kTiny);
  expect_error(load_status(tiny + std::string(1, '\0') + "x"), ErrorCode::kInvalidArgument, "cannot hold a NUL byte");
  DecodeOptions decode;
  expect_error(decode_image_file(test::fixture("images/chelsea.png") + std::string(1, '\0') + ".jpg", decode).status(),
               ErrorCode::kInvalidArgument, "cannot hold a NUL byte");
  // A FIFO as the weights blocked forever in open(); /dev/zero as an image grew without bound.
  ModelCopy m;
  fs::remove(m.weights());
  ASSERT_EQ(::mkfifo(m.weights().c_str(), 0600), 0);
  expect_error(load_status(m.dir.path()), ErrorCode::kInvalidArgument, "model.safetensors: not a regular file");
  expect_error(decode_image_file(m.weights(), decode).status(), ErrorCode::kInvalidArgument, "not a regular file");
  expect_error(decode_image_file("/dev/zero", decode).status(), ErrorCode::kInvalidArgument,
               "/dev/zero: not a regular file");
  expect_error(decode_image_file(m.dir.path(), decode).status(), ErrorCode::kInvalidArgument, "is a directory");
  expect_error(read_text_file(m.weights()).status(), ErrorCode::kInvalidArgument, "not a regular file");
  expect_error(write_bytes_atomic(m.dir.file("out") + std::string(1, '\0') + "x", false, "data"),
               ErrorCode::kInvalidArgument, "cannot hold a NUL byte");
  EXPECT_FALSE(fs::exists(m.dir.file("out")));
  // An @list line holding a NUL was cut there, silently: "a.png\0evil.png" listed a.png.
  test::write_file(m.dir.file("list.txt"), std::string("a.png\0evil.png\nb.png\n", 20));
  expect_error(expand_inputs({"@" + m.dir.file("list.txt")}).status(), ErrorCode::kInvalidArgument,
               "list.txt: line 1 holds a NUL byte");
  test::write_file(m.dir.file("list.txt"), "a.png\r\n\nb c.png");  // CRLF, a blank line, no final newline
  const Result<std::vector<std::string>> listed = expand_inputs({"@" + m.dir.file("list.txt")});
  ASSERT_TRUE(listed.ok()) << listed.status().message();
  EXPECT_EQ(*listed, (std::vector<std::string>{"a.png", "b c.png"}));
  // Overwriting renamed a plain file over a FIFO (or, as root, over /dev/null); only regular files are replaced.
  expect_error(write_bytes_atomic(m.weights(), true, "data"), ErrorCode::kInvalidArgument,
               "model.safetensors: exists and is not a regular file; only a regular file is replaced");
  EXPECT_TRUE(fs::is_fifo(m.weights()));
  expect_error(write_bytes_atomic(m.dir.path(), true, "data"), ErrorCode::kInvalidArgument, "is not a regular file (a folder)");
  EXPECT_TRUE(fs::is_directory(m.dir.path()));
  ASSERT_TRUE(write_bytes_atomic(m.dir.file("plain"), true, "one").ok());
  ASSERT_TRUE(write_bytes_atomic(m.dir.file("plain"), true, "two").ok());  // a regular file is replaced
  EXPECT_EQ(test::read_file(m.dir.file("plain")), "two");
}

TEST(ModelErrors, FilesWrittenTogetherAreAllMovedOrNone) {
  // The second file cannot be moved into place after the first was (a folder appears at its name while the
  // files are written): the first is put back as it was.
  test::TempDir tmp;
  const std::string a = tmp.file("a.npy"), b = tmp.file("a.index.txt");
  test::write_file(a, "old a");
  const Status st = write_files_together(
      {{a, [](const WriteFn& w) { return w("new a", 5); }},
       {b,
        [&](const WriteFn& w) {
          fs::create_directory(b);
          return w("new b", 5);
        }}},
      /*overwrite=*/true);
  expect_error(st, ErrorCode::kIoError, "a.index.txt: cannot move into place");
  EXPECT_EQ(test::read_file(a), "old a");
  EXPECT_TRUE(fs::is_directory(b));
  fs::remove(b);
  ASSERT_TRUE(write_files_together({{a, [](const WriteFn& w) { return w("new a", 5); }},
                                    {b, [](const WriteFn& w) { return w("new b", 5); }}},
                                   true)
                  .ok());
  EXPECT_EQ(test::read_file(a), "new a");
  EXPECT_EQ(test::read_file(b), "new b");
}

TEST(ModelErrors, EmptyCallablesAndNullPointersAreErrors) {
  // Each of these ended the program: std::bad_function_call escaped, or a null pointer was read.
  register_backend("registered-without-factory", BackendFactory{});
  expect_error(create_backend("registered-without-factory").status(), ErrorCode::kInvalidArgument,
               "registered without a factory");
  test::TempDir tmp;
  expect_error(write_file_atomic(tmp.file("x"), true, nullptr), ErrorCode::kInvalidArgument, "an empty producer");
  expect_error(publish_npy_with_index(tmp.file("e.npy"), {1, 2}, ProduceFn{}, {"a"}, true), ErrorCode::kInvalidArgument,
               "an empty producer");
  const ProduceFn rows = [](const WriteFn& w) { return w("", 0); };
  expect_error(publish_npy_with_index(tmp.file("e.npy"), {1, -2}, rows, {"a"}, true), ErrorCode::kInvalidArgument,
               "is not an array numpy reads");
  expect_error(publish_npy_with_index(tmp.file("e.npy"), Shape(40, 1), rows, {"a"}, true), ErrorCode::kInvalidArgument,
               "is not an array numpy reads");
  EXPECT_TRUE(fs::is_empty(tmp.path()));
  expect_error(decode_image_memory(nullptr, 100, DecodeOptions{}).status(), ErrorCode::kInvalidArgument,
               "no bytes at a null pointer");
  RawTensor raw;  // built in code without strides: contiguous() read past them
  raw.shape = {4, 4};
  EXPECT_FALSE(raw.contiguous());
  raw.strides = {4, 1};
  EXPECT_TRUE(raw.contiguous());
}

TEST(ModelErrors, ThreadCountIsBounded) {
  // 100000 workers hung the machine; 20000 took seconds to start and made a forward 100x slower.
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.threads = 100000;
  expect_error(Model::load(test::fixture(kTiny), lo).status(), ErrorCode::kInvalidArgument,
               "100000 threads is more than");
  lo.backend_options.threads = 8;  // more than the cores is allowed, within bounds
  EXPECT_TRUE(Model::load(test::fixture(kTiny), lo).ok());
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

// Enum fields a C++ caller can set to a cast of any number: each is an error naming the value and the
// choices (they went on as another choice, or named the wrong thing).
TEST(ModelErrors, EnumValuesOutOfRange) {
  for (const char* backend : {"cpu", "reference"}) {
    LoadOptions lo;
    lo.backend = backend;
    lo.backend_options.precision = static_cast<Precision>(7);
    expect_error(Model::load(test::fixture(kTiny), lo).status(), ErrorCode::kInvalidArgument,
                 "precision 7 is none of fp32, bf16 and int8");
  }
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.precision = Precision::kInt8;
  lo.backend_options.int8_linear_precision = [](int64_t) { return static_cast<Precision>(5); };
  expect_error(Model::load(test::fixture(kTiny), lo).status(), ErrorCode::kInvalidArgument,
               "linear layer 0 was given precision 5");
  Result<std::unique_ptr<Model>> model = Model::load(test::fixture(kTiny));
  ASSERT_TRUE(model.ok()) << model.status().message();
  ForwardOptions fo;
  fo.pool = static_cast<PoolMode>(9);
  expect_error((*model)->forward(Tensor({1, 3, 64, 64}), fo).status(), ErrorCode::kInvalidArgument,
               "pool mode 9 is none of default, avg and token");
  const std::string photo = test::fixture("images/chelsea.png");
  PreprocessConfig pc;
  pc.height = pc.width = 64;
  pc.interpolation = static_cast<Interpolation>(5);
  expect_error(preprocess_image_file(photo, pc).status(), ErrorCode::kInvalidArgument,
               "interpolation 5 is none of bicubic and bilinear");
  Result<ImageRGB8> image = decode_image_file(photo);
  ASSERT_TRUE(image.ok()) << image.status().message();
  expect_error(resize_rgb8(*image, 32, 32, static_cast<Interpolation>(5)).status(), ErrorCode::kInvalidArgument,
               "interpolation 5 is none of bicubic and bilinear");
  expect_error(resize_rgb8(*image, 32, 32, Interpolation::kBicubic, static_cast<ResampleKernel>(6)).status(),
               ErrorCode::kInvalidArgument, "resampling kernel 6 is none of auto, scalar and avx2");
}

DINOV3_SUITE_LABELS(ForwardErrors, "hostile");

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
  // Shapes with no valid element count construct (with no values) and are refused by name.
  EXPECT_EQ(Tensor(Shape{-1}).numel(), 0);
  const int64_t huge = int64_t{1} << 40;
  for (const Shape& bad : {Shape{1, 3, -64, 64}, Shape{-2, 3, 64, 64}, Shape{1, 3, huge, huge}}) {
    const Tensor t(bad);
    EXPECT_EQ(t.numel(), 0) << shape_to_string(bad);
    expect_error(m.forward(t).status(), ErrorCode::kInvalidArgument,
                 "input shape " + shape_to_string(bad) + " is invalid");
  }
  ForwardOptions fo;
  fo.intermediate_blocks = {5};
  expect_error(m.forward(Tensor({1, 3, 32, 32}), fo).status(), ErrorCode::kInvalidArgument, "out of range");
  // A good call still works after the failures.
  EXPECT_TRUE(m.forward(Tensor({2, 3, 32, 48})).ok());
}

TEST(ForwardErrors, NonFiniteInputIsAnErrorNamingWhere) {
  // A NaN or infinity reaches every output through attention; it was NaN features and no error.
  LoadOptions lo;
  lo.backend = "cpu";
  Result<std::unique_ptr<Model>> model = Model::load(test::fixture(kTiny), lo);
  ASSERT_TRUE(model.ok()) << model.status().message();
  Tensor x({2, 3, 32, 48});
  x.ptr()[(1 * 3 + 2) * 32 * 48 + 5 * 48 + 7] = std::nanf("");
  expect_error((*model)->forward(x).status(), ErrorCode::kInvalidArgument,
               "input holds NaN (image 1, channel 2, row 5, column 7)");
  Tensor y({1, 3, 32, 32});
  y.ptr()[3] = -INFINITY;
  expect_error((*model)->forward(y).status(), ErrorCode::kInvalidArgument,
               "input holds an infinity (image 0, channel 0, row 0, column 3)");
  y.ptr()[3] = 1e3f;  // large but finite is an input like any other
  EXPECT_TRUE((*model)->forward(y).ok());
  // Finite values that overflow float32 on the way gave NaN features with an OK status, on every backend.
  for (const char* backend : {"cpu", "reference"}) {
    lo.backend = backend;
    Result<std::unique_ptr<Model>> m = Model::load(test::fixture(kTiny), lo);
    ASSERT_TRUE(m.ok()) << m.status().message();
    Tensor z({2, 3, 32, 32});
    std::fill(z.data.begin() + 3 * 32 * 32, z.data.end(), 3e38f);  // image 1
    expect_error((*m)->forward(z).status(), ErrorCode::kInvalidArgument,
                 "forward: image 1 gives NaN or infinity: its input values (largest |x| 3e+38) overflow float32");
  }
}

DINOV3_SUITE_LABELS(ForwardStopCheck, "unit");

TEST(ForwardStopCheck, StopsBeforeTheBlockItSaysAndTheModelStaysUsable) {
  for (const char* backend : {"cpu", "reference"}) {
    LoadOptions lo;
    lo.backend = backend;
    Result<std::unique_ptr<Model>> model = Model::load(test::fixture(kTiny), lo);
    ASSERT_TRUE(model.ok()) << model.status().message();
    Model& m = **model;
    Tensor x({2, 3, 64, 64});
    x.data = test::random_normal(x.data.size(), 11);
    Result<ForwardOutput> want = m.forward(x);
    ASSERT_TRUE(want.ok()) << want.status().message();
    const int64_t depth = m.config().depth;
    ASSERT_GE(depth, 2);
    int calls = 0;
    ASSERT_TRUE(m.set_stop_check([&] { return ++calls == depth; }).ok());  // stop before the last block
    const Status stopped = m.forward(x).status();
    expect_error(stopped, ErrorCode::kCancelled,
                 "stopped by the caller's stop check before block " + std::to_string(depth - 1) + " of " +
                     std::to_string(depth));
    EXPECT_EQ(calls, depth);
    calls = 100;  // never `depth` again: every block runs, one check before each
    Result<ForwardOutput> got = m.forward(x);
    ASSERT_TRUE(got.ok()) << got.status().message();
    EXPECT_EQ(calls, 100 + m.config().depth);
    EXPECT_EQ(got->features.data, want->features.data) << backend;
    EXPECT_EQ(got->pooled.data, want->pooled.data) << backend;
    ASSERT_TRUE(m.set_stop_check(nullptr).ok());
    EXPECT_TRUE(m.forward(x).ok());
  }
}

DINOV3_SUITE_LABELS(ForwardIntermediates, "unit");

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
