#include "report.h"

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "cli_common.h"
#include "dinov3/files.h"
#include "dinov3/int8_plan.h"
#include "dinov3/machine.h"
#include "dinov3/pipeline.h"
#include "dinov3/version.h"

namespace dinov3::cli {

void Report::line(const std::string& text) {
  std::printf("%s\n", text.c_str());
  lines_.push_back(text);
}

void Report::backend_notes(const Backend& backend) {
  for (const std::string& note : backend.notes()) line("note:     " + note);
}

std::vector<std::string> Report::files(const std::string& output_dir, const std::string& command) {
  return {output_dir + "/" + command + ".json", output_dir + "/" + command + ".log"};
}

Status Report::check_replaceable(const std::string& output_dir, const std::string& command) {
  const std::vector<std::string> paths = files(output_dir, command);
  const auto refuse = [&](const std::string& path, const std::string& why) {
    return make_error(ErrorCode::kInvalidArgument, path + " " + why + ", so it is not replaced; move it or choose another --output-dir");
  };
  std::error_code ec;
  bool json_is_report = false;
  if (std::filesystem::symlink_status(paths[0], ec).type() != std::filesystem::file_type::not_found) {
    Result<std::string> text = read_text_file(paths[0]);
    if (!text.ok()) return refuse(paths[0], "exists and cannot be read as a report (" + text.status().message() + ")");
    const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    const auto it = j.is_object() ? j.find("command") : j.end();
    if (it == j.end() || *it != command) return refuse(paths[0], "exists and is not a report of dinov3 " + command);
    json_is_report = true;
  }
  if (std::filesystem::symlink_status(paths[1], ec).type() != std::filesystem::file_type::not_found) {
    if (!json_is_report) return refuse(paths[1], "exists without the " + command + ".json report it belongs to");
    if (!std::filesystem::is_regular_file(std::filesystem::symlink_status(paths[1], ec))) {
      return refuse(paths[1], "exists and is not a regular file");
    }
  }
  return {};
}

Status Report::write(const std::string& output_dir) {
  DINOV3_RETURN_IF_ERROR(check_replaceable(output_dir, command_));
  std::error_code ec;
  std::filesystem::create_directories(output_dir, ec);
  if (ec) return make_error(ErrorCode::kIoError, output_dir + ": cannot create the output folder: " + ec.message());
  // Paths in a report need not be UTF-8 (file names on Linux are bytes): those bytes become U+FFFD here,
  // and the log keeps them as they are.
  const std::string json_text = json_.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
  std::string log;
  for (const auto& l : lines_) log += l + "\n";
  const std::vector<std::string> paths = files(output_dir, command_);
  for (const auto& [path, text] : {std::pair{paths[0], json_text}, std::pair{paths[1], log}}) {
    DINOV3_RETURN_IF_ERROR(write_bytes_atomic(path, /*overwrite=*/true, text));
  }
  std::printf("report:   %s/%s.json, %s.log\n", output_dir.c_str(), command_.c_str(), command_.c_str());
  return {};
}

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

nlohmann::ordered_json run_context(Model& model) {
  Backend& be = model.backend();
  return {
      {"machine", {{"cpu", cpu_brand_string()}, {"cores", cpu_core_count()}}},
      {"backend", be.name()},
      {"device", be.device()},
      {"threads", be.threads()},
      {"precision", precision_name(be.precision())},
      {"notes", be.notes()},
      {"build", {{"version", version_string()}, {"commit", build_commit()}}},
      {"date", utc_timestamp()},
  };
}

nlohmann::ordered_json model_json(const LoadedModel& loaded) {
  const ModelConfig& c = loaded.model->config();
  nlohmann::ordered_json j = {{"dir", loaded.model->directory()},
                              {"layout", layout_name(c.layout)},
                              {"architecture", c.architecture},
                              {"default_pool", pool_mode_name(c.global_pool)},
                              {"random_weights", loaded.random_weights}};
  if (loaded.int8_plan) {
    j["int8_plan"] = {{"file", loaded.int8_plan_file},
                      {"int8_layers", loaded.int8_plan->int8_layers()},
                      {"linear_layers", loaded.int8_plan->layers.size()},
                      {"rounding", loaded.int8_plan->rounding},
                      {"weights_file", loaded.int8_plan->weights_file}};
  }
  Result<PreprocessConfig> pc = preprocess_config_for(c);
  if (pc.ok()) {
    j["default_preprocess"] = preprocess_json(*pc);
    j["default_preprocess"]["source"] = c.data.source;
  }
  return j;
}

}  // namespace dinov3::cli
