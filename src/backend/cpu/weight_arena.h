// Where the cpu backend keeps packed weights: in large chunks that Linux may back with 2 MiB pages.
//
// A forward streams every packed weight from memory once (ViT-S: 42 MiB in bf16, 84 MiB in float32, more
// than the caches keep from one forward to the next), page after page. On 4 KiB pages that costs a TLB miss
// and a restart of the hardware prefetchers (which stop at page boundaries) every 64 cache lines; in 2 MiB
// pages the linear layers of a one-thread bf16 forward ran about 3% faster (src/backend/cpu/README.md,
// "Weights in huge pages"). Linux's transparent huge pages, in their default `madvise` mode, back only the
// 2 MiB-aligned ranges a process asks for, and one layer's weights are often smaller than 2 MiB (ViT-S: 0.3
// to 1.2 MiB in bf16), so each backend packs its weights one after another into chunks of at least 32 MiB,
// aligned to 2 MiB and marked MADV_HUGEPAGE. Where the kernel does not give huge pages (THP off, no
// contiguous memory), or off Linux, the chunks are ordinary memory: the same bytes, 4 KiB pages.
//
// A block holds a share of its chunk (std::shared_ptr's aliasing form), so a chunk is freed with the last
// weight packed into it, whichever of the weights and the backend goes first. Only the bytes handed out are
// written (zeroed), so a chunk's unused tail costs address space, not memory (past the 2 MiB page its last
// block ends in).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace dinov3::cpu {

class WeightArena {
 public:
  static constexpr size_t kPageBytes = size_t{2} << 20;  // x86-64's transparent huge page
  static constexpr size_t kChunkBytes = size_t{32} << 20;

  // n zeroed bytes (at least one), 64-byte aligned, inside a chunk it keeps alive. Throws std::bad_alloc.
  std::shared_ptr<uint8_t> allocate(size_t n);

 private:
  std::mutex mutex_;  // prepare_linear may be called from any thread
  std::shared_ptr<uint8_t> chunk_;
  size_t used_ = 0, size_ = 0;
};

// n zeroed bytes from `arena`, or on their own (ordinary, 64-byte aligned) when arena is null: the packing
// functions' one way to get a weight's storage.
std::shared_ptr<uint8_t> allocate_weight_bytes(WeightArena* arena, size_t n);

}  // namespace dinov3::cpu
