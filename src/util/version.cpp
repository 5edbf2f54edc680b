#include "dinov3/version.h"

#include "dinov3_git_commit.h"  // generated at build time (cmake/git_commit.cmake)

namespace dinov3 {
const char* version_string() { return DINOV3_VERSION; }
const char* build_commit() { return DINOV3_GIT_COMMIT; }
}  // namespace dinov3
