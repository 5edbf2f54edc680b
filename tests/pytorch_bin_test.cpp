// open_pytorch_bin: the fixture checkpoints must match their safetensors twins bit for bit, and hostile
// files (built here byte by byte) must fail with an error that says why, never crash.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "dinov3/model.h"
#include "dinov3/tensor_file.h"
#include "model/checkpoint.h"
#include "test_labels.h"
#include "test_util.h"
#include "torch_writer.h"

namespace dinov3 {
namespace {

using namespace dinov3::test;  // the torch.save writer

// One 2x3 float tensor over storage "0".
std::string small_checkpoint(bool zip64 = false) {
  return checkpoint(state_dict_pickle({{"w", "0", 6, {2, 3}, {3, 1}}}), {{"archive/data/0", float_bytes(6)}}, zip64);
}

Result<TensorArchive> open_bytes(const std::string& bytes) {
  test::TempDir dir;
  const std::string path = dir.file("pytorch_model.bin");
  test::write_file(path, bytes);
  return open_pytorch_bin(path);  // the mapping outlives the unlinked file
}

void expect_error(const Result<TensorArchive>& result, const std::string& needle) {
  ASSERT_FALSE(result.ok()) << "expected an error containing: " << needle;
  EXPECT_NE(result.status().message().find(needle), std::string::npos) << result.status().message();
}

std::vector<float> values_of(const TensorArchive& archive, const std::string& name) {
  Result<Tensor> tensor = archive.load_f32(name);
  EXPECT_TRUE(tensor.ok()) << tensor.status().message();
  return tensor.ok() ? tensor->data : std::vector<float>{};
}

class FixtureTest : public testing::TestWithParam<const char*> {};

DINOV3_SUITE_LABELS(FixtureTest, "unit");

TEST_P(FixtureTest, MatchesSafetensorsBitwise) {
  const std::string dir = test::fixture(std::string("models/") + GetParam());
  Result<TensorArchive> bin = open_pytorch_bin(dir + "/pytorch_model.bin");
  Result<TensorArchive> reference = open_safetensors(dir + "/model.safetensors");
  ASSERT_TRUE(bin.ok()) << bin.status().message();
  ASSERT_TRUE(reference.ok()) << reference.status().message();

  std::set<std::string> bin_names, reference_names;
  for (const RawTensor& raw : bin->tensors()) bin_names.insert(raw.name);
  for (const RawTensor& raw : reference->tensors()) reference_names.insert(raw.name);
  EXPECT_EQ(bin_names, reference_names);
  EXPECT_EQ(bin_names.size(), bin->tensors().size()) << "duplicate names";

  for (const RawTensor& raw : bin->tensors()) {
    SCOPED_TRACE(raw.name);
    const RawTensor* twin = reference->find(raw.name);
    ASSERT_NE(twin, nullptr);
    EXPECT_EQ(raw.dtype, twin->dtype);
    EXPECT_EQ(raw.shape, twin->shape);
    Result<Tensor> a = bin->load_f32(raw);
    Result<Tensor> b = reference->load_f32(*twin);
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_EQ(a->data.size(), b->data.size());
    EXPECT_EQ(std::memcmp(a->data.data(), b->data.data(), a->data.size() * sizeof(float)), 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Models, FixtureTest, testing::Values("tiny", "tiny_swiglu_qkvb"));

DINOV3_SUITE_LABELS(PytorchBinTest, "hostile");

DINOV3_TEST_LABELS(PytorchBinTest, ReadsStridedViewsOfSharedStorage, "unit");
TEST(PytorchBinTest, ReadsStridedViewsOfSharedStorage) {
  // "t" is the transpose of a 2x3 matrix; "s" is a slice further along the same storage.
  const std::string pickle = state_dict_pickle({{"t", "0", 12, {3, 2}, {1, 3}}, {"s", "0", 12, {2}, {1}, 5}});
  Result<TensorArchive> archive = open_bytes(checkpoint(pickle, {{"archive/data/0", float_bytes(12)}}));
  ASSERT_TRUE(archive.ok()) << archive.status().message();
  EXPECT_EQ(values_of(*archive, "t"), (std::vector<float>{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(values_of(*archive, "s"), (std::vector<float>{5, 6}));
  const RawTensor* t = archive->find("t");
  const RawTensor* s = archive->find("s");
  ASSERT_TRUE(t != nullptr && s != nullptr);
  EXPECT_EQ(t->nbytes, 6 * sizeof(float));
  EXPECT_EQ(s->data, t->data + 5 * sizeof(float));
}

DINOV3_TEST_LABELS(PytorchBinTest, ReadsZip64Layout, "unit");
TEST(PytorchBinTest, ReadsZip64Layout) {
  Result<TensorArchive> archive = open_bytes(small_checkpoint(/*zip64=*/true));
  ASSERT_TRUE(archive.ok()) << archive.status().message();
  EXPECT_EQ(values_of(*archive, "w"), (std::vector<float>{0, 1, 2, 3, 4, 5}));
}

DINOV3_TEST_LABELS(PytorchBinTest, ReadsOrderedDictWithMetadataAndParameters, "unit");
TEST(PytorchBinTest, ReadsOrderedDictWithMetadataAndParameters) {
  // OrderedDict() holding a Parameter, with the `_metadata` attribute set by BUILD, in protocol 4 style
  // (FRAME, MEMOIZE, STACK_GLOBAL, short strings).
  Pickle p;
  p.proto(4).op(0x95).raw(0, 8);
  p.short_str("collections").short_str("OrderedDict").op(0x93).op(0x94).op(')').op('R').mark();
  p.str("w").global("torch._utils", "_rebuild_parameter").mark();
  p.tensor("0", 6, {2, 3}, {3, 1}).op(0x88).op('h').raw(0, 1).op(')').op('R').op('t').op('R');
  p.op('u');
  p.op('}').mark().str("_metadata").op('h').raw(0, 1).op(')').op('R').mark();
  p.str("").op('}').mark().str("version").integer(1).op('u').op('u').op('u').op('b').op('.');
  Result<TensorArchive> archive = open_bytes(checkpoint(p.bytes(), {{"archive/data/0", float_bytes(6)}}));
  ASSERT_TRUE(archive.ok()) << archive.status().message();
  ASSERT_EQ(archive->tensors().size(), 1u);
  EXPECT_EQ(archive->tensors()[0].shape, (Shape{2, 3}));
}

DINOV3_TEST_LABELS(PytorchBinTest, AcceptsLittleEndianByteorderAndRefusesBig, "unit");
TEST(PytorchBinTest, AcceptsLittleEndianByteorderAndRefusesBig) {
  const std::string pickle = state_dict_pickle({{"w", "0", 6, {2, 3}, {3, 1}}});
  const auto saved_with = [&](const char* order) {
    return checkpoint(pickle, {{"archive/byteorder", order}, {"archive/data/0", float_bytes(6)}});
  };
  Result<TensorArchive> little = open_bytes(saved_with("little"));
  EXPECT_TRUE(little.ok()) << little.status().message();
  expect_error(open_bytes(saved_with("big")), "big-endian");
}

TEST(PytorchBinTest, RefusesForbiddenGlobals) {
  const std::string os_system =
      Pickle().proto(2).global("os", "system").mark().str("ls").op('t').op('R').op('.').bytes();
  Result<TensorArchive> archive = open_bytes(checkpoint(os_system, {}));
  expect_error(archive, "pytorch_model.bin: pickle refers to a forbidden global 'os.system'; "
                        "only state_dict contents are accepted");
  EXPECT_EQ(archive.status().code(), ErrorCode::kUnsupported);

  const std::string eval = Pickle().proto(4).short_str("builtins").short_str("eval").op(0x93).op('.').bytes();
  expect_error(open_bytes(checkpoint(eval, {})), "forbidden global 'builtins.eval'");

  // A torch global that is not on the list is refused too, even inside an otherwise valid state_dict.
  Pickle p;
  p.proto(2).op('}').mark().str("w").global("torch._utils", "_rebuild_tensor_v2");
  expect_error(open_bytes(checkpoint(p.global("posix", "system").bytes(), {})), "'posix.system'");
}

TEST(PytorchBinTest, NamesMissingStorageRecord) {
  const std::string pickle = state_dict_pickle({{"a", "0", 6, {6}, {1}}, {"b", "3", 6, {6}, {1}}});
  expect_error(open_bytes(checkpoint(pickle, {{"archive/data/0", float_bytes(6)}})),
               "zip record missing: archive/data/3");
}

TEST(PytorchBinTest, RefusesCompressedRecord) {
  const std::string pickle = state_dict_pickle({{"w", "0", 6, {6}, {1}}});
  expect_error(open_bytes(checkpoint(pickle, {{"archive/data/0", float_bytes(6), /*method=*/8}})),
               "compressed zip entries are not supported");
}

TEST(PytorchBinTest, RefusesStorageSmallerThanTheTensor) {
  // The persistent id claims 6 elements, the record holds 4.
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 6, {2, 3}, {3, 1}}}),
                                     {{"archive/data/0", float_bytes(4)}})),
               "claims 6 elements");
  // The storage is whole, but the shape and strides reach past it.
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 6, {3, 3}, {3, 1}}}),
                                     {{"archive/data/0", float_bytes(6)}})),
               "reaches element 8");
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 6, {2, 3}, {3, 1}, 1}}),
                                     {{"archive/data/0", float_bytes(6)}})),
               "reaches element 6");
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 6, {2, 3}, {-3, 1}}}),
                                     {{"archive/data/0", float_bytes(6)}})),
               "strides");
}

