// A fixed pool of worker threads created once per backend. run() publishes a job whose tasks are cut into
// one contiguous range per thread; every thread, the caller included (as thread 0), claims the tasks of its
// own range from the front, in order, and when that is empty takes the others' from their back, so run()
// returns once all tasks are done and no thread idles while a task is unclaimed. Ops order their tasks by
// row (a GEMM: the rows of range t, every panel block), so thread t keeps working on the same rows from op
// to op and reads activations it wrote itself. On this project's 2-core VM, whose cores pass a cache line
// in ~215 ns one way, ViT-S at batch 1 on two threads ran 4% (bf16, fp32) to 16% (int8) faster than with
// one shared queue (src/backend/cpu/README.md).
// The caller waits only for tasks that were actually claimed, never for a worker that has not woken up
// yet: on a shared, oversubscribed machine a descheduled worker then costs nothing instead of a whole
// scheduler time slice per op (the caller takes its range too). Idle workers spin briefly, so back-to-back
// ops do not pay a wake-up, then sleep on a condition variable (not std::atomic::wait: libstdc++ 12's can
// miss a notify and leave a worker asleep forever). Every task runs with subnormals flushed to zero (see
// thread_pool.cpp). In a process forked from the one that made the pool, the workers do not exist: run()
// calls every task on the caller there, and destroying the pool does not wait for them.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
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

  // The tasks thread t claims first when a job of `tasks` tasks runs on `threads` threads: [begin, end),
  // ranges as even as whole tasks allow, in thread order.
  struct Range {
    int64_t begin, end;
  };
  static Range home_range(int64_t tasks, int threads, int t) {
    return {tasks * t / threads, tasks * (t + 1) / threads};
  }

  // Calls fn(task, thread) for every task in [0, tasks), thread in [0, size()). Thread t starts on the tasks
  // of range t (home_range(tasks, size(), t); past 65535 tasks, of each run of 65535), in increasing
  // order, unless it comes so late that the others, done with their own, have run them all (they take
  // another range's tasks from its back). Not reentrant.
  template <class Fn>
  void run(int64_t tasks, Fn&& fn) {
    using F = std::remove_reference_t<Fn>;
    dispatch(tasks, &fn, [](void* ctx, int64_t task, int thread) { (*static_cast<F*>(ctx))(task, thread); });
  }

 private:
  using Invoke = void (*)(void* ctx, int64_t task, int thread);
  void dispatch(int64_t tasks, void* ctx, Invoke invoke);
  void run_job(int64_t first, int64_t tasks, void* ctx, Invoke invoke);
  void claim_tasks(uint64_t job, int thread);
  bool claim_one(uint32_t generation, int range, int thread);
  void worker_main(int thread);

  std::vector<std::thread> workers_;
  // The job word: generation (32 bits) | task count (32). A new generation tells the workers that a job
  // is there.
  alignas(64) std::atomic<uint64_t> job_{0};
  // One word per thread's range: generation (32) | first unclaimed task (16) | end (16). The owner claims
  // at the front, the others at the back, each with a CAS on the whole word, so a late worker can never
  // take a task of a job other than the one it read, and the two ends never hand out a task twice.
  struct alignas(64) RangeWord {
    std::atomic<uint64_t> word{0};
  };
  std::vector<RangeWord> ranges_;
  alignas(64) std::atomic<int64_t> done_{0};  // tasks of the current job finished
  // The current job's callback and first task index: written before job_ is published and stable until
  // done_ reaches the task count.
  void* ctx_ = nullptr;
  Invoke invoke_ = nullptr;
  int64_t first_ = 0;
  uint32_t generation_ = 0;  // the caller's count of published jobs
  std::atomic<bool> stop_{false};
  // fork_epoch() when the workers started (util/fork_epoch.h): in a forked child (another value) the pool
  // runs every task on the caller and its destructor joins nothing.
  const uint64_t epoch_;
  // Where threads sleep. Held apart so that a forked child's destructor can leave it alone: destroying a
  // condition variable waits for its waiters, which there are workers that do not exist.
  struct Sleep {
    std::mutex mutex;                   // guards sleeping on the condition variables below
    std::condition_variable job_ready;  // job_ got a new generation
    std::condition_variable job_done;   // done_ reached the task count
  };
  std::unique_ptr<Sleep> sleep_ = std::make_unique<Sleep>();
};

}  // namespace dinov3::cpu
