#include "io/file_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

namespace dinov3 {

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

Status write_file_atomic(const std::string& path, bool overwrite, const std::function<Status(const WriteFn&)>& produce) {
  if (!overwrite && file_exists(path)) {
    return make_error(ErrorCode::kInvalidArgument, path + ": already exists (pass the overwrite option to replace it)");
  }
  std::string tmpl = path + ".tmp.XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  const int fd = ::mkstemp(name.data());
  if (fd < 0) return make_error(ErrorCode::kIoError, path + ": cannot create a temporary file: " + std::strerror(errno));
  const std::string tmp(name.data());
  auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    ::unlink(tmp.c_str());
    return make_error(ErrorCode::kIoError, path + ": " + what + ": " + reason);
  };
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
    ::unlink(tmp.c_str());
    return st.with_context(path);
  }
  ::fchmod(fd, 0644);
  if (::fsync(fd) != 0) return fail("cannot flush");
  if (::close(fd) != 0) {
    ::unlink(tmp.c_str());
    return make_error(ErrorCode::kIoError, path + ": cannot close: " + std::strerror(errno));
  }
  if (!overwrite) {
    // link() fails if the name exists, so a file created meanwhile is not replaced.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      const std::string reason = std::strerror(errno);
      ::unlink(tmp.c_str());
      return make_error(ErrorCode::kIoError, path + ": cannot create: " + reason);
    }
    ::unlink(tmp.c_str());
    return {};
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    return make_error(ErrorCode::kIoError, path + ": cannot rename into place: " + reason);
  }
  return {};
}

Result<std::string> read_text_file(const std::string& path, size_t limit) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error(ErrorCode::kNotFound, path + ": no such file");
  if (!S_ISREG(st.st_mode)) return make_error(ErrorCode::kInvalidArgument, path + ": not a regular file");
  if (static_cast<uint64_t>(st.st_size) > limit)
    return make_error(ErrorCode::kFormatError, path + ": " + std::to_string(st.st_size) + " bytes is too large");
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::kIoError, path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(ErrorCode::kIoError, path + ": read error");
  return ss.str();
}

}  // namespace dinov3
