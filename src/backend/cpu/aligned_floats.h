// Float storage aligned to a cache line (64 bytes: one zmm register, no split loads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

namespace dinov3::cpu {

constexpr std::size_t kCacheLine = 64;

struct AlignedDelete {
  void operator()(float* p) const { ::operator delete[](p, std::align_val_t(kCacheLine)); }
};
using AlignedPtr = std::unique_ptr<float[], AlignedDelete>;

// Zero-initialised; throws std::bad_alloc like new.
inline AlignedPtr allocate_aligned(std::size_t n) {
  if (n > SIZE_MAX / sizeof(float)) throw std::bad_alloc();  // n * 4 would wrap to a small block
  const std::size_t bytes = (n == 0 ? 1 : n) * sizeof(float);
  float* p = static_cast<float*>(::operator new[](bytes, std::align_val_t(kCacheLine)));
  std::memset(p, 0, bytes);
  return AlignedPtr(p);
}

// Per-thread scratch that only grows: ops call reserve() before dispatching, so steady-state runs allocate
// nothing. Each thread's region starts on its own cache line (no false sharing).
class ThreadScratch {
 public:
  explicit ThreadScratch(int threads) : buffers_(static_cast<std::size_t>(threads)), sizes_(buffers_.size(), 0) {}
  void reserve(std::size_t floats_per_thread) {
    for (std::size_t t = 0; t < buffers_.size(); ++t) {
      if (sizes_[t] >= floats_per_thread) continue;
      buffers_[t] = allocate_aligned(floats_per_thread);
      sizes_[t] = floats_per_thread;
    }
  }
  float* get(int thread) { return buffers_[static_cast<std::size_t>(thread)].get(); }

 private:
  std::vector<AlignedPtr> buffers_;
  std::vector<std::size_t> sizes_;
};

}  // namespace dinov3::cpu
