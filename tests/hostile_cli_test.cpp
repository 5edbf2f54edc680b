// The dinov3 command on hostile files and when memory runs out: one line on stderr and exit code 1,
// never an abort. Each reproducer is built here; the binary runs in a child process.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;

const std::string kTiny = test::fixture("models/tiny");
const std::string kVits = test::fixture("models/vits16");

// Exit code 1 and exactly one line, which carries `fragment`.
void expect_one_line_error(const test::CommandResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find(fragment), std::string::npos) << r.out;
}

DINOV3_SUITE_LABELS(HostileCli, "hostile");

TEST(HostileCli, WrappingTensorSizeIsAnErrorNotAnAbort) {
  // 96 bytes whose element count times dtype size wraps 64 bits to the 0 bytes its offsets give: it used
  // to pass the header check, then std::length_error aborted `infer --input-tensor`.
  test::TempDir tmp;
  std::string header = R"({"input":{"dtype":"F64","shape":[2147483648,2147483648],"data_offsets":[0,0]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  test::write_file(tmp.file("x.safetensors"), bytes + header);
  expect_one_line_error(test::run_command(test::cli_path() + " infer --model " + kTiny + " --input-tensor " +
                                          tmp.file("x.safetensors") + " --output-dir " + tmp.file("out")),
                        "dinov3 infer: error: " + tmp.file("x.safetensors") + ": tensor 'input' has a shape whose size overflows");
}

TEST(HostileCli, HugeConfigInputSizeIsAnErrorNotAnAbort) {
  // input_size [3, 65536, 65536] made `infer` allocate a 51 GB batch and abort on bad_alloc.
  test::TempDir tmp;
  fs::copy_file(kTiny + "/model.safetensors", tmp.file("model.safetensors"));
  std::string config = test::read_file(kTiny + "/config.json");
  const size_t at = config.find("256,\n      256");
  ASSERT_NE(at, std::string::npos);
  config.replace(at, 14, "65536,\n      65536");
  test::write_file(tmp.file("config.json"), config);
  expect_one_line_error(test::run_command(test::cli_path() + " infer --model " + tmp.path() + " --image " +
                                          test::fixture("images/rocket.jpg") + " --output-dir " + tmp.file("out")),
                        "is more than 178956970 pixels");
}

TEST(HostileCli, LoadingUnder64MiBIsAnOutOfMemoryError) {
  if (test::built_with_address_sanitizer()) {
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space at start, so no build with it can run "
                    "under a 64 MiB RLIMIT_AS";
  }
  // vits16's weights (86 MB) cannot even be mapped in 64 MiB of address space.
  const test::CommandResult r =
      test::run_command("ulimit -v 65536 && exec " + test::cli_path() + " info --model " + kVits);
  expect_one_line_error(r, "dinov3 info: error: ");
  EXPECT_NE(r.out.find("memory"), std::string::npos) << r.out;
}

TEST(HostileCli, EveryMemoryLimitGivesAResultOrAnError) {
  if (test::built_with_address_sanitizer()) {
    GTEST_SKIP() << "AddressSanitizer reserves terabytes of address space at start, so no build with it can run "
                    "under a lowered RLIMIT_AS";
  }
  // Wherever the allocation that fails falls (mapping the file, packing a weight, planning activations,
  // decoding and preprocessing the image, the outputs), the result is the output or one line and exit
  // code 1. The smallest limit that passes is found by bisection; the 16 limits a MiB apart just below it
  // fail at the last allocations of a run.
  test::TempDir tmp;
  const auto run = [&](int mib) {
    return test::run_command("ulimit -v " + std::to_string(mib * 1024) + " && exec " + test::cli_path() +
                             " infer --threads 1 --model " + kVits + " --image " + test::fixture("images/rocket.jpg") +
                             " --output-dir " + tmp.file("out"));
  };
  const auto expect_result_or_one_line = [](const test::CommandResult& r) {
    if (r.exit_code == 0) {
      EXPECT_NE(r.out.find("pooled[0][:5]"), std::string::npos) << r.out;
      return true;
    }
    EXPECT_EQ(r.exit_code, 1) << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
    EXPECT_TRUE(r.out.find("memory") != std::string::npos || r.out.find("cannot allocate") != std::string::npos)
        << r.out;
    return false;
  };
  int fails = 64, passes = 2048;
  ASSERT_FALSE(expect_result_or_one_line(run(fails)));
  ASSERT_TRUE(expect_result_or_one_line(run(passes)));
  while (passes - fails > 1) {
    const int mid = (fails + passes) / 2;
    SCOPED_TRACE(std::to_string(mid) + " MiB");
    (expect_result_or_one_line(run(mid)) ? passes : fails) = mid;
  }
  for (int mib = passes - 16; mib < passes; ++mib) {
    SCOPED_TRACE(std::to_string(mib) + " MiB");
    expect_result_or_one_line(run(mib));
  }
}

