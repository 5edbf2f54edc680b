#include "util/fork_epoch.h"

#include <pthread.h>

#include <atomic>

namespace dinov3 {
namespace {

std::atomic<uint64_t> g_epoch{0};

// Runs in the child right after fork, where only async-signal-safe work is allowed: a lock-free increment.
void on_fork_child() { g_epoch.fetch_add(1, std::memory_order_relaxed); }

static_assert(std::atomic<uint64_t>::is_always_lock_free);

}  // namespace

uint64_t fork_epoch() {
  static const bool registered = [] { return pthread_atfork(nullptr, nullptr, on_fork_child) == 0; }();
  (void)registered;  // without the handler (ENOMEM at registration) every process reads the same 0
  return g_epoch.load(std::memory_order_relaxed);
}

}  // namespace dinov3
