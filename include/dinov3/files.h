// Writing files so that a reader never sees half of one, and nothing a user has is replaced unasked.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

using WriteFn = std::function<Status(const void* data, size_t size)>;
// Writes a whole file's contents through the WriteFn it is given.
using ProduceFn = std::function<Status(const WriteFn&)>;

// Writes through `produce` into a temporary file beside `path`, flushes it to disk, then renames it over
// `path`. With overwrite == false an existing `path` is an error and is left untouched.
Status write_file_atomic(const std::string& path, bool overwrite, const std::function<Status(const WriteFn&)>& produce);
// write_file_atomic of bytes already in memory.
Status write_bytes_atomic(const std::string& path, bool overwrite, std::string_view bytes);

// Files that belong together (an output and its index). Each is written through its producer into a
// temporary file beside it and flushed; then all are moved into place, or none are: a failure while
// writing (a full disk) leaves every destination as it was, and one while moving puts back the files
// already moved. (A crash between two moves can still leave the first one done.) With overwrite == false
// an existing destination is an error and nothing is written. With overwrite == true only a regular file
// (or a link to one) is replaced: a folder, FIFO, device or socket at a destination is an error.
struct FileToWrite {
  std::string path;
  std::function<Status(const WriteFn&)> produce;
};
Status write_files_together(const std::vector<FileToWrite>& files, bool overwrite);

bool file_exists(const std::string& path);

// An error unless `path` may be written as an output: no NUL byte in it, and absent or, with `overwrite`,
// a regular file (or a link to one); never a folder, FIFO, device or socket. Making its folder is the
// caller's part. write_files_together checks every destination; commands call it before any work.
Status check_output_file(const std::string& path, bool overwrite);

// An error when `output` is one of `kept` (the same file: by identity when both exist, else by the path
// it would have), which `what` names ("an input"): inputs, a model's files and a command's other outputs
// are never written over, overwrite or not.
Status check_not_written_over(const std::string& output, const std::vector<std::string>& kept, const std::string& what);

// A regular file read whole, its bytes as they are (a config, an index, an image); larger than `limit`
// bytes is an error, and so is a FIFO, a device or a directory (io/file_util.h, open_regular_file).
Result<std::string> read_text_file(const std::string& path, size_t limit = 16u << 20);

}  // namespace dinov3
