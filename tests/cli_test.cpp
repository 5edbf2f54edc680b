// The dinov3 commands end to end, run in-process: reports hold every field, accuracy passes and fails
// when it should, hub ids resolve from a fake cache, and images give timm's numbers.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "cli.h"
#include "dinov3/backend.h"
#include "dinov3/hub.h"
#include "dinov3/metrics.h"
#include "dinov3/tensor_file.h"
#include "backend/reference/reference_backend.h"
#include "backend/forwarding_backend.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const std::string kTiny = test::fixture("models/tiny");
const std::string kVits = test::fixture("models/vits16");

int dinov3(std::vector<std::string> args) {
  args.insert(args.begin(), "dinov3");
  return cli::run_cli(args);
}

json read_json(const std::string& path) { return json::parse(test::read_file(path)); }

// The reference backend with Gaussian noise added to every linear layer's output: a backend that is
// deliberately wrong, so the accuracy tool must say FAIL.
class NoisyBackend final : public ForwardingBackend {
 public:
  using ForwardingBackend::ForwardingBackend;
  std::string name() const override { return "noisy"; }
  std::string device() const override { return "reference + noise"; }
  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& e, DeviceBuffer& y) override {
    DINOV3_RETURN_IF_ERROR(inner().linear(x, rows, w, e, y));
    return add_noise(y);
  }
  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& g, const Weight& u, DeviceBuffer& y,
                       const Weight* consumer = nullptr) override {
    DINOV3_RETURN_IF_ERROR(inner().linear_swiglu(x, rows, g, u, y, consumer));
    return add_noise(y);
  }

 private:
  Status add_noise(DeviceBuffer& y) {
    std::vector<float> v(y.size());
    DINOV3_RETURN_IF_ERROR(inner().download(y, 0, v.data(), v.size()));
    std::normal_distribution<float> noise(0.0f, 0.5f);
    for (float& f : v) f += noise(rng_);
    return inner().upload(y, 0, v.data(), v.size());
  }
  std::mt19937 rng_{7};
};

DINOV3_SUITE_LABELS(Stats, "unit");

TEST(Stats, KnownDurations) {
  const Result<LatencyStats> stats = summarize_latencies({10, 1, 9, 2, 8, 3, 7, 4, 6, 5});
  ASSERT_TRUE(stats.ok());
  const LatencyStats& s = *stats;
  EXPECT_EQ(s.count, 10u);
  EXPECT_DOUBLE_EQ(s.mean, 5.5);
  EXPECT_NEAR(s.stddev, 3.0276503540974917, 1e-12);  // sample standard deviation
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 10);
  EXPECT_DOUBLE_EQ(s.p50, 5.5);
  EXPECT_NEAR(s.p90, 9.1, 1e-12);  // numpy.percentile(range(1, 11), 90)
  EXPECT_NEAR(s.p99, 9.91, 1e-12);
  const Result<LatencyStats> one = summarize_latencies({4.0});
  ASSERT_TRUE(one.ok());
  EXPECT_DOUBLE_EQ(one->p99, 4.0);
  EXPECT_DOUBLE_EQ(one->stddev, 0.0);
  const Result<LatencyStats> none = summarize_latencies({});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->count, 0u);
}

TEST(Stats, RefusesSamplesThatAreNotFinite) {
  for (const double bad : {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity(),
                           -std::numeric_limits<double>::infinity()}) {
    const Result<LatencyStats> s = summarize_latencies({3.0, bad, 1.0});
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(s.status().message().find("sample 1"), std::string::npos) << s.status().message();
  }
}

DINOV3_SUITE_LABELS(Metrics, "unit");

