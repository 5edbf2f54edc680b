// A fixed pool of worker threads created once per backend. run() hands out task indices through an atomic
// counter (the caller's thread takes part as thread 0) and returns when all tasks are done. Idle workers
// spin briefly, so back-to-back ops do not pay a wake-up, then sleep on a condition variable. (Sleeping
// uses a mutex and condition variable rather than std::atomic::wait: libstdc++ 12's atomic wait can miss
// a notify and leave a worker asleep forever.) Every task runs with subnormals flushed to zero (see
// thread_pool.cpp).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <thread>
#include <vector>

namespace dinov3::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(task, thread) for every task in [0, tasks), thread in [0, size()). Not reentrant.
  template <class Fn>
  void run(int64_t tasks, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    dispatch(tasks, &fn, [](void* ctx, int64_t task, int thread) { (*static_cast<F*>(ctx))(task, thread); });
  }

 private:
  using Invoke = void (*)(void* ctx, int64_t task, int thread);
  void dispatch(int64_t tasks, void* ctx, Invoke invoke);
  void work(int thread);
  void worker_main(int thread);

  std::vector<std::thread> workers_;
  // The current job, published by the release increment of generation_.
  int64_t tasks_ = 0;
  void* ctx_ = nullptr;
  Invoke invoke_ = nullptr;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<int> busy_workers_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;                  // guards sleeping on the two condition variables below
  std::condition_variable job_ready_;   // generation_ changed
  std::condition_variable job_done_;    // busy_workers_ reached 0
};

}  // namespace dinov3::cpu
