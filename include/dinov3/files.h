// Writing files so that a reader never sees half of one, and nothing a user has is replaced unasked.
#pragma once

#include <cstddef>
#include <functional>
#include <string>

#include "dinov3/status.h"

namespace dinov3 {

using WriteFn = std::function<Status(const void* data, size_t size)>;

// Writes through `produce` into a temporary file beside `path`, flushes it to disk, then renames it over
// `path`. With overwrite == false an existing `path` is an error and is left untouched.
Status write_file_atomic(const std::string& path, bool overwrite, const std::function<Status(const WriteFn&)>& produce);

bool file_exists(const std::string& path);

// A small text file (a config, an index) read whole; larger than `limit` bytes is an error.
Result<std::string> read_text_file(const std::string& path, size_t limit = 16u << 20);

}  // namespace dinov3
