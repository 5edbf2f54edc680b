#include "io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

namespace dinov3 {

bool file_exists(const std::string& path) {
  struct stat st {};
  return check_path(path).ok() && ::stat(path.c_str(), &st) == 0;
}

Status check_path(const std::string& path) {
  if (path.find('\0') == std::string::npos) return {};
  // Shown up to 200 bytes: encoded image bytes given where a path goes would otherwise fill the message.
  constexpr size_t kShown = 200;
  std::string shown;
  for (size_t i = 0; i < path.size() && i < kShown; ++i) path[i] == '\0' ? shown += "\\0" : shown += path[i];
  if (path.size() > kShown) shown += "... (" + std::to_string(path.size()) + " bytes)";
  return make_error(ErrorCode::kInvalidArgument, "\"" + shown + "\": a path cannot hold a NUL byte");
}

Result<RegularFile> open_regular_file(const std::string& path) {
  DINOV3_RETURN_IF_ERROR(check_path(path));
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer before the check below.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int err = errno;
    return make_error(err == ENOENT ? ErrorCode::kNotFound : ErrorCode::kIoError,
                      path + ": cannot open: " + std::strerror(err));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIoError, path + ": cannot stat: " + std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(ErrorCode::kInvalidArgument, path + (S_ISDIR(st.st_mode) ? ": is a directory, not a file"
                                                                                : ": not a regular file"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
    const int err = errno;
    ::close(fd);
    return make_error(ErrorCode::kIoError, path + ": cannot open: " + std::strerror(err));
  }
  return RegularFile{fd, static_cast<uint64_t>(st.st_size)};
}

namespace {

Status io_error(const std::string& path, const std::string& what, int err) {
  return make_error(ErrorCode::kIoError, path + ": " + what + ": " + std::strerror(err));
}

Status already_exists(const std::string& path) {
  return make_error(ErrorCode::kInvalidArgument, path + ": already exists (pass the overwrite option to replace it)");
}

// A file written in full, flushed to disk, in a temporary file beside its destination, and not yet in
// place. Destroying it before it is moved removes the temporary file.
class StagedFile {
 public:
  static Result<StagedFile> write(const std::string& path, const std::function<Status(const WriteFn&)>& produce);
  StagedFile(StagedFile&& other) noexcept;
  StagedFile& operator=(StagedFile&&) = delete;
  ~StagedFile();

  std::string path_, tmp_;  // tmp_ is empty once moved into place

 private:
  StagedFile(std::string path, std::string tmp) : path_(std::move(path)), tmp_(std::move(tmp)) {}
};

StagedFile::StagedFile(StagedFile&& other) noexcept : path_(std::move(other.path_)), tmp_(std::move(other.tmp_)) {
  other.tmp_.clear();
}

StagedFile::~StagedFile() {
  if (!tmp_.empty()) ::unlink(tmp_.c_str());
}

Result<StagedFile> StagedFile::write(const std::string& path, const std::function<Status(const WriteFn&)>& produce) {
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) return io_error(path, "cannot create a temporary file", errno);
  StagedFile staged(path, name.data());  // removes the temporary file on every early return
  const WriteFn write = [&](const void* data, size_t size) -> Status {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      const ssize_t n = ::write(fd, p, size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return make_error(ErrorCode::kIoError, std::string("write failed: ") + std::strerror(errno));
      }
      p += n;
      size -= static_cast<size_t>(n);
    }
    return {};
  };
  Status st = produce(write);
  if (!st.ok()) {
    ::close(fd);
    return st.with_context(path);
  }
  ::fchmod(fd, 0644);
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return io_error(path, "cannot flush", err);
  }
  if (::close(fd) != 0) return io_error(path, "cannot close", errno);
  return staged;
}

