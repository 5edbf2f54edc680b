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
  // The JSON starts with {"command": <command>}, which is how a later run knows the report as its own.
  explicit Report(std::string command) : command_(std::move(command)) { json_["command"] = command_; }

  nlohmann::ordered_json& json() { return json_; }
  void line(const std::string& text);  // prints and logs one line
  // One "note:" line per thing the backend says a user should know (Backend::notes).
  void backend_notes(const Backend& backend);
  // Writes <dir>/<command>.json and <dir>/<command>.log, replacing only a previous report (check_replaceable).
  Status write(const std::string& output_dir);
  // An error unless each of the two report files in `output_dir` is absent or a previous run's report of
  // `command`: the .json a JSON object whose "command" is `command`, the .log beside such a .json. A user's
  // own file of that name is never replaced. Commands call it before any work, and write() again.
  static Status check_replaceable(const std::string& output_dir, const std::string& command);
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
