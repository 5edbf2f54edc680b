#include "cli.h"

#include <cstdio>

#include "commands.h"
#include "dinov3/version.h"

namespace dinov3::cli {

int run_cli(const std::vector<std::string>& args) {
  CLI::App app{"dinov3: DINOv3 vision transformer features, as timm computes them", "dinov3"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dinov3 ") + version_string() + " (" + build_commit() + ")");
  const std::vector<Command> commands = {
      add_info_command(app),  add_infer_command(app),    add_preprocess_command(app),
      add_bench_command(app), add_accuracy_command(app), add_embed_command(app),
      add_pull_command(app),
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
    Result<int> r = cmd.run();
    std::fflush(stdout);
    if (!r.ok()) {
      std::fprintf(stderr, "dinov3 %s: error: %s\n", cmd.app->get_name().c_str(), r.status().message().c_str());
      return 1;
    }
    return *r;
  }
  return 2;
}

}  // namespace dinov3::cli