// Moves every staged file into place, or none of them (see write_files_together).
Status commit_files(std::vector<StagedFile>& files, bool overwrite) {
  if (!overwrite) {
    for (const StagedFile& f : files)
      if (file_exists(f.path_)) return already_exists(f.path_);
  }
  // What each moved destination held before, to put back if a later one fails.
  struct Moved {
    const std::string* path;
    bool replaced = false;  // a file was there before
    std::string backup;     // a hard link to it, when one could be made
  };
  std::vector<Moved> moved;
  const auto undo = [&] {
    for (auto it = moved.rbegin(); it != moved.rend(); ++it) {
      if (!it->replaced) {
        ::unlink(it->path->c_str());
      } else if (!it->backup.empty()) {
        ::rename(it->backup.c_str(), it->path->c_str());
      }
    }
  };
  for (StagedFile& f : files) {
    Moved m{&f.path_, file_exists(f.path_), ""};
    int err = 0;
    if (!overwrite) {
      // link() fails if the name exists, so a file created meanwhile is not replaced.
      if (::link(f.tmp_.c_str(), f.path_.c_str()) != 0) err = errno;
    } else {
      if (m.replaced) {
        m.backup = f.tmp_ + ".old";
        if (::link(f.path_.c_str(), m.backup.c_str()) != 0) m.backup.clear();
      }
      if (::rename(f.tmp_.c_str(), f.path_.c_str()) != 0) err = errno;
    }
    if (err != 0) {
      if (!m.backup.empty()) ::unlink(m.backup.c_str());
      undo();
      for (const Moved& done : moved)
        if (!done.backup.empty()) ::unlink(done.backup.c_str());
      return err == EEXIST ? already_exists(f.path_) : io_error(f.path_, "cannot move into place", err);
    }
    if (!overwrite) ::unlink(f.tmp_.c_str());
    f.tmp_.clear();
    moved.push_back(std::move(m));
  }
  for (const Moved& m : moved)
    if (!m.backup.empty()) ::unlink(m.backup.c_str());
  return {};
}

}  // namespace

Status check_output_file(const std::string& path, bool overwrite) {
  DINOV3_RETURN_IF_ERROR(check_path(path));
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) return {};
  // Only a regular file is replaced: renaming over a FIFO, a device (/dev/null) or a socket would put a
  // plain file where the system or another program expects that node.
  if (!S_ISREG(st.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument, path + ": exists and is not a regular file" +
                                                       (S_ISDIR(st.st_mode) ? " (a folder)" : "") +
                                                       "; only a regular file is replaced");
  }
  if (!overwrite) return already_exists(path);
  return {};
}

Status check_not_written_over(const std::string& output, const std::vector<std::string>& kept, const std::string& what) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // An existing output is compared by identity (one stat per kept file; links and hard links included), a
  // new one by the path it will have.
  const bool exists = fs::exists(output, ec);
  const fs::path out = exists ? fs::path() : fs::weakly_canonical(output, ec);
  for (const std::string& k : kept) {
    std::error_code k_ec;
    const bool same = exists ? fs::equivalent(output, k, k_ec)
                             : ec ? output == k : fs::weakly_canonical(k, k_ec) == out && !k_ec;
    if (same) return make_error(ErrorCode::kInvalidArgument, output + " is " + what + "; it is never written over");
  }
  return {};
}

Status write_files_together(const std::vector<FileToWrite>& files, bool overwrite) {
  for (const FileToWrite& f : files) {
    DINOV3_RETURN_IF_ERROR(check_output_file(f.path, overwrite));
    if (!f.produce) return make_error(ErrorCode::kInvalidArgument, f.path + ": nothing to write it with (an empty producer)");
  }
  std::vector<StagedFile> staged;
  for (const FileToWrite& f : files) {
    DINOV3_ASSIGN_OR_RETURN(StagedFile s, StagedFile::write(f.path, f.produce));
    staged.push_back(std::move(s));
  }
  return commit_files(staged, overwrite);
}

Status write_file_atomic(const std::string& path, bool overwrite, const std::function<Status(const WriteFn&)>& produce) {
  return write_files_together({{path, produce}}, overwrite);
}

Status write_bytes_atomic(const std::string& path, bool overwrite, std::string_view bytes) {
  return write_file_atomic(path, overwrite, [&](const WriteFn& write) { return write(bytes.data(), bytes.size()); });
}

Result<std::string> read_text_file(const std::string& path, size_t limit) {
  DINOV3_ASSIGN_OR_RETURN(const RegularFile file, open_regular_file(path));
  const int fd = file.fd;
  if (file.size > limit) {
    ::close(fd);
    return make_error(ErrorCode::kFormatError, path + ": " + std::to_string(file.size) + " bytes is too large");
  }
  std::string text;
  text.reserve(static_cast<size_t>(file.size));
  char chunk[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return io_error(path, "read failed", err);
    }
    if (n == 0) break;
    text.append(chunk, static_cast<size_t>(n));
    if (text.size() > limit) {  // grew since the check
      ::close(fd);
      return make_error(ErrorCode::kFormatError, path + ": more than " + std::to_string(limit) + " bytes is too large");
    }
  }
  ::close(fd);
  return text;
}

}  // namespace dinov3
