#include "backend/cpu/thread_pool.h"

#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr (SSE, part of baseline x86-64)

#include <chrono>

namespace dinov3::cpu {
namespace {

// How long an idle thread polls before sleeping: long enough to bridge the gap between two ops of a
// forward pass, short enough not to hold a core when the engine is idle.
constexpr auto kSpin = std::chrono::microseconds(200);

inline void cpu_relax() { __builtin_ia32_pause(); }

// Kernels run with subnormals flushed to zero (FTZ) and treated as zero on input (DAZ): a subnormal operand
// or result makes an FMA take a microcode assist, and real checkpoints produce them (far GELU tails, tiny
// softmax weights times small values), which cost 5-7% of a ViT-S forward here. The change to any value
// is below 1.2e-38 in magnitude.
constexpr unsigned kFlushDenormals = 0x8040;  // MXCSR FTZ (bit 15) | DAZ (bit 6)

// Sets FTZ/DAZ on the calling thread for its lifetime and restores the caller's MXCSR afterwards, so the
// library does not change the floating-point environment of the application's thread.
class ScopedFlushDenormals {
 public:
  ScopedFlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushDenormals); }
  ~ScopedFlushDenormals() { _mm_setcsr(saved_); }
  ScopedFlushDenormals(const ScopedFlushDenormals&) = delete;
  ScopedFlushDenormals& operator=(const ScopedFlushDenormals&) = delete;

 private:
  unsigned saved_;
};

// Polls until `value` differs from `old` or the spin budget is spent; true if it changed.
template <class T>
bool spin_while_equal(const std::atomic<T>& value, T old) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (value.load(std::memory_order_acquire) != old) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  job_ready_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::work(int thread) {
  for (;;) {
    const int64_t task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= tasks_) return;
    invoke_(ctx_, task, thread);
  }
}

void ThreadPool::dispatch(int64_t tasks, void* ctx, Invoke invoke) {
  if (tasks <= 0) return;
  const ScopedFlushDenormals flush;
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) invoke(ctx, t, 0);
    return;
  }
  tasks_ = tasks;
  ctx_ = ctx;
  invoke_ = invoke;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(static_cast<int>(workers_.size()), std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_release);
  }
  job_ready_.notify_all();
  work(0);
  for (int busy = busy_workers_.load(std::memory_order_acquire); busy != 0;
       busy = busy_workers_.load(std::memory_order_acquire)) {
    if (!spin_while_equal(busy_workers_, busy)) {
      std::unique_lock<std::mutex> lock(mutex_);
      job_done_.wait(lock, [&] { return busy_workers_.load(std::memory_order_acquire) != busy; });
    }
  }
}

void ThreadPool::worker_main(int thread) {
  _mm_setcsr(_mm_getcsr() | kFlushDenormals);  // a pool thread only ever runs kernels
  // Generation 0 is the state at construction: a job or a stop published before this thread got
  // scheduled is still seen as new.
  uint32_t seen = 0;
  for (;;) {
    if (!spin_while_equal(generation_, seen)) {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ready_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_relaxed)) return;
    work(thread);
    if (busy_workers_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mutex_);  // orders the wake-up after the caller's check
      job_done_.notify_one();
    }
  }
}

}  // namespace dinov3::cpu
