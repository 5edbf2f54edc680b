#include "cli.h"

#include <cstdio>
#include <exception>
#include <functional>
#include <new>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/version.h"

namespace dinov3::cli {

namespace {

int run_cli_unguarded(const std::vector<std::string>& args) {
  CLI::App app{"dinov3: DINOv3 vision transformer features, as timm computes them", "dinov3"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dinov3 ") + version_string() + " (" + build_commit() + ")");
  const std::vector<Command> commands = {
      add_info_command(app),  add_infer_command(app),    add_preprocess_command(app),
      add_bench_command(app), add_accuracy_command(app), add_embed_command(app),
      add_pull_command(app),  add_calibrate_command(app),
      add_pca_command(app),   add_similarity_command(app),
  };
  std::vector<std::string> reversed(args.rbegin(), args.rend() - (args.empty() ? 0 : 1));
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "dinov3: error: %s (see --help)\n", e.what());
    return 2;
  }
  for (const auto& cmd : commands) {
    if (!cmd.app->parsed()) continue;
    const std::string name = "dinov3 " + cmd.app->get_name();
    Result<int> r = run_guarded(cmd.run);
    std::fflush(stdout);
    if (!r.ok()) {
      std::fprintf(stderr, "%s: error: %s\n", name.c_str(), escape_line(r.status().message()).c_str());
      return 1;
    }
    return *r;
  }
  return 2;
}

}  // namespace

// The library reports failures as statuses; an exception reaching here is a bug or memory running out
// somewhere the library does not guard. Either way the user gets one line and exit code 1, never an abort.
Result<int> run_guarded(const std::function<Result<int>()>& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::kOutOfMemory, "out of memory");
  } catch (const std::exception& e) {
    return make_error(ErrorCode::kInternal, std::string("internal error (") + e.what() + "); please report it");
  } catch (...) {
    return make_error(ErrorCode::kInternal, "internal error (an unknown exception); please report it");
  }
}

int run_cli(const std::vector<std::string>& args) {
  Result<int> r = run_guarded([&]() -> Result<int> { return run_cli_unguarded(args); });
  if (r.ok()) return *r;
  std::fprintf(stderr, "dinov3: error: %s\n", escape_line(r.status().message()).c_str());
  return 1;
}

}  // namespace dinov3::cli