TEST(Metrics, KnownVectors) {
  const float a[] = {1, 2, 2}, b[] = {1, 2, 3};
  const Agreement g = compare_outputs(a, b, 3);
  EXPECT_NEAR(g.rel_error, 1.0 / std::sqrt(14.0), 1e-12);
  EXPECT_NEAR(g.cosine, 11.0 / (3.0 * std::sqrt(14.0)), 1e-12);
  EXPECT_NEAR(g.mse, 1.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(g.max_abs_diff, 1.0);
}

// A NaN or infinity on either side is no agreement at all: NaN metrics, which fail every threshold. (A NaN
// baseline once gave rel error 0 through the zero-baseline rule, so an int8 plan calibrated on NaN pixels
// marked every layer as exact.)
TEST(Metrics, NonFiniteValuesAgreeWithNothing) {
  const float good[] = {1, 2, 3};
  for (const float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    const float odd[] = {1, bad, 3};
    for (const Agreement& g : {compare_outputs(good, odd, 3), compare_outputs(odd, good, 3), compare_outputs(odd, odd, 3)}) {
      EXPECT_TRUE(std::isnan(g.rel_error)) << bad;
      EXPECT_TRUE(std::isnan(g.cosine)) << bad;
      EXPECT_TRUE(std::isnan(g.max_abs_diff)) << bad;
      EXPECT_FALSE(g.rel_error < 1e-2 && g.cosine > 0.999);
    }
  }
}

// The worst over images takes each metric's worst image; a NaN in any image (not only the first) is the worst.
TEST(Metrics, WorstOverImages) {
  const float base[] = {1, 2, 3, 1, 2, 3, 1, 2, 3};
  const float got[] = {1, 2, 3, 1, 2, 2, 1, 2, 4};  // exact; off by 1 (rel 0.267); off by 1 (same rel)
  const BatchAgreement w = compare_images(got, base, 3, 3);
  ASSERT_EQ(w.per_image.size(), 3u);
  EXPECT_DOUBLE_EQ(w.per_image[0].rel_error, 0.0);
  EXPECT_NEAR(w.worst.rel_error, 1.0 / std::sqrt(14.0), 1e-12);
  EXPECT_EQ(w.worst_image, 1u);  // the first of the two equally bad
  EXPECT_DOUBLE_EQ(w.worst.cosine, std::min(w.per_image[1].cosine, w.per_image[2].cosine));
  EXPECT_DOUBLE_EQ(w.worst.max_abs_diff, 1.0);
  float nan_later[9];
  std::copy(std::begin(base), std::end(base), nan_later);
  nan_later[7] = std::nanf("");
  const BatchAgreement n = compare_images(nan_later, base, 3, 3);
  EXPECT_TRUE(std::isnan(n.worst.rel_error));
  EXPECT_TRUE(std::isnan(n.worst.cosine));  // compare_outputs gives a NaN output NaN metrics
  EXPECT_TRUE(std::isnan(n.per_image[2].cosine));
  EXPECT_TRUE(std::isnan(n.worst.mse));
  EXPECT_EQ(n.worst_image, 2u);
  EXPECT_FALSE(n.worst.rel_error <= 1e-2 && n.worst.cosine >= 0.999);  // a threshold check fails
}

DINOV3_SUITE_LABELS(Hub, "unit");

TEST(Hub, ResolvesFromFakeCache) {
  test::TempDir cache;
  const fs::path repo = fs::path(cache.path()) / "models--timm--vit_small_patch16_dinov3.lvd1689m";
  const std::string main_commit = "0123abcd0123abcd0123abcd0123abcd0123abcd";
  fs::create_directories(repo / "refs");
  fs::create_directories(repo / "snapshots" / main_commit);
  fs::create_directories(repo / "snapshots" / "other");
  for (const char* f : {"config.json", "model.safetensors"}) {
    fs::copy_file(kTiny + "/" + f, repo / "snapshots" / main_commit / f);
    fs::copy_file(kTiny + "/" + f, repo / "snapshots" / "other" / f);
  }
  // Without refs/main the most recently written snapshot is taken; the times are set, not left to the clock.
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(repo / "snapshots" / main_commit, now - std::chrono::hours(2));
  fs::last_write_time(repo / "snapshots" / "other", now - std::chrono::hours(1));
  ::setenv("HF_HUB_CACHE", cache.path().c_str(), 1);
  Result<ModelLocation> loc = resolve_model(kDefaultModelId);
  ASSERT_TRUE(loc.ok()) << loc.status().message();
  EXPECT_EQ(loc->dir, (repo / "snapshots" / "other").string());
  // refs/main names the snapshot to use, even when another one is newer.
  test::write_file((repo / "refs" / "main").string(), main_commit + "\n");
  loc = resolve_model(kDefaultModelId);
  ASSERT_TRUE(loc.ok()) << loc.status().message();
  EXPECT_EQ(loc->dir, (repo / "snapshots" / main_commit).string());

  // HF_HOME/hub is the next place.
  ::unsetenv("HF_HUB_CACHE");
  test::TempDir home;
  fs::create_directories(fs::path(home.path()) / "hub");
  fs::rename(repo, fs::path(home.path()) / "hub" / repo.filename());
  ::setenv("HF_HOME", home.path().c_str(), 1);
  loc = resolve_model(kDefaultModelId);
  ASSERT_TRUE(loc.ok()) << loc.status().message();
  EXPECT_NE(loc->dir.find(home.path()), std::string::npos);

  test::TempDir out;
  EXPECT_EQ(dinov3({"info", "--model", kDefaultModelId}), 0);
  EXPECT_EQ(dinov3({"infer", "--model", kDefaultModelId, "--output-dir", out.path()}), 0);
  EXPECT_EQ(read_json(out.file("infer.json"))["model"]["dir"].get<std::string>(), loc->dir);

  ::setenv("HF_HOME", cache.path().c_str(), 1);  // an empty cache
  Result<ModelLocation> missing = resolve_model("timm/vit_nonexistent_dinov3");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("/opt/atomgit/weight/vit_nonexistent_dinov3"), std::string::npos);
  EXPECT_NE(missing.status().message().find("models--timm--vit_nonexistent_dinov3"), std::string::npos);
  ::unsetenv("HF_HOME");
}

