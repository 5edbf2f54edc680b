// A command's report: lines printed to stdout and kept as a text log, plus a JSON document; both are
// written under the output folder as <command>.json and <command>.log for machines to collect.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dinov3/model.h"
#include "dinov3/status.h"

namespace dinov3::cli {

class Report {
 public:
  explicit Report(std::string command) : command_(std::move(command)) {}

  nlohmann::ordered_json& json() { return json_; }
  void line(const std::string& text);  // prints and logs one line
  // One "note:" line per thing the backend says a user should know (Backend::notes).
  void backend_notes(const Backend& backend);
  // Writes <dir>/<command>.json and <dir>/<command>.log (replacing a previous run's report).
  Status write(const std::string& output_dir);
  // The two files write() puts in `output_dir` for `command`.
  static std::vector<std::string> files(const std::string& output_dir, const std::string& command);

 private:
  std::string command_;
  nlohmann::ordered_json json_;
  std::vector<std::string> lines_;
};

struct LoadedModel;

// Where and how a run happened: machine, backend, threads, precision, build, date.
nlohmann::ordered_json run_context(Model& model);
// Which model ran: folder, architecture, and whether its weights are the bundled random ones.
nlohmann::ordered_json model_json(const LoadedModel& loaded);
std::string utc_timestamp();

}  // namespace dinov3::cli
