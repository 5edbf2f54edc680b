// Each dinov3 command registers itself on the app and returns the function that runs it. A command's
// Result is its exit code (accuracy exits 1 on FAIL); an error Status becomes a one-line message.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

#include "dinov3/status.h"

namespace dinov3::cli {

struct Command {
  CLI::App* app;
  std::function<Result<int>()> run;
};

Command add_info_command(CLI::App& app);
Command add_infer_command(CLI::App& app);
Command add_preprocess_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_accuracy_command(CLI::App& app);
Command add_embed_command(CLI::App& app);
Command add_pull_command(CLI::App& app);
Command add_calibrate_command(CLI::App& app);
Command add_pca_command(CLI::App& app);
Command add_similarity_command(CLI::App& app);

}  // namespace dinov3::cli
