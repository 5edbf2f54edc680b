// dinov3: the command-line face of the library. Only this layer prints and chooses exit codes:
// 0 success, 1 a failed run (one-line error on stderr), 2 a usage error.
#include <cstdio>
#include <vector>
#include <string>

#include "commands.h"

int main(int argc, char** argv) {
  CLI::App app{"dinov3: DINOv3 vision transformer features, as timm computes them"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dinov3 ") + DINOV3_VERSION_STRING);
  const std::vector<dinov3::cli::Command> commands = {
      dinov3::cli::add_info_command(app),
      dinov3::cli::add_infer_command(app),
  };
  try {
    app.parse(argc, argv);
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
    const dinov3::Status st = cmd.run();
    if (!st.ok()) {
      std::fprintf(stderr, "dinov3 %s: error: %s\n", cmd.app->get_name().c_str(), st.message().c_str());
      return 1;
    }
  }
  return 0;
}
