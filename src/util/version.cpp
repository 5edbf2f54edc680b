#include "dinov3/version.h"

namespace dinov3 {
const char* version_string() { return DINOV3_VERSION; }
const char* build_commit() { return DINOV3_GIT_COMMIT; }
}  // namespace dinov3
