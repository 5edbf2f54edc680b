#include "backend/cpu/weight_arena.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#ifdef __linux__
#include <sys/mman.h>
#endif

#include "backend/cpu/aligned_floats.h"

namespace dinov3::cpu {
namespace {

size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

std::shared_ptr<uint8_t> new_chunk(size_t bytes) {
  void* p = std::aligned_alloc(WeightArena::kPageBytes, bytes);  // bytes: a multiple of the alignment
  if (p == nullptr) throw std::bad_alloc();
#ifdef __linux__
  // A request, not a requirement: where it is refused the chunk simply stays on 4 KiB pages.
  (void)madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return std::shared_ptr<uint8_t>(static_cast<uint8_t*>(p), [](uint8_t* q) { std::free(q); });
}

}  // namespace

std::shared_ptr<uint8_t> WeightArena::allocate(size_t n) {
  if (n > SIZE_MAX - kPageBytes) throw std::bad_alloc();  // no rounding below may wrap around
  n = round_up(n == 0 ? 1 : n, kCacheLine);
  const std::lock_guard<std::mutex> lock(mutex_);
  if (chunk_ == nullptr || size_ - used_ < n) {
    // A new chunk; what the old one had left stays unused (never written, so never backed by memory). The
    // arena's state changes only once the chunk exists: a refused allocation leaves the old chunk in use.
    const size_t size = std::max(kChunkBytes, round_up(n, kPageBytes));
    chunk_ = new_chunk(size);
    size_ = size;
    used_ = 0;
  }
  uint8_t* p = chunk_.get() + used_;
  used_ += n;
  std::memset(p, 0, n);
  return std::shared_ptr<uint8_t>(chunk_, p);
}

std::shared_ptr<uint8_t> allocate_weight_bytes(WeightArena* arena, size_t n) {
  if (arena != nullptr) return arena->allocate(n);
  if (n > SIZE_MAX - kCacheLine) throw std::bad_alloc();
  // aligned_floats.h's zeroed, cache-line-aligned storage, owned as floats and handed out as bytes.
  const std::shared_ptr<float[]> floats(allocate_aligned((n + sizeof(float) - 1) / sizeof(float)));
  return std::shared_ptr<uint8_t>(floats, reinterpret_cast<uint8_t*>(floats.get()));
}

}  // namespace dinov3::cpu