TEST(HostileCli, WrongSettingsAreOneErrorBeforeAnyImage) {
  // Each of these once ran: --crop-pct 0 was taken as "not given", and the others failed every image,
  // which embed lists as skipped, writing an empty output with exit code 0; --layers 99 failed only after
  // the output was started.
  test::TempDir tmp;
  const std::string embed = test::cli_path() + " embed --model " + kTiny + " " + test::fixture("images/chelsea.png") +
                            " --quiet --output " + tmp.file("z.npy");
  for (const auto& [flags, fragment] : std::vector<std::pair<std::string, std::string>>{
           {"--crop-pct 0", "--crop-pct must be in (0, 10]"},
           {"--crop-pct 1e-30", "preprocess: crop_pct 1e-30 resizes to more than 178956970 pixels"},
           {"--std 1e-45,1,1", "normalize: channel 0 has mean 0.485 and std 1.4013e-45; the normalised values overflow"},
           {"--layers 99", "intermediate block 99 is out of range for 2 blocks"},
       }) {
    expect_one_line_error(test::run_command(embed + " " + flags), "dinov3 embed: error: " + fragment);
    EXPECT_TRUE(fs::is_empty(tmp.path())) << flags;  // no output, no partial state
  }
  for (const std::string value : {"0", "-5"}) {
    const test::CommandResult r = test::run_command(embed + " --max-pixels " + value);
    EXPECT_EQ(r.exit_code, 2) << r.out;  // a command-line error
    EXPECT_NE(r.out.find("--max-pixels: Value " + value + " not in range 1 to"), std::string::npos) << r.out;
    EXPECT_TRUE(fs::is_empty(tmp.path()));
  }
}

TEST(HostileCli, InputsReportsAndForeignFoldersAreNeverWrittenOver) {
  test::TempDir tmp;
  const std::string cli = test::cli_path();
  fs::copy_file(test::fixture("images/chelsea.png"), tmp.file("cat.png"));
  const std::string cat = tmp.file("cat.png"), kept = test::read_file(cat);
  // calibrate: a plan named as its own report was replaced by the report, silently.
  expect_one_line_error(test::run_command(cli + " calibrate --model " + kTiny + " -i " + cat +
                                          " --rounding nearest --plan " + tmp.file("rep/calibrate.json") +
                                          " --output-dir " + tmp.file("rep")),
                        tmp.file("rep/calibrate.json") + " is this command's report; it is never written over");
  EXPECT_FALSE(fs::exists(tmp.file("rep/calibrate.json")));
  // A plan path that is a folder failed only after calibrating ("cannot move into place").
  fs::create_directories(tmp.file("plan_dir"));
  expect_one_line_error(test::run_command(cli + " calibrate --model " + kTiny + " -i " + cat +
                                          " --rounding nearest --overwrite --plan " + tmp.file("plan_dir") +
                                          " --output-dir " + tmp.file("rep")),
                        tmp.file("plan_dir") + ": exists and is not a regular file (a folder)");
  // infer --save / preprocess --save onto an input image or the model's weights, even with --overwrite.
  expect_one_line_error(test::run_command(cli + " infer --model " + kTiny + " -i " + cat + " --save " + cat +
                                          " --overwrite --output-dir " + tmp.file("out")),
                        cat + " is an input; it is never written over");
  expect_one_line_error(test::run_command(cli + " preprocess --model " + kTiny + " -i " + cat + " --save " + kTiny +
                                          "/model.safetensors --overwrite"),
                        "model.safetensors is an input; it is never written over");
  // embed -o onto an input image.
  expect_one_line_error(test::run_command(cli + " embed --model " + kTiny + " " + cat + " -q --overwrite -o " + cat),
                        cat + " is an input; it is never written over");
  EXPECT_EQ(test::read_file(cat), kept);
  // embed --overwrite deleted any folder called OUT.partial, whatever it held.
  fs::create_directories(tmp.file("e.npy.partial/sub"));
  test::write_file(tmp.file("e.npy.partial/important.txt"), "precious");
  expect_one_line_error(test::run_command(cli + " embed --model " + kTiny + " " + cat + " -q --overwrite -o " +
                                          tmp.file("e.npy")),
                        "which is not an interrupted run's state: the folder is left as it is");
  EXPECT_EQ(test::read_file(tmp.file("e.npy.partial/important.txt")), "precious");
}

