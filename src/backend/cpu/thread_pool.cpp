#include "backend/cpu/thread_pool.h"

#include <xmmintrin.h>  // _mm_getcsr / _mm_setcsr (SSE, part of baseline x86-64)

#include <algorithm>
#include <chrono>

#include "util/float_env.h"
#include "util/fork_epoch.h"

namespace dinov3::cpu {
namespace {

// How long an idle thread polls before sleeping: long enough to bridge the gap between two ops of a
// forward pass, short enough not to hold a core when the engine is idle.
constexpr auto kSpin = std::chrono::microseconds(200);

constexpr int64_t kMaxTasksPerJob = 0xFFFF;  // a range word's 16-bit task indices

// Job word: generation | task count. Range word: generation | next | end.
uint32_t generation_of(uint64_t word) { return static_cast<uint32_t>(word >> 32); }
int64_t tasks_of(uint64_t job) { return static_cast<int64_t>(job & 0xFFFFFFFF); }
int64_t next_of(uint64_t range) { return static_cast<int64_t>((range >> 16) & 0xFFFF); }
int64_t end_of(uint64_t range) { return static_cast<int64_t>(range & 0xFFFF); }
uint64_t range_word(uint32_t generation, int64_t next, int64_t end) {
  return (static_cast<uint64_t>(generation) << 32) | (static_cast<uint64_t>(next) << 16) | static_cast<uint64_t>(end);
}

inline void cpu_relax() { __builtin_ia32_pause(); }

// Kernels run with subnormals flushed to zero (FTZ) and treated as zero on input (DAZ): a subnormal operand
// or result makes an FMA take a microcode assist, and real checkpoints produce them (far GELU tails, tiny
// softmax weights times small values), which cost 5-7% of a ViT-S forward here. The change to any value
// is below 1.2e-38 in magnitude. And they round to nearest, whatever mode the application set (fesetround):
// some kernels round through the mode (the reduced-precision GELU finds its table interval by adding
// 1.5 * 2^23, int8 quantisation uses cvtps2dq), so another mode would change their results, not just their
// last bits. Every exception stays masked (a NaN passing through a max, an out-of-range conversion that
// saturates on purpose must not trap in an application that unmasked them). The bits: util/float_env.h.
unsigned kernel_csr(unsigned csr) {
  return (csr & ~kMxcsrRoundingControl) | kMxcsrFlushDenormals | kMxcsrExceptionMasks;
}

// Sets FTZ/DAZ, round-to-nearest and masked exceptions on the calling thread for its lifetime and restores the
// caller's MXCSR afterwards, so the library does not change the floating-point environment of the application's
// thread.
class ScopedKernelCsr {
 public:
  ScopedKernelCsr() : saved_(_mm_getcsr()) { _mm_setcsr(kernel_csr(saved_)); }
  ~ScopedKernelCsr() { _mm_setcsr(saved_); }
  ScopedKernelCsr(const ScopedKernelCsr&) = delete;
  ScopedKernelCsr& operator=(const ScopedKernelCsr&) = delete;

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

ThreadPool::ThreadPool(int threads) : ranges_(static_cast<size_t>(std::max(threads, 1))), epoch_(fork_epoch()) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  if (fork_epoch() != epoch_) {  // a forked child: no workers here, and the lock may be copied held
    for (std::thread& w : workers_) w.detach();
    (void)sleep_.release();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(sleep_->mutex);
    stop_.store(true, std::memory_order_relaxed);
    job_.store(static_cast<uint64_t>(++generation_) << 32, std::memory_order_release);
  }
  sleep_->job_ready.notify_all();
  for (std::thread& w : workers_) w.join();
}

// Claims one task of range `range` of job `generation` (its owner at the front, any other thread at the
// back) and runs it as `thread`; false when the range has none left or belongs to another job.
bool ThreadPool::claim_one(uint32_t generation, int range, int thread) {
  std::atomic<uint64_t>& word = ranges_[static_cast<size_t>(range)].word;
  const bool front = range == thread;
  uint64_t w = word.load(std::memory_order_acquire);
  int64_t task = 0;
  for (;;) {
    const int64_t next = next_of(w), end = end_of(w);
    if (generation_of(w) != generation || next >= end) return false;
    task = front ? next : end - 1;
    const uint64_t claimed = front ? range_word(generation, next + 1, end) : range_word(generation, next, end - 1);
    if (word.compare_exchange_weak(w, claimed, std::memory_order_acq_rel, std::memory_order_acquire)) break;
  }
  // The claim pins the job: the caller waits for this task, so ctx_, invoke_ and first_ are stable.
  invoke_(ctx_, first_ + task, thread);
  return true;
}

// Runs tasks of `job` (a value read from job_): its own range's first, then the others' (from the range
// after its own on), until none is left or a newer job replaced it.
void ThreadPool::claim_tasks(uint64_t job, int thread) {
  const uint32_t generation = generation_of(job);
  const int n = size();
  for (int i = 0; i < n; ++i) {
    const int range = (thread + i) % n;
    while (claim_one(generation, range, thread)) {
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks_of(job)) {
        std::lock_guard<std::mutex> lock(sleep_->mutex);  // orders the wake-up after the caller's check
        sleep_->job_done.notify_one();
      }
    }
  }
}

void ThreadPool::run_job(int64_t first, int64_t tasks, void* ctx, Invoke invoke) {
  ctx_ = ctx;
  invoke_ = invoke;
  first_ = first;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t generation = ++generation_;
  const int n = size();
  for (int t = 0; t < n; ++t) {
    const Range r = home_range(tasks, n, t);
    ranges_[static_cast<size_t>(t)].word.store(range_word(generation, r.begin, r.end), std::memory_order_relaxed);
  }
  const uint64_t job = (static_cast<uint64_t>(generation) << 32) | static_cast<uint64_t>(tasks);
  {
    std::lock_guard<std::mutex> lock(sleep_->mutex);
    job_.store(job, std::memory_order_release);  // publishes the range words and the fields above with it
  }
  sleep_->job_ready.notify_all();
  claim_tasks(job, 0);
  auto finished = [&] { return done_.load(std::memory_order_acquire) == tasks; };
  if (!spin_until(finished)) {
    std::unique_lock<std::mutex> lock(sleep_->mutex);
    sleep_->job_done.wait(lock, finished);
  }
}

void ThreadPool::dispatch(int64_t tasks, void* ctx, Invoke invoke) {
  if (tasks <= 0) return;
  const ScopedKernelCsr kernel_csr_scope;
  // In a child forked after the workers started, none of them exists: the caller runs every task, without
  // touching the lock or the condition variables (their copied state may name threads that are gone).
  if (workers_.empty() || tasks == 1 || fork_epoch() != epoch_) {
    for (int64_t t = 0; t < tasks; ++t) invoke(ctx, t, 0);
    return;
  }
  for (int64_t first = 0; first < tasks; first += kMaxTasksPerJob) {
    run_job(first, std::min(kMaxTasksPerJob, tasks - first), ctx, invoke);
  }
}

void ThreadPool::worker_main(int thread) {
  _mm_setcsr(kernel_csr(_mm_getcsr()));  // a pool thread only ever runs kernels (it may inherit any mode)
  // Generation 0 is the state at construction: a job or a stop published before this thread got
  // scheduled is still seen as new.
  uint32_t seen = 0;
  for (;;) {
    auto new_job = [&] { return generation_of(job_.load(std::memory_order_acquire)) != seen; };
    if (!spin_until(new_job)) {
      std::unique_lock<std::mutex> lock(sleep_->mutex);
      sleep_->job_ready.wait(lock, new_job);
    }
    // stop_ is read after the job word, whose store it precedes: a worker that reads the destructor's word
    // sees the stop. (Read before it, a stop published between the two reads left the worker taking the
    // destructor's word for a job, then waiting for another one forever while the destructor joined it.)
    const uint64_t job = job_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_acquire)) return;
    seen = generation_of(job);
    claim_tasks(job, thread);
  }
}

}  // namespace dinov3::cpu
