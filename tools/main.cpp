// dinov3: the command-line face of the library. Only this layer prints and chooses exit codes.
#include "cli.h"

int main(int argc, char** argv) { return dinov3::cli::run_cli(std::vector<std::string>(argv, argv + argc)); }