TEST(HostileCli, AReportReplacesOnlyItsOwnCommandsPreviousReport) {
  // infer, bench, accuracy and calibrate replaced whatever <command>.json / .log the output folder held.
  test::TempDir tmp;
  const std::string cli = test::cli_path();
  const std::string infer = cli + " infer --model " + kTiny + " --output-dir " + tmp.path();
  test::write_file(tmp.file("infer.json"), "{\"command\": \"bench\"}\n");
  test::write_file(tmp.file("infer.log"), "my notes\n");
  expect_one_line_error(test::run_command(infer), tmp.file("infer.json") + " exists and is not a report of dinov3 infer");
  test::write_file(tmp.file("infer.json"), "not json");
  expect_one_line_error(test::run_command(infer), tmp.file("infer.json") + " exists and is not a report of dinov3 infer");
  fs::remove(tmp.file("infer.json"));
  expect_one_line_error(test::run_command(infer),
                        tmp.file("infer.log") + " exists without the infer.json report it belongs to");
  EXPECT_EQ(test::read_file(tmp.file("infer.log")), "my notes\n");
  // Refused before any work: no model is loaded, so nothing is printed before the error.
  test::write_file(tmp.file("bench.json"), "[1, 2]");
  expect_one_line_error(test::run_command(cli + " bench -n 1 --model " + kTiny + " --output-dir " + tmp.path()),
                        tmp.file("bench.json") + " exists and is not a report of dinov3 bench");
  EXPECT_EQ(test::read_file(tmp.file("bench.json")), "[1, 2]");
  // The command's own previous report is replaced, run after run.
  fs::remove(tmp.file("infer.log"));
  for (int run = 0; run < 2; ++run) {
    const test::CommandResult r = test::run_command(infer + " --runs 1");
    ASSERT_EQ(r.exit_code, 0) << r.out;
    EXPECT_EQ(nlohmann::json::parse(test::read_file(tmp.file("infer.json")))["command"], "infer");
  }
  // Timing flags are bounded (warm-up plus runs once overflowed int).
  const test::CommandResult many = test::run_command(infer + " --warmup 2147483647 --runs 1");
  EXPECT_EQ(many.exit_code, 2) << many.out;
  EXPECT_NE(many.out.find("--warmup: Value 2147483647 not in range 0 to 1000000"), std::string::npos) << many.out;
}

