// The file helpers are public (include/dinov3/files.h); library code includes them by this name too.
#pragma once

#include <cstdint>
#include <string>

#include "dinov3/files.h"

namespace dinov3 {

// A path the operating system can take as given: a NUL byte inside would end its C string early and name
// another file (Python strings may hold one), so it is an error.
Status check_path(const std::string& path);

// Opens `path` for reading when it is a regular file; a directory, FIFO, socket or device (/dev/zero) is an
// error, found without blocking on the open or reading anything. Returns the descriptor (O_CLOEXEC,
// blocking reads), which the caller closes, and the file's size when it was opened.
struct RegularFile {
  int fd = -1;
  uint64_t size = 0;
};
Result<RegularFile> open_regular_file(const std::string& path);

}  // namespace dinov3
