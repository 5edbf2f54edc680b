#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "dinov3/tensor_file.h"
#include "io/file_util.h"

namespace dinov3 {

Result<std::shared_ptr<MappedFile>> MappedFile::open(const std::string& path) {
  DINOV3_ASSIGN_OR_RETURN(const RegularFile opened, open_regular_file(path));
  const int fd = opened.fd;
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->path_ = path;
  file->size_ = static_cast<size_t>(opened.size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return make_error(err == ENOMEM ? ErrorCode::kOutOfMemory : ErrorCode::kIoError,
                        path + ": cannot map: " + std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return file;
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(const uint8_t* begin, size_t nbytes) const {
  if (data_ == nullptr || begin < data_ || begin + nbytes > data_ + size_) return;
  // madvise works on whole pages: only drop pages lying entirely inside the range.
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(begin) + nbytes) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace dinov3
