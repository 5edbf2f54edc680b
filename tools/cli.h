#pragma once

#include <functional>
#include <string>
#include <vector>

#include "dinov3/status.h"

namespace dinov3::cli {
// Runs `dinov3 <args...>` (args[0] is the program name) and returns the process exit code:
// 0 success, 1 a failed run or an accuracy FAIL (one-line error on stderr), 2 a usage error.
int run_cli(const std::vector<std::string>& args);

// Runs `body`, turning any exception it lets out into an error status (out of memory, or an internal
// error naming the exception), so that no command can end in an abort.
Result<int> run_guarded(const std::function<Result<int>()>& body);
}  // namespace dinov3::cli
