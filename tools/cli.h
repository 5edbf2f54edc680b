#pragma once

#include <string>
#include <vector>

namespace dinov3::cli {
// Runs `dinov3 <args...>` (args[0] is the program name) and returns the process exit code:
// 0 success, 1 a failed run or an accuracy FAIL (one-line error on stderr), 2 a usage error.
int run_cli(const std::vector<std::string>& args);
}  // namespace dinov3::cli