TEST(PytorchBinTest, RejectsEveryTruncation) {
  const std::string whole = small_checkpoint();
  for (size_t length = 0; length < whole.size(); ++length)
    EXPECT_FALSE(open_bytes(whole.substr(0, length)).ok()) << "cut at " << length;
  const std::string whole64 = small_checkpoint(/*zip64=*/true);
  for (size_t length = 0; length < whole64.size(); ++length)
    EXPECT_FALSE(open_bytes(whole64.substr(0, length)).ok()) << "zip64, cut at " << length;
}

TEST(PytorchBinTest, RejectsCentralDirectoryCutShort) {
  // Bytes vanish from the middle of the central directory while the end record still describes it whole.
  const std::string whole = small_checkpoint();
  const size_t directory = whole.find("PK\x01\x02");
  ASSERT_NE(directory, std::string::npos);
  const size_t eocd = whole.size() - 22;
  for (size_t cut = directory + 1; cut < eocd; cut += 7) {
    const std::string broken = whole.substr(0, cut) + whole.substr(eocd);
    EXPECT_FALSE(open_bytes(broken).ok()) << "cut at " << cut;
  }
}

TEST(PytorchBinTest, SurvivesCorruptedBytes) {
  // Whatever one overwritten byte does, opening fails cleanly or yields tensors that load in bounds.
  for (const bool zip64 : {false, true}) {
    const std::string whole = small_checkpoint(zip64);
    for (size_t pos = 0; pos < whole.size(); ++pos) {
      for (const char value : {'\x00', '\x7f', '\xff'}) {
        std::string corrupt = whole;
        corrupt[pos] = value;
        Result<TensorArchive> archive = open_bytes(corrupt);
        if (!archive.ok()) continue;
        for (const RawTensor& raw : archive->tensors())
          EXPECT_TRUE(archive->load_f32(raw).ok()) << "byte " << pos << " set to " << int(value);
      }
    }
  }
}