TEST(Hub, ACheckpointFileIsUsedAsIs) {
  const std::string pth = test::fixture("models/tiny_meta/dinov3_tiny_pretrain_random.pth");
  Result<ModelLocation> loc = resolve_model(pth);
  ASSERT_TRUE(loc.ok()) << loc.status().message();
  EXPECT_EQ(loc->dir, pth);
  EXPECT_EQ(dinov3({"info", "--model", pth}), 0);
  EXPECT_FALSE(resolve_model(test::fixture("models/tiny_meta/no_such.pth")).ok());
}

DINOV3_SUITE_LABELS(Infer, "unit");

TEST(Infer, ReportHoldsEveryField) {
  test::TempDir out;
  const std::string save = out.file("out.safetensors");
  ASSERT_EQ(dinov3({"infer", "--model", kTiny, "--backend", "reference", "--image", test::fixture("images/rocket.jpg"),
                    "--output-dir", out.path(), "--save", save, "--layers", "0,-1"}),
            0);
  const json j = read_json(out.file("infer.json"));
  EXPECT_EQ(j["model"]["architecture"], "vit_small_patch16_dinov3");
  EXPECT_EQ(j["context"]["backend"], "reference");
  EXPECT_TRUE(j["context"]["device"].is_string());
  EXPECT_TRUE(j["context"]["machine"]["cpu"].is_string());
  EXPECT_EQ(j["input"]["shape"], json::array({1, 3, 256, 256}));
  EXPECT_GT(j["latency_ms"]["p50"].get<double>(), 0.0);
  EXPECT_EQ(j["features"]["shape"], json::array({1, 261, 64}));
  EXPECT_EQ(j["features"]["tokens"]["registers"], 4);
  EXPECT_EQ(j["features"]["tokens"]["patches"], 256);
  EXPECT_EQ(j["pooled"]["shape"], json::array({1, 64}));
  EXPECT_EQ(j["pooled"]["first_values"].size(), 5u);
  EXPECT_TRUE(fs::exists(out.file("infer.log")));
  Result<TensorArchive> saved = open_safetensors(save);
  ASSERT_TRUE(saved.ok());
  EXPECT_NE(saved->find("blocks.0"), nullptr);
  EXPECT_NE(saved->find("blocks.1"), nullptr);
  EXPECT_EQ(saved->load_f32("pooled")->data[0], j["pooled"]["first_values"][0].get<float>());

  // An existing --save file is kept unless --overwrite.
  const std::string before = test::read_file(save);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--output-dir", out.path(), "--save", save, "--pool", "token"}), 1);
  EXPECT_EQ(test::read_file(save), before);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--output-dir", out.path(), "--save", save, "--pool", "token", "--overwrite"}), 0);
  EXPECT_NE(test::read_file(save), before);
}

DINOV3_TEST_LABELS(Infer, ImagesGiveTimmNumbers, "golden");
TEST(Infer, ImagesGiveTimmNumbers) {
  // The vits16 fixture's expected outputs came from these three files through timm's preprocessing.
  test::TempDir out;
  const std::string save = out.file("vits.safetensors");
  ASSERT_EQ(dinov3({"infer", "--model", kVits, "--image", test::fixture("images/rocket.jpg"), "--image",
                    test::fixture("images/chelsea.png"), "--image", test::fixture("images/camera.png"), "--save", save,
                    "--output-dir", out.path(), "--runs", "1", "--warmup", "0"}),
            0);
  Result<TensorArchive> got = open_safetensors(save);
  Result<TensorArchive> want = open_safetensors(kVits + "/expected.safetensors");
  ASSERT_TRUE(got.ok() && want.ok());
  for (const char* name : {"features", "pooled"}) {
    const Tensor a = *got->load_f32(name), b = *want->load_f32(name);
    ASSERT_EQ(a.shape, b.shape);
    const size_t per = b.data.size() / 3;
    for (size_t i = 0; i < 3; ++i) {
      const test::Compare c = test::compare(a, b, i * per, per);
      EXPECT_LE(c.rel_l2, 1e-5) << name << " image " << i;
      EXPECT_GE(c.cosine, 0.99999) << name << " image " << i;
    }
  }
}

