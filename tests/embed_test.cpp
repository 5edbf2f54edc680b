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
#include <sstream>
#include <thread>

#include "cli.h"
#include "cli_common.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "test_labels.h"
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

DINOV3_SUITE_LABELS(Embed, "unit");

// A minute or more under the sanitizers.
DINOV3_TEST_LABELS(Embed, FolderWithBadFilesGivesOneRowPerGoodImage, "unit", "slow");
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

// 44 ViT-S/16 images: minutes under the sanitizers.
DINOV3_TEST_LABELS(Embed, KilledRunResumesToTheSameFile, "unit", "slow");
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

// Undoes escape_line on every line of an index or state file.
std::vector<std::string> unescaped_lines(const std::string& path) {
  std::vector<std::string> out;
  const std::string text = test::read_file(path);
  EXPECT_TRUE(text.empty() || text.back() == '\n') << path;
  size_t begin = 0;
  for (size_t end; (end = text.find('\n', begin)) != std::string::npos; begin = end + 1) {
    std::string line;
    EXPECT_TRUE(unescape_line(text.substr(begin, end - begin), &line)) << text.substr(begin, end - begin);
    out.push_back(line);
  }
  return out;
}

const std::string kTiny = test::fixture("models/tiny");

// Small photos under names holding the bytes a line-based file would trip on.
std::vector<std::string> awkward_inputs(const std::string& dir) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {"plain.jpg", "moon_gray.jpg"},          {"new\nline.png", "green_palette.png"},
      {"tab\there.png", "microaneurysms.png"}, {"back\\slash.jpg", "moon_gray.jpg"},
      {"ctrl\x01.png", "green_palette.png"},   {"caf\xc3\xa9.png", "microaneurysms.png"},
  };
  std::vector<std::string> paths;
  for (const auto& [name, fixture] : files) {
    paths.push_back(dir + "/" + name);
    fs::copy_file(test::fixture("images/" + fixture), paths.back());
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

// The shell spelling of a path: single-quoted, so any byte but NUL survives.
std::string quoted(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `dinov3 embed` run by the shell with file writes limited to `blocks` of 512 bytes (0: no limit), so
// that a write past it fails with EFBIG as on a full disk.
test::CommandResult embed_with_file_limit(const std::string& args, int blocks) {
  const std::string limit = blocks > 0 ? "trap '' XFSZ; ulimit -f " + std::to_string(blocks) + " && " : "";
  return test::run_command(limit + "exec " + test::cli_path() + " embed --model " + kTiny + " " + args);
}

TEST(Embed, PathsWithAnyBytesRoundTripThroughTheIndexAndAResume) {
  test::TempDir tmp;
  fs::create_directories(tmp.file("imgs"));
  const std::vector<std::string> paths = awkward_inputs(tmp.file("imgs"));
  const std::string whole = tmp.file("whole.npy"), cut = tmp.file("cut.npy");
  ASSERT_EQ(dinov3({"embed", "--model", kTiny, tmp.file("imgs"), "-o", whole, "--batch-size", "2", "--quiet"}), 0);
  EXPECT_EQ(unescaped_lines(tmp.file("whole.index.txt")), paths);
  ASSERT_EQ(read_npy(whole).shape, (Shape{6, 64}));

  // A run whose output cannot be written (six 64-float rows are 1536 bytes, the .npy 128 more) fails at
  // the end, says where it kept its rows, and publishes nothing.
  const test::CommandResult failed = embed_with_file_limit(quoted(tmp.file("imgs")) + " -o " + cut + " --batch-size 2 --quiet", 3);
  EXPECT_EQ(failed.exit_code, 1) << failed.out;
  EXPECT_NE(failed.out.find("the inputs handled so far are kept in " + cut + ".partial (--resume continues)"),
            std::string::npos) << failed.out;
  EXPECT_FALSE(fs::exists(cut));
  EXPECT_FALSE(fs::exists(tmp.file("cut.index.txt")));
  // Make the state what a kill after two inputs and part of a third leaves: rows.f32 holds more rows
  // than done.txt names, and done.txt ends mid-line.
  const std::string done = cut + ".partial/done.txt";
  const std::string text = test::read_file(done);
  size_t second = text.find('\n', text.find('\n') + 1);
  ASSERT_NE(second, std::string::npos);
  test::write_file(done, text.substr(0, second + 5));
  ASSERT_EQ(dinov3({"embed", "--model", kTiny, tmp.file("imgs"), "-o", cut, "--batch-size", "2", "--quiet", "--resume"}), 0);
  EXPECT_EQ(test::read_file(cut), test::read_file(whole));
  EXPECT_EQ(test::read_file(tmp.file("cut.index.txt")), test::read_file(tmp.file("whole.index.txt")));

  // A resume over other inputs, or a state naming another input than the one at its position, is refused.
  ASSERT_NE(embed_with_file_limit(quoted(tmp.file("imgs")) + " -o " + cut + " --quiet --overwrite", 3).exit_code, 0);
  std::string state = test::read_file(done);
  state.replace(state.find("plain.jpg"), 9, "other.jpg");
  test::write_file(done, state);
  const test::CommandResult damaged = test::run_command(test::cli_path() + " embed --model " + kTiny + " " +
                                                        quoted(tmp.file("imgs")) + " -o " + cut + " --quiet --resume");
  EXPECT_EQ(damaged.exit_code, 1);
  EXPECT_NE(damaged.out.find("state is damaged: done.txt line "), std::string::npos) << damaged.out;
  EXPECT_NE(damaged.out.find("other.jpg, not the input at that position"), std::string::npos) << damaged.out;
}

TEST(Embed, OutputAndIndexArePublishedTogetherOrNotAtAll) {
  test::TempDir tmp;
  fs::create_directories(tmp.file("imgs"));
  awkward_inputs(tmp.file("imgs"));
  const std::string out = tmp.file("emb.npy"), index = tmp.file("emb.index.txt");
  ASSERT_EQ(dinov3({"embed", "--model", kTiny, tmp.file("imgs") + "/plain.jpg", "-o", out, "--quiet"}), 0);
  const std::string old_out = test::read_file(out), old_index = test::read_file(index);
  const std::string args = quoted(tmp.file("imgs")) + " -o " + out + " --quiet --overwrite";

  // The disk fills while the new .npy is written: the previous pair stays as it was.
  const test::CommandResult full = embed_with_file_limit(args, 3);
  EXPECT_EQ(full.exit_code, 1) << full.out;
  EXPECT_NE(full.out.find("kept in " + out + ".partial"), std::string::npos) << full.out;
  EXPECT_EQ(test::read_file(out), old_out);
  EXPECT_EQ(test::read_file(index), old_index);

  // A folder where the index goes is refused before any work (the undo of a half-done move, which it
  // once exercised here, is tested on write_files_together itself).
  fs::remove(index);
  fs::create_directory(index);
  const test::CommandResult blocked = embed_with_file_limit(args, 0);
  EXPECT_EQ(blocked.exit_code, 1) << blocked.out;
  EXPECT_NE(blocked.out.find("emb.index.txt: exists and is not a regular file (a folder)"), std::string::npos)
      << blocked.out;
  EXPECT_EQ(test::read_file(out), old_out);
  fs::remove(index);
  ASSERT_EQ(embed_with_file_limit(args + " --resume", 0).exit_code, 0);
  EXPECT_EQ(read_npy(out).shape, (Shape{6, 64}));
  EXPECT_EQ(unescaped_lines(index).size(), 6u);
  EXPECT_FALSE(fs::exists(out + ".partial"));
}

TEST(Embed, AFolderAsOutputIsRefusedBeforeAnyWork) {
  test::TempDir tmp;
  fs::create_directories(tmp.file("dest"));
  const std::string image = test::fixture("images/moon_gray.jpg");
  // The model does not even exist: the output is checked first.
  for (const std::string& out : {tmp.file("dest"), tmp.file("dest") + "/", tmp.file("missing") + "/"}) {
    for (const char* overwrite : {"", " --overwrite"}) {
      const test::CommandResult r = test::run_command(test::cli_path() + " embed --model /nonexistent/model " + image +
                                                      " -o " + out + overwrite);
      EXPECT_EQ(r.exit_code, 1) << r.out;
      EXPECT_NE(r.out.find(": is a folder; -o names the output file"), std::string::npos) << r.out;
    }
  }
  EXPECT_TRUE(fs::is_empty(tmp.file("dest")));
  EXPECT_FALSE(fs::exists(tmp.file("dest.partial")));
  EXPECT_FALSE(fs::exists(tmp.file("missing")));
}

TEST(Embed, LinksThatLeadNowhereAreListedAsSkipped) {
  test::TempDir tmp;
  const fs::path imgs = tmp.file("imgs");
  fs::create_directories(imgs);
  fs::copy_file(test::fixture("images/moon_gray.jpg"), imgs / "good.jpg");
  fs::create_symlink("loop.jpg", imgs / "loop.jpg");            // a link to itself
  fs::create_symlink("missing.png", imgs / "dangling.png");     // a link to nothing
  fs::create_symlink("good.jpg", imgs / "alias.jpg");           // a good link is an image like any other
  const test::CommandResult r =
      test::run_command(test::cli_path() + " embed --model " + kTiny + " " + imgs.string() + " -o " + tmp.file("e.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(read_npy(tmp.file("e.npy")).shape, (Shape{2, 64}));
  EXPECT_EQ(unescaped_lines(tmp.file("e.index.txt")),
            (std::vector<std::string>{(imgs / "alias.jpg").string(), (imgs / "good.jpg").string()}));
  EXPECT_NE(r.out.find("skipped: " + (imgs / "loop.jpg").string() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("skipped: " + (imgs / "dangling.png").string() + ": "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("2 skipped in all"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace dinov3