TEST(PytorchBinTest, RejectsUnknownOpcode) {
  const std::string pickle = Pickle().proto(2).op('}').op(0xff).op('.').bytes();
  expect_error(open_bytes(checkpoint(pickle, {})), "opcode 0xff at byte 3");
  // INST ('i') would construct an arbitrary class in protocol 0; it is not part of the subset.
  expect_error(open_bytes(checkpoint(Pickle().op('i').bytes(), {})), "opcode 0x69");
}

TEST(PytorchBinTest, RejectsFilesThatAreNotCheckpoints) {
  expect_error(open_bytes(""), "not a zip archive");
  expect_error(open_bytes("this is a text file, not a zip archive at all"), "not a zip archive");
  expect_error(open_bytes(make_zip({{"weights.txt", "1 2 3"}})), "data.pkl");
  expect_error(open_bytes(checkpoint(Pickle().proto(2).op(']').op('.').bytes(), {})), "list, not a state_dict");
  expect_error(open_bytes(checkpoint(Pickle().proto(2).op('}').bytes(), {})), "without a STOP");
  expect_error(open_bytes(checkpoint(Pickle().proto(2).op(0x87).bytes(), {})), "underflow");
}

TEST(PytorchBinTest, BoundsNestingMemoAndLengths) {
  Pickle deep;
  deep.proto(2);
  for (int i = 0; i < 100000; ++i) deep.mark();
  expect_error(open_bytes(checkpoint(deep.bytes(), {})), "nests MARKs too deeply");
  Pickle tall;
  tall.proto(2);
  for (int i = 0; i < (1 << 20) + 1; ++i) tall.op('N');
  expect_error(open_bytes(checkpoint(tall.bytes(), {})), "stack is too deep");

  expect_error(open_bytes(checkpoint(Pickle().proto(2).op('j').raw(0xffffffff, 4).bytes(), {})),
               "memo has no entry 4294967295");
  expect_error(open_bytes(checkpoint(Pickle().proto(2).op('X').raw(0xffffffff, 4).bytes(), {})), "truncated");
  expect_error(open_bytes(checkpoint(Pickle().proto(2).op(0x8a).raw(9, 1).bytes(), {})), "wider than 64 bits");
}

