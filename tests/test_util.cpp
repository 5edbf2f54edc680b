#include "test_util.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "dinov3/metrics.h"

namespace dinov3::test {

std::string shared_dir() { return DINOV3_SHARED_DIR; }
std::string fixture(const std::string& rel) { return shared_dir() + "/fixtures/" + rel; }
std::string cli_path() { return DINOV3_CLI_PATH; }

Compare compare(const Tensor& a, const Tensor& b, size_t offset, size_t n) {
  if (n == 0) n = b.data.size() - offset;
  if (a.data.size() < offset + n || b.data.size() < offset + n) throw std::runtime_error("compare: range out of bounds");
  const Agreement g = compare_outputs(a.ptr() + offset, b.ptr() + offset, n);
  return {g.rel_error, g.cosine, g.max_abs_diff};
}

std::vector<float> random_normal(size_t n, uint32_t seed, float mean, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(mean, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_uniform(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

std::vector<float> random_rope_table(int64_t patches, int64_t head_dim, uint32_t seed) {
  const auto angles = random_uniform(static_cast<size_t>(patches * head_dim), seed, -20.0f, 20.0f);
  std::vector<float> t(static_cast<size_t>(patches * 2 * head_dim));
  for (int64_t p = 0; p < patches; ++p) {
    for (int64_t d = 0; d < head_dim; ++d) {
      const float a = angles[static_cast<size_t>(p * head_dim + d)];
      t[static_cast<size_t>(p * 2 * head_dim + d)] = std::sin(a);
      t[static_cast<size_t>(p * 2 * head_dim + head_dim + d)] = std::cos(a);
    }
  }
  return t;
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    num += d * d;
    den += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(num / (den > 0.0 ? den : 1.0));
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "dinov3_test_XXXXXX").string();
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = buf.data();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool built_with_address_sanitizer() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

namespace {

// Forks; the child runs `child` and _exits with its result (no atexit work, no destructors of statics);
// returns that code, or 128 + the signal that ended the child.
int fork_and_wait(const std::function<int()>& child) {
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) ::_exit(child());
  int status_code = 0;
  ::waitpid(pid, &status_code, 0);
  return WIFEXITED(status_code) ? WEXITSTATUS(status_code) : 128 + WTERMSIG(status_code);
}

}  // namespace

int run_with_memory_headroom(size_t headroom, const std::function<int()>& body) {
  // VmSize is the address space mapped now, the quantity RLIMIT_AS bounds.
  std::ifstream status("/proc/self/status");
  size_t mapped_kib = 0;
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmSize:", 0) == 0) mapped_kib = std::stoull(line.substr(7));
  if (mapped_kib == 0) throw std::runtime_error("cannot read VmSize from /proc/self/status");
  return fork_and_wait([&] {
    const rlimit limit{mapped_kib * 1024 + headroom, mapped_kib * 1024 + headroom};
    if (::setrlimit(RLIMIT_AS, &limit) != 0) return 125;
    return body();
  });
}

int run_in_forked_child(unsigned timeout_s, const std::function<int()>& body) {
  return fork_and_wait([&] {
    ::alarm(timeout_s);  // a hang ends the child with SIGALRM (128 + 14)
    return body();
  });
}

CommandResult run_command(const std::string& command) {
  CommandResult r;
  const std::string full = command + " 2>&1";
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) r.out.append(buf.data(), n);
  const int status = ::pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

}  // namespace dinov3::test
