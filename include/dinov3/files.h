// Writing files so that a reader never sees half of one (and several files published together or not
// at all), and nothing a user has is replaced unasked.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "dinov3/status.h"

namespace dinov3 {

using WriteFn = std::function<Status(const void* data, size_t size)>;
using ProduceFn = std::function<Status(const WriteFn&)>;

// A file written in full, flushed to disk, in a temporary file beside its destination, and not yet in
// place. Destroying it without commit_files removes the temporary file.
class StagedFile {
 public:
  static Result<StagedFile> write(const std::string& path, const ProduceFn& produce);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&&) = delete;
  ~StagedFile();
  const std::string& path() const { return path_; }

 private:
  friend Status commit_files(std::vector<StagedFile>& files, bool overwrite);
  StagedFile(std::string path, std::string tmp) : path_(std::move(path)), tmp_(std::move(tmp)) {}
  std::string path_, tmp_;  // tmp_ is empty once moved into place
};

// Moves every staged file to its destination, or none of them: when one cannot be moved, those already
// moved are put back as they were (a crash between two renames can still leave the first one done).
// With overwrite == false an existing destination is an error and nothing moves.
Status commit_files(std::vector<StagedFile>& files, bool overwrite);

// StagedFile::write then commit_files for one file. With overwrite == false an existing `path` is an
// error and is left untouched.
Status write_file_atomic(const std::string& path, bool overwrite, const ProduceFn& produce);

// write_file_atomic of bytes already in memory.
Status write_bytes_atomic(const std::string& path, bool overwrite, std::string_view bytes);

bool file_exists(const std::string& path);

// A small text file (a config, an index) read whole; larger than `limit` bytes is an error.
Result<std::string> read_text_file(const std::string& path, size_t limit = 16u << 20);

}  // namespace dinov3
