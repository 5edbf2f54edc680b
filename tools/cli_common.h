// Pieces every dinov3 command shares: model and backend options, tensor inputs, outputs.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "dinov3/model.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"

namespace dinov3::cli {

struct ModelOptions {
  std::string model;                          // folder or hub id
  std::string backend = default_backend_name();
  int threads = 0;
  std::string precision = "fp32";
};

void add_model_options(CLI::App& cmd, ModelOptions* opts, bool with_backend = true);
Result<std::unique_ptr<Model>> load_model(const ModelOptions& opts);

// "FILE.safetensors[:NAME]", NAME defaulting to "input".
Result<Tensor> load_input_tensor(const std::string& spec);

Result<PoolMode> parse_pool(const std::string& name);

// Writes the lines of a command's result to stdout (the CLI is the only place that prints).
void print_line(const std::string& line);
std::string format_values(const float* v, size_t n);

}  // namespace dinov3::cli