TEST(PytorchBinTest, ViewsThatRepeatElementsAreRefused) {
  // expand()-style views: more elements than the storage span they cover.
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 1, {4096, 4096}, {0, 0}}}),
                                     {{"archive/data/0", float_bytes(1)}})),
               "repeats elements of its storage (1 elements spanned)");
  expect_error(open_bytes(checkpoint(state_dict_pickle({{"w", "0", 6, {3, 4}, {1, 1}}}),
                                     {{"archive/data/0", float_bytes(6)}})),
               "repeats elements");
}

TEST(PytorchBinTest, TinyCheckpointWithAbsurdMlpWidthIsRefusedBeforeAllocating) {
  // The reported file: about 1.6 KB whose tensors are all stride-0 views of one float, shaped for an MLP
  // 2^26 wide; `dinov3 info` climbed to 6.5 GB and aborted on bad_alloc.
  const std::string config =
      R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"embed_dim": 64, "depth": 1, "num_heads": 2}})";
  Result<ModelConfig> cfg = parse_model_config(config);
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  cfg->mlp_hidden = int64_t{1} << 26;
  std::vector<TensorSpec> specs;
  for (const ExpectedTensor& e : expected_tensors(*cfg)) specs.push_back({e.name, "0", 1, e.shape, Shape(e.shape.size(), 0)});
  const std::string bin = checkpoint(state_dict_pickle(specs), {{"archive/data/0", float_bytes(1)}});
  ASSERT_LT(bin.size(), 4096u);
  test::TempDir dir;
  test::write_file(dir.file("config.json"), config);
  test::write_file(dir.file("pytorch_model.bin"), bin);

  LoadOptions lo;
  lo.backend = "reference";
  const Status st = Model::load(dir.path(), lo).status();
  EXPECT_EQ(st.code(), ErrorCode::kFormatError) << st.message();
  EXPECT_NE(st.message().find("repeats elements"), std::string::npos) << st.message();
  const test::CommandResult info = test::run_command(test::cli_path() + " info --model " + dir.path());
  EXPECT_EQ(info.exit_code, 1) << info.out;
  EXPECT_NE(info.out.find("dinov3 info: error: "), std::string::npos) << info.out;
  EXPECT_NE(info.out.find("repeats elements"), std::string::npos) << info.out;
  EXPECT_EQ(std::count(info.out.begin(), info.out.end(), '\n'), 1) << info.out;
}

}  // namespace
}  // namespace dinov3
