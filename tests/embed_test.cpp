// dinov3 embed end to end: rows equal the model's pooled output per image, bad files are skipped and
// listed, the .npy is valid, and a run killed mid-way then resumed gives the same file as one that was not.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "cli.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "test_util.h"

namespace dinov3 {
namespace {

namespace fs = std::filesystem;
const std::string kVits = test::fixture("models/vits16");

int dinov3(std::vector<std::string> args) {
  args.insert(args.begin(), "dinov3");
  return cli::run_cli(args);
}

// A small .npy reader: checks the format and returns the shape and data.
struct Npy {
  Shape shape;
  std::vector<float> data;
};
Npy read_npy(const std::string& path) {
  const std::string bytes = test::read_file(path);
  EXPECT_GE(bytes.size(), 10u);
  EXPECT_EQ(bytes.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(bytes[6], 1);
  const size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<uint8_t>(bytes[9]) << 8);
  EXPECT_EQ((10 + header_len) % 64, 0u) << "data should start 64-byte aligned";
  const std::string header = bytes.substr(10, header_len);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_NE(header.find("'descr': '<f4'"), std::string::npos) << header;
  EXPECT_NE(header.find("'fortran_order': False"), std::string::npos) << header;
  std::smatch m;
  const std::regex shape_re("'shape': \\(([0-9, ]*)\\)");
  Npy npy;
  if (!std::regex_search(header, m, shape_re)) {
    ADD_FAILURE() << "no shape in " << header;
    return npy;
  }
  std::stringstream dims(m[1].str());
  for (std::string d; std::getline(dims, d, ',');)
    if (d.find_first_not_of(' ') != std::string::npos) npy.shape.push_back(std::stoll(d));
  const size_t n = static_cast<size_t>(shape_numel(npy.shape));
  EXPECT_EQ(bytes.size(), 10 + header_len + n * 4);
  npy.data.resize(n);
  std::memcpy(npy.data.data(), bytes.data() + 10 + header_len, std::min(n * 4, bytes.size() - 10 - header_len));
  return npy;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(Embed, FolderWithBadFilesGivesOneRowPerGoodImage) {
  test::TempDir tmp;
  const fs::path imgs = fs::path(tmp.path()) / "imgs";
  fs::create_directories(imgs / "nested");
  std::vector<std::string> good;
  for (const auto& e : fs::directory_iterator(test::fixture("images"))) {
    if (!e.is_regular_file()) continue;
    fs::copy_file(e.path(), imgs / "nested" / e.path().filename());
    good.push_back((imgs / "nested" / e.path().filename()).string());
  }
  for (const auto& e : fs::directory_iterator(test::fixture("images/bad"))) fs::copy_file(e.path(), imgs / e.path().filename());
  std::sort(good.begin(), good.end());
  const std::string out = tmp.file("emb.npy");
  ASSERT_EQ(dinov3({"embed", "--model", kVits, imgs.string(), "-o", out, "--batch-size", "4", "--quiet"}), 0);

  const Npy npy = read_npy(out);
  ASSERT_EQ(npy.shape, (Shape{static_cast<int64_t>(good.size()), 384}));
  EXPECT_EQ(read_lines(tmp.file("emb.index.txt")), good);
  EXPECT_FALSE(fs::exists(out + ".partial"));

  // Each row is the model's pooled output for that image alone.
  Result<std::unique_ptr<Model>> model = Model::load(kVits);
  ASSERT_TRUE(model.ok());
  const PreprocessConfig pc = *preprocess_config_for((*model)->config());
  for (size_t i = 0; i < good.size(); ++i) {
    Result<Tensor> x = load_image_batch({good[i]}, pc);
    ASSERT_TRUE(x.ok()) << good[i];
    Result<ForwardOutput> y = (*model)->forward(*x);
    ASSERT_TRUE(y.ok());
    Tensor row({384}, std::vector<float>(npy.data.begin() + static_cast<long>(i * 384), npy.data.begin() + static_cast<long>((i + 1) * 384)));
    const test::Compare c = test::compare(row, y->pooled);
    EXPECT_LE(c.rel_l2, 1e-6) << good[i];
  }

  // The output is kept unless --overwrite.
  const std::string before = test::read_file(out);
  EXPECT_EQ(dinov3({"embed", "--model", kVits, good[0], "-o", out, "--quiet"}), 1);
  EXPECT_EQ(test::read_file(out), before);
  ASSERT_EQ(dinov3({"embed", "--model", kVits, good[0], "-o", out, "--quiet", "--overwrite", "--normalize"}), 0);
  const Npy one = read_npy(out);
  ASSERT_EQ(one.shape, (Shape{1, 384}));
  double norm = 0;
  for (float v : one.data) norm += static_cast<double>(v) * v;
  EXPECT_NEAR(norm, 1.0, 1e-5);
}

TEST(Embed, KilledRunResumesToTheSameFile) {
  test::TempDir tmp;
  // 44 inputs: the good photos four times over, so a run lasts long enough to be killed mid-way.
  std::string list;
  for (int rep = 0; rep < 4; ++rep)
    for (const auto& e : fs::directory_iterator(test::fixture("images")))
      if (e.is_regular_file()) list += e.path().string() + "\n";
  test::write_file(tmp.file("list.txt"), list);
  const std::string args = " --model " + kVits + " @" + tmp.file("list.txt") + " --batch-size 2 --quiet --threads 1";

  const std::string whole = tmp.file("whole.npy");
  ASSERT_EQ(test::run_command(test::cli_path() + " embed" + args + " -o " + whole).exit_code, 0);

  const std::string cut = tmp.file("cut.npy");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = test::cli_path() + " embed" + args + " -o " + cut + " >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Kill it once a few batches are on disk.
  const std::string done = cut + ".partial/done.txt";
  for (int i = 0; i < 2000 && read_lines(done).size() < 6; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run finished before it could be killed";
  EXPECT_FALSE(fs::exists(cut));
  const size_t finished = read_lines(done).size();
  EXPECT_GT(finished, 0u);
  EXPECT_LT(finished, 44u);

  // Without --resume the interrupted state is not silently thrown away.
  EXPECT_EQ(test::run_command(test::cli_path() + " embed" + args + " -o " + cut).exit_code, 1);
  ASSERT_EQ(test::run_command(test::cli_path() + " embed" + args + " -o " + cut + " --resume").exit_code, 0);
  EXPECT_EQ(test::read_file(cut), test::read_file(whole));
  EXPECT_EQ(test::read_file(tmp.file("cut.index.txt")), test::read_file(tmp.file("whole.index.txt")));
  EXPECT_EQ(read_npy(cut).shape, (Shape{44, 384}));
}

}  // namespace
}  // namespace dinov3
