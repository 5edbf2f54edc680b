#include "backend/cpu/thread_pool.h"

#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr (SSE, part of baseline x86-64)

#include <algorithm>
#include <chrono>

namespace dinov3::cpu {
namespace {

// How long an idle thread polls before sleeping: long enough to bridge the gap between two ops of a
// forward pass, short enough not to hold a core when the engine is idle.
constexpr auto kSpin = std::chrono::microseconds(200);

constexpr int64_t kMaxTasksPerJob = 0xFFFF;  // the job word's 16-bit task count

uint32_t generation_of(uint64_t job) { return static_cast<uint32_t>(job >> 32); }
int64_t tasks_of(uint64_t job) { return static_cast<int64_t>((job >> 16) & 0xFFFF); }
int64_t next_of(uint64_t job) { return static_cast<int64_t>(job & 0xFFFF); }

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

// Polls `ready` until it holds or the spin budget is spent; returns its last value.
template <class Ready>
bool spin_until(Ready&& ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return ready();
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
    job_.store(static_cast<uint64_t>(++generation_) << 32, std::memory_order_release);
  }
  job_ready_.notify_all();
  for (std::thread& w : workers_) w.join();
}

// Claims and runs tasks of `job` (a value read from job_) until none is left or a newer job replaced it.
void ThreadPool::claim_tasks(uint64_t job, int thread) {
  const uint32_t generation = generation_of(job);
  for (;;) {
    if (generation_of(job) != generation || next_of(job) >= tasks_of(job)) return;
    if (!job_.compare_exchange_weak(job, job + 1, std::memory_order_acq_rel, std::memory_order_acquire)) {
      continue;  // `job` now holds the current word
    }
    // The claim pins the job: the caller waits for this task, so ctx_, invoke_ and first_ are stable.
    invoke_(ctx_, first_ + next_of(job), thread);
    if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks_of(job)) {
      std::lock_guard<std::mutex> lock(mutex_);  // orders the wake-up after the caller's check
      job_done_.notify_one();
    }
    job = job_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run_job(int64_t first, int64_t tasks, void* ctx, Invoke invoke) {
  ctx_ = ctx;
  invoke_ = invoke;
  first_ = first;
  done_.store(0, std::memory_order_relaxed);
  const uint64_t job = (static_cast<uint64_t>(++generation_) << 32) | (static_cast<uint64_t>(tasks) << 16);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_.store(job, std::memory_order_release);
  }
  job_ready_.notify_all();
  claim_tasks(job, 0);
  auto finished = [&] { return done_.load(std::memory_order_acquire) == tasks; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(mutex_);
    job_done_.wait(lock, finished);
  }
}

void ThreadPool::dispatch(int64_t tasks, void* ctx, Invoke invoke) {
  if (tasks <= 0) return;
  const ScopedFlushDenormals flush;
  if (workers_.empty() || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) invoke(ctx, t, 0);
    return;
  }
  for (int64_t first = 0; first < tasks; first += kMaxTasksPerJob) {
    run_job(first, std::min(kMaxTasksPerJob, tasks - first), ctx, invoke);
  }
}

void ThreadPool::worker_main(int thread) {
  _mm_setcsr(_mm_getcsr() | kFlushDenormals);  // a pool thread only ever runs kernels
  // Generation 0 is the state at construction: a job or a stop published before this thread got
  // scheduled is still seen as new.
  uint32_t seen = 0;
  for (;;) {
    auto new_job = [&] { return generation_of(job_.load(std::memory_order_acquire)) != seen; };
    if (!spin_until(new_job)) {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ready_.wait(lock, new_job);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    const uint64_t job = job_.load(std::memory_order_acquire);
    seen = generation_of(job);
    claim_tasks(job, thread);
  }
}

}  // namespace dinov3::cpu
