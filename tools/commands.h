// Each dinov3 command registers itself on the app and returns the function that runs it.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "dinov3/status.h"

namespace dinov3::cli {

struct Command {
  CLI::App* app;
  std::function<Status()> run;
};

Command add_info_command(CLI::App& app);
Command add_infer_command(CLI::App& app);

}  // namespace dinov3::cli