TEST(HostileCli, FileNamesThatAreNotUtf8StillGiveAReport) {
  // infer on "caf\xe9.png" did all the work, then failed with an internal error from the JSON writer.
  test::TempDir tmp;
  const std::string image = tmp.file("caf\xe9.png");
  fs::copy_file(test::fixture("images/chelsea.png"), image);
  const test::CommandResult r = test::run_command(test::cli_path() + " infer --model " + kTiny + " -i '" + image +
                                                  "' --runs 1 --output-dir " + tmp.file("out"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  const nlohmann::json report = nlohmann::json::parse(test::read_file(tmp.file("out/infer.json")));
  EXPECT_EQ(report["input"]["sources"][0], tmp.file("caf\xef\xbf\xbd.png"));  // U+FFFD in the JSON
  EXPECT_NE(test::read_file(tmp.file("out/infer.log")).find(image), std::string::npos);  // the log keeps the bytes
}

TEST(HostileCli, AnOutputEndingInASlashIsAFolder) {
  // pca with one image and -o newdir/ computed everything, then failed with "already exists".
  test::TempDir tmp;
  const std::string cli = test::cli_path(), cat = test::fixture("images/chelsea.png");
  const test::CommandResult pca = test::run_command(cli + " pca --model " + kTiny + " " + cat + " -o " + tmp.file("p") + "/");
  ASSERT_EQ(pca.exit_code, 0) << pca.out;
  EXPECT_TRUE(fs::is_regular_file(tmp.file("p/chelsea.pca.png"))) << pca.out;
  const test::CommandResult sim = test::run_command(cli + " similarity --model " + kTiny + " " + cat +
                                                    " --point 200,150 -o " + tmp.file("s") + "/");
  ASSERT_EQ(sim.exit_code, 0) << sim.out;
  EXPECT_TRUE(fs::is_regular_file(tmp.file("s/chelsea.similarity.png"))) << sim.out;
}

TEST(HostileCli, FifosAndDevicesWhereStateOrListsAreReadNeverHang) {
  test::TempDir tmp;
  const std::string cli = test::cli_path();
  const std::string cat = test::fixture("images/chelsea.png");
  // A resume whose state file is a FIFO blocked; one that is /dev/zero read until memory ran out.
  fs::create_directories(tmp.file("r.npy.partial"));
  for (const char* f : {"shape.txt", "done.txt", "rows.f32"}) test::write_file(tmp.file(std::string("r.npy.partial/") + f), "");
  ASSERT_EQ(::mkfifo(tmp.file("r.npy.partial/inputs.txt").c_str(), 0600), 0);
  expect_one_line_error(test::run_command(cli + " embed --model " + kTiny + " " + cat + " -q --resume -o " +
                                          tmp.file("r.npy")),
                        "inputs.txt, which is not an interrupted run's state");
  // A hub cache whose ref is a FIFO blocked `info` and `pull`.
  fs::create_directories(tmp.file("hub/models--own--name/refs"));
  ASSERT_EQ(::mkfifo(tmp.file("hub/models--own--name/refs/main").c_str(), 0600), 0);
  const test::CommandResult hub = test::run_command("HF_HUB_CACHE=" + tmp.file("hub") + " HF_HUB_OFFLINE=1 " + cli +
                                                    " info --model own/name");
  EXPECT_EQ(hub.exit_code, 1) << hub.out;
  // An @list that is /dev/zero read gigabytes into one line.
  expect_one_line_error(test::run_command(cli + " embed --model " + kTiny + " @/dev/zero -q -o " + tmp.file("z.npy")),
                        "/dev/zero: line 1 is longer than 65536 bytes: not a list of paths");
  // bench --size took a negative size as "the model's".
  const test::CommandResult bench = test::run_command(cli + " bench --model " + kTiny + " --size -32");
  EXPECT_EQ(bench.exit_code, 2) << bench.out;
}

TEST(HostileCli, ExceptionsBecomeOneLineErrors) {
  // Whatever a command lets escape ends as a status, not in std::terminate.
  Result<int> r = cli::run_guarded([]() -> Result<int> { throw std::length_error("vector::_M_default_append"); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInternal);
  EXPECT_EQ(r.status().message(), "internal error (vector::_M_default_append); please report it");
  r = cli::run_guarded([]() -> Result<int> { throw std::bad_alloc(); });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kOutOfMemory);
  r = cli::run_guarded([]() -> Result<int> { throw 42; });
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInternal);
  r = cli::run_guarded([]() -> Result<int> { return 3; });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 3);
}

}  // namespace
}  // namespace dinov3
