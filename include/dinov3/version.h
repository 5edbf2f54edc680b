#pragma once

namespace dinov3 {
const char* version_string();  // "0.1.0"
// Short git hash the library was built from ("-dirty" when tracked files had uncommitted changes), or "unknown".
const char* build_commit();
}  // namespace dinov3
