// Shared helpers for the tests: fixture paths, comparison metrics, temporary folders.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "dinov3/tensor.h"

namespace dinov3::test {

std::string shared_dir();                       // ../shared
std::string fixture(const std::string& rel);    // ../shared/fixtures/<rel>
std::string cli_path();                         // the built dinov3 executable

struct Compare {
  double rel_l2 = 0.0;  // ||a - b|| / ||b||
  double cosine = 0.0;
  double max_abs = 0.0;
};
// Over elements [offset, offset + n) of both tensors (n = all when 0); b is the baseline.
Compare compare(const Tensor& a, const Tensor& b, size_t offset = 0, size_t n = 0);

// Deterministic random data for kernel tests.
std::vector<float> random_normal(size_t n, uint32_t seed, float mean = 0.0f, float stddev = 1.0f);
std::vector<float> random_uniform(size_t n, uint32_t seed, float lo, float hi);
// A RoPE table shaped like the model's ([patches, 2 * head_dim]: sines then cosines) of random angles.
std::vector<float> random_rope_table(int64_t patches, int64_t head_dim, uint32_t seed);
// ||got - want|| / ||want|| in double (the denominator taken as 1 for an all-zero `want`).
double rel_l2(const std::vector<float>& got, const std::vector<float>& want);

// A fresh empty folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes);
std::string read_file(const std::string& path);

// Whether this build runs under AddressSanitizer, which reserves terabytes of address space up front and
// so cannot run under a lowered RLIMIT_AS.
bool built_with_address_sanitizer();

// Runs `body` in a forked child whose address space may grow by at most `headroom` bytes beyond what this
// process maps now, and returns the child's exit code (body's result), or 128 + the signal that killed it.
int run_with_memory_headroom(size_t headroom, const std::function<int()>& body);

// Runs `body` in a forked child, which SIGALRM ends after timeout_s seconds, and returns the child's exit
// code (body's result), or 128 + the signal that ended it (142: it hung). The child leaves with _exit.
int run_in_forked_child(unsigned timeout_s, const std::function<int()>& body);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};
CommandResult run_command(const std::string& command);

}  // namespace dinov3::test