DINOV3_SUITE_LABELS(Bench, "unit");

TEST(Bench, ReportHoldsEveryField) {
  test::TempDir out;
  ASSERT_EQ(dinov3({"bench", "--model", kTiny, "--iterations", "3", "--warmup", "1", "--batch-sizes", "1,2", "--size",
                    "64", "--threads", "1", "--output-dir", out.path()}),
            0);
  const json j = read_json(out.file("bench.json"));
  for (const char* k : {"count", "mean", "stddev", "min", "max", "p50", "p90", "p99"})
    EXPECT_TRUE(j["latency_ms"].contains(k)) << k;
  EXPECT_EQ(j["latency_ms"]["count"], 3);
  EXPECT_LE(j["latency_ms"]["min"].get<double>(), j["latency_ms"]["p50"].get<double>());
  EXPECT_LE(j["latency_ms"]["p50"].get<double>(), j["latency_ms"]["max"].get<double>());
  ASSERT_EQ(j["throughput"].size(), 2u);
  EXPECT_EQ(j["throughput"][1]["batch"], 2);
  EXPECT_GT(j["throughput"][1]["images_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["context"]["threads"], 1);
  EXPECT_EQ(j["context"]["precision"], "fp32");
  EXPECT_TRUE(j["context"]["build"]["commit"].is_string());
  EXPECT_TRUE(j["context"]["date"].is_string());
  EXPECT_EQ(j["size"], 64);
  EXPECT_EQ(dinov3({"bench", "--model", kTiny, "--size", "60", "--output-dir", out.path()}), 1);
}

// The commit a report names is the one built, not the one cmake was first configured at: the stamp is
// written at every build (cmake/git_commit.cmake). Compared with the source tree's git state when it has one.
TEST(Bench, ReportNamesTheCommitBuilt) {
  // stdout only, as cmake/git_commit.cmake reads it (run_command merges stderr into what it returns)
  auto git = [](const std::string& args) {
    return test::run_command(std::string("(git -C '") + DINOV3_SOURCE_DIR + "' " + args + " 2>/dev/null)");
  };
  const test::CommandResult head = git("rev-parse --short HEAD");
  const test::CommandResult status = git("status --porcelain --untracked-files=no");
  if (head.exit_code != 0 || status.exit_code != 0) GTEST_SKIP() << "the sources are not a git checkout";
  const std::string commit = head.out.substr(0, head.out.find_last_not_of("\r\n") + 1);
  test::TempDir out;
  ASSERT_EQ(dinov3({"bench", "--model", kTiny, "--iterations", "1", "--warmup", "0", "--batch-sizes", "1",
                    "--threads", "1", "--output-dir", out.path()}),
            0);
  const json j = read_json(out.file("bench.json"));
  EXPECT_EQ(j["context"]["build"]["commit"], commit + (status.out.empty() ? "" : "-dirty"))
      << "rebuild after committing: the binary was built from another state of the sources";
}

TEST(Bench, ProfileAccountsForTheForward) {
  test::TempDir out;
  ASSERT_EQ(dinov3({"bench", "--model", kTiny, "--iterations", "4", "--warmup", "1", "--batch-sizes", "1",
                    "--threads", "1", "--profile", "--output-dir", out.path()}),
            0);
  const json j = read_json(out.file("bench.json"));
  ASSERT_TRUE(j.contains("op_profile"));
  const json& p = j["op_profile"];
  EXPECT_EQ(p["runs"], 4);
  double ms = 0, gflop = 0;
  double attention = 0;
  for (const json& op : p["ops"]) {
    ms += op["ms_per_forward"].get<double>();
    gflop += op["gflop_per_forward"].get<double>();
    if (op["op"].get<std::string>().rfind("attention", 0) == 0) attention += op["calls_per_forward"].get<double>();
  }
  EXPECT_NEAR(ms, p["ms_in_ops_per_forward"].get<double>(), 1e-9 * ms);
  // The ops run inside the forwards the latency times.
  EXPECT_LE(ms, j["latency_ms"]["mean"].get<double>());
  EXPECT_GT(ms, 0.0);
  EXPECT_NEAR(gflop, j["gflop_per_image"].get<double>(), 1e-9 * gflop);
  EXPECT_EQ(attention, read_json(kTiny + "/config.json")["model_args"]["depth"].get<double>());
  const std::string log = test::read_file(out.file("bench.log"));
  EXPECT_NE(log.find("ops at batch 1, per forward (mean of 4 runs)"), std::string::npos);
  EXPECT_NE(log.find("all ops"), std::string::npos);
  // Without the flag there is no profile.
  ASSERT_EQ(dinov3({"bench", "--model", kTiny, "--iterations", "1", "--warmup", "0", "--batch-sizes", "1",
                    "--output-dir", out.path()}),
            0);
  EXPECT_FALSE(read_json(out.file("bench.json")).contains("op_profile"));
}

DINOV3_SUITE_LABELS(Accuracy, "unit");

TEST(Accuracy, ReferenceAgainstItselfPasses) {
  test::TempDir out;
  ASSERT_EQ(dinov3({"accuracy", "--model", kTiny, "--backend", "reference", "--output-dir", out.path()}), 0);
  const json j = read_json(out.file("accuracy.json"));
  EXPECT_EQ(j["overall"], "PASS");
  for (const char* output : {"pooled", "features"}) {
    for (const char* metric : {"rel_error", "cosine", "mse", "max_abs_diff"}) {
      EXPECT_EQ(j[output][metric]["verdict"], "PASS") << output << " " << metric;
    }
    EXPECT_EQ(j[output]["rel_error"]["value"].get<double>(), 0.0);
    EXPECT_EQ(j[output]["per_input"].size(), 3u);  // the bundled sample images
    EXPECT_TRUE(j[output]["worst_input"].is_string());
  }
  EXPECT_EQ(j["context"]["precision"], "fp32");
}

TEST(Accuracy, NoisyBackendFails) {
  register_backend("noisy", [](const BackendOptions& o) -> Result<std::unique_ptr<Backend>> {
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Backend> inner, create_reference_backend(o));
    return std::unique_ptr<Backend>(new NoisyBackend(std::move(inner)));
  });
  test::TempDir out;
  EXPECT_EQ(dinov3({"accuracy", "--model", kTiny, "--backend", "noisy", "--image", test::fixture("images/rocket.jpg"),
                    "--output-dir", out.path()}),
            1);
  const json j = read_json(out.file("accuracy.json"));
  EXPECT_EQ(j["overall"], "FAIL");
  EXPECT_EQ(j["features"]["rel_error"]["verdict"], "FAIL");
  EXPECT_GT(j["features"]["rel_error"]["value"].get<double>(), 0.01);
}

DINOV3_SUITE_LABELS(Cli, "unit");

TEST(Cli, ErrorsAndUsage) {
  test::TempDir out;
  EXPECT_EQ(dinov3({"info", "--model", "/no/such/folder"}), 1);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--bogus-flag"}), 2);
  EXPECT_EQ(dinov3({}), 2);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--image", test::fixture("images/bad/truncated.jpg"), "--output-dir",
                    out.path()}),
            1);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--backend", "nope", "--output-dir", out.path()}), 1);
  EXPECT_EQ(dinov3({"infer", "--model", kTiny, "--pool", "max", "--output-dir", out.path()}), 1);
  for (const char* cmd : {"info", "infer", "preprocess", "bench", "accuracy"}) EXPECT_EQ(dinov3({cmd, "--help"}), 0) << cmd;
}

TEST(Cli, BinaryPrintsOneLineErrors) {
  const test::CommandResult r = test::run_command(test::cli_path() + " infer --model /no/such/folder");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find("/no/such/folder"), std::string::npos);
}

DINOV3_SUITE_LABELS(Preprocess, "golden");

TEST(Preprocess, WritesTimmTensor) {
  test::TempDir out;
  const std::string save = out.file("pre.safetensors");
  ASSERT_EQ(dinov3({"preprocess", "--model", kVits, "--image", test::fixture("images/chelsea.png"), "--save", save}), 0);
  const Tensor got = *open_safetensors(save)->load_f32("input");
  const Tensor want = *open_safetensors(test::fixture("preprocess_vits16.safetensors"))->load_f32("chelsea.png");
  ASSERT_EQ(got.shape, (Shape{1, 3, 256, 256}));
  EXPECT_LE(test::compare(got, want).max_abs, 1e-6);
}

}  // namespace
}  // namespace dinov3
