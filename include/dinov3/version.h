#pragma once

namespace dinov3 {
const char* version_string();  // "0.1.0"
const char* build_commit();    // short git hash the library was built from ("-dirty" with uncommitted changes), or "unknown"
}  // namespace dinov3
