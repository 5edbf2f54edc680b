// dinov3 pull: a hub repository into the Hugging Face cache, so `--model OWNER/NAME` finds it offline.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "commands.h"
#include "dinov3/hub.h"

namespace dinov3::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct PullArgs {
  PullOptions options;
};

std::string format_bytes(double bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000.0 && u < 4) {
    bytes /= 1000.0;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

// Prints what pull_repo reports: a live progress line on a terminal, one summary line per file always.
class PullPrinter {
 public:
  PullPrinter() : live_(::isatty(::fileno(stdout)) != 0) {}

  void operator()(const PullEvent& e) {
    switch (e.kind) {
      case PullEvent::Kind::kListed:
        std::printf("%d file%s at commit %s\n", e.count, e.count == 1 ? "" : "s", e.message.c_str());
        break;
      case PullEvent::Kind::kStart:
        start_ = last_ = Clock::now();
        start_bytes_ = e.bytes_done;
        if (e.bytes_done > 0) {
          clear_line();
          std::printf("%s %s: resuming at %s\n", counter(e).c_str(), e.file.c_str(), format_bytes(e.bytes_done).c_str());
        }
        break;
      case PullEvent::Kind::kProgress:
        if (live_ && Clock::now() - last_ >= std::chrono::milliseconds(100)) {
          last_ = Clock::now();
          std::printf("\r%s %s  %s / %s  %s/s\033[K", counter(e).c_str(), e.file.c_str(),
                      format_bytes(e.bytes_done).c_str(), format_bytes(e.bytes_total).c_str(),
                      format_bytes(rate(e)).c_str());
          std::fflush(stdout);
        }
        break;
      case PullEvent::Kind::kRetry:
        clear_line();
        std::fprintf(stderr, "dinov3 pull: %s: connection lost at %s (%s); resuming\n", e.file.c_str(),
                     format_bytes(e.bytes_done).c_str(), e.message.c_str());
        break;
      case PullEvent::Kind::kDone:
        clear_line();
        std::printf("%s %s  %s  downloaded (%s/s)%s\n", counter(e).c_str(), e.file.c_str(),
                    format_bytes(e.bytes_total).c_str(), format_bytes(rate(e)).c_str(),
                    e.sha256_checked ? ", sha256 ok" : "");
        break;
      case PullEvent::Kind::kCached:
        std::printf("%s %s  %s  cached\n", counter(e).c_str(), e.file.c_str(), format_bytes(e.bytes_total).c_str());
        break;
    }
  }

 private:
  static std::string counter(const PullEvent& e) {
    return "[" + std::to_string(e.index + 1) + "/" + std::to_string(e.count) + "]";
  }
  double rate(const PullEvent& e) const {
    const double s = std::chrono::duration<double>(Clock::now() - start_).count();
    return s > 0.0 ? static_cast<double>(e.bytes_done - start_bytes_) / s : 0.0;
  }
  void clear_line() const {
    if (live_) std::printf("\r\033[K");
  }

  bool live_;
  Clock::time_point start_{}, last_{};
  int64_t start_bytes_ = 0;
};

Result<int> run_pull(PullArgs& args) {
  PullPrinter printer;
  args.options.on_event = [&printer](const PullEvent& e) { printer(e); };
  DINOV3_ASSIGN_OR_RETURN(const PullResult r, pull_repo(args.options));
  std::printf("%s@%s -> %s\n", r.repo_id.c_str(), r.revision.c_str(), r.snapshot_dir.c_str());
  return 0;
}

}  // namespace

Command add_pull_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "pull", "Download a hub repository into the Hugging Face cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE honoured)");
  auto args = std::make_shared<PullArgs>();
  cmd->add_option("repo_id", args->options.repo_id, "repository id, e.g. " + std::string(kDefaultModelId))->required();
  cmd->add_option("--revision,-r", args->options.revision, "branch, tag or commit")->capture_default_str();
  cmd->add_option("--include", args->options.include,
                  "only files matching this glob (repeatable; default: configs, weights, README.md)");
  cmd->add_option("--endpoint", args->options.endpoint, "hub URL (default $HF_ENDPOINT, else https://huggingface.co)");
  return {cmd, [args]() { return run_pull(*args); }};
}

}  // namespace dinov3::cli
