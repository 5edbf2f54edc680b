// Objects with worker threads carried into a child made by fork(): the CPU backend's thread pool, a whole
// model on it, and the image prefetcher. The child holds a copy of their memory but none of their workers,
// and their locks and condition variables still count the parent's threads; each must keep working (or
// say why it cannot) and be destroyed there without waiting for threads that are not there. Before
// util/fork_epoch.h a model freed in the child hung in the pool's destructor (joining its workers, then
// destroying a condition variable with the parent's sleepers), and take() waited for a decoder forever.
// Each child runs under an alarm: 142 (SIGALRM) means it hung.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu/thread_pool.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "test_labels.h"
#include "test_util.h"
#include "util/fork_epoch.h"

namespace dinov3 {
namespace {

constexpr unsigned kChildSeconds = 60;

// Long enough for idle workers to stop spinning and sleep on their condition variable.
void let_workers_sleep() { std::this_thread::sleep_for(std::chrono::milliseconds(300)); }

DINOV3_SUITE_LABELS(ForkEpoch, "unit");

TEST(ForkEpoch, DiffersInAForkedChildAndInItsChild) {
  const uint64_t here = fork_epoch();
  EXPECT_EQ(fork_epoch(), here);
  const int code = test::run_in_forked_child(kChildSeconds, [&] {
    const uint64_t child = fork_epoch();
    if (child == here) return 1;
    const int grandchild = test::run_in_forked_child(kChildSeconds, [&] {
      return fork_epoch() != here && fork_epoch() != child ? 0 : 1;
    });
    return grandchild == 0 ? 0 : 2;
  });
  EXPECT_EQ(code, 0) << "1: the child's epoch is the parent's; 2: the grandchild's is one of theirs";
  EXPECT_EQ(fork_epoch(), here);
}

DINOV3_SUITE_LABELS(ForkedThreadPool, "unit");

TEST(ForkedThreadPool, RunsEveryTaskOnTheCallerAndIsDestroyed) {
  for (const bool asleep : {false, true}) {
    auto pool = std::make_unique<cpu::ThreadPool>(3);
    std::atomic<int> warm{0};
    pool->run(12, [&](int64_t, int) { warm.fetch_add(1); });
    ASSERT_EQ(warm.load(), 12);
    if (asleep) let_workers_sleep();
    const int code = test::run_in_forked_child(kChildSeconds, [&] {
      std::vector<int> ran(1000, 0);
      std::vector<int> threads;
      pool->run(1000, [&](int64_t task, int thread) {
        ++ran[static_cast<size_t>(task)];
        threads.push_back(thread);
      });
      for (int r : ran) {
        if (r != 1) return 1;
      }
      for (int t : threads) {
        if (t != 0) return 2;  // only the caller exists here
      }
      pool.reset();
      return 0;
    });
    EXPECT_EQ(code, 0) << (asleep ? "workers asleep" : "workers spinning")
                       << "; 1: a task did not run exactly once; 2: a task ran as a worker; 142: the child hung";
    // The parent's pool works as before.
    std::atomic<int> count{0};
    pool->run(64, [&](int64_t, int) { count.fetch_add(1); });
    EXPECT_EQ(count.load(), 64);
  }
}

DINOV3_SUITE_LABELS(ForkedModel, "unit");

// The tiny fixture on the cpu backend with two threads (a pool with a worker); null after a failure.
std::unique_ptr<Model> two_thread_model() {
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.threads = 2;
  Result<std::unique_ptr<Model>> loaded = Model::load(test::fixture("models/tiny"), lo);
  EXPECT_TRUE(loaded.ok()) << loaded.status().message();
  return loaded.ok() ? std::move(loaded).value() : nullptr;
}

// A random input of `images` images of the model's size.
Tensor random_input(const Model& model, int64_t images, uint32_t seed) {
  Tensor input({images, 3, model.config().data.height, model.config().data.width});
  input.data = test::random_normal(input.data.size(), seed);
  return input;
}

TEST(ForkedModel, ForwardGivesTheParentsBitsAndTheModelIsFreed) {
  std::unique_ptr<Model> model = two_thread_model();
  ASSERT_NE(model, nullptr);
  const Tensor input = random_input(*model, 2, 7);
  Result<ForwardOutput> parent = model->forward(input);
  ASSERT_TRUE(parent.ok()) << parent.status().message();
  let_workers_sleep();
  const int code = test::run_in_forked_child(kChildSeconds, [&] {
    Result<ForwardOutput> child = model->forward(input);
    if (!child.ok()) return 1;
    if (child->features.data != parent->features.data || child->pooled.data != parent->pooled.data) return 2;
    model.reset();
    return 0;
  });
  EXPECT_EQ(code, 0) << "1: the forward failed; 2: other values than the parent's; 142: the child hung";
  Result<ForwardOutput> again = model->forward(input);
  ASSERT_TRUE(again.ok()) << again.status().message();
  EXPECT_EQ(again->features.data, parent->features.data);
}

TEST(ForkedModel, AModelInUseByAnotherThreadAtTheForkIsAnErrorThereNotAWait) {
  // The other thread holds the model's lock when the process forks; in the child nothing ever lets it go.
  std::unique_ptr<Model> loaded = two_thread_model();
  ASSERT_NE(loaded, nullptr);
  Model& model = *loaded;
  const Tensor input = random_input(model, 1, 3);
  std::atomic<bool> inside{false}, go_on{false};
  ASSERT_TRUE(model
                  .set_stop_check([&] {  // holds the forward (and so the lock) until the test lets it go
                    inside = true;
                    while (!go_on) std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    return false;
                  })
                  .ok());
  Status busy_status;
  std::thread busy([&] { busy_status = model.forward(input).status(); });
  while (!inside) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const int code = test::run_in_forked_child(kChildSeconds, [&] {
    const Status s = model.forward(input).status();
    if (s.ok()) return 1;
    if (s.code() != ErrorCode::kUnsupported) return 2;
    if (s.message().find("another thread was inside this model when this process was forked") == std::string::npos) {
      return 3;
    }
    if (model.set_stop_check(nullptr).ok()) return 4;
    return 0;
  });
  go_on = true;
  busy.join();
  EXPECT_EQ(code, 0) << "1: it ran; 2: another error code; 3: another message; 4: set_stop_check; 142: the child hung";
  EXPECT_TRUE(busy_status.ok()) << busy_status.message();
  // In this process the lock is taken and let go as usual, by other threads too.
  ASSERT_TRUE(model.set_stop_check(nullptr).ok());
  std::thread other([&] { busy_status = model.forward(input).status(); });
  other.join();
  EXPECT_TRUE(busy_status.ok()) << busy_status.message();
}

DINOV3_SUITE_LABELS(ForkedImagePrefetcher, "unit");

TEST(ForkedImagePrefetcher, ItemsSayWhyAndItIsDestroyed) {
  std::vector<std::string> paths;
  for (int i = 0; i < 8; ++i) paths.push_back(test::fixture(i % 2 ? "images/rocket.jpg" : "images/chelsea.png"));
  PreprocessConfig pc;
  pc.height = pc.width = 64;
  auto prefetch = std::make_unique<ImagePrefetcher>(paths, 0, 4, 2, pc);
  ASSERT_TRUE(prefetch->take(0).ok);
  ASSERT_TRUE(prefetch->in_own_process());
  let_workers_sleep();  // images 1-4 decoded, the workers waiting for the window to move
  const int code = test::run_in_forked_child(kChildSeconds, [&] {
    if (prefetch->in_own_process()) return 1;
    for (size_t i : {size_t{1}, size_t{6}}) {  // one decoded before the fork, one never
      const ImagePrefetcher::Item item = prefetch->take(i);
      if (item.ok) return 2;
      if (item.reason.find("started in another process") == std::string::npos) return 3;
    }
    prefetch.reset();
    return 0;
  });
  EXPECT_EQ(code, 0) << "1: in_own_process() in the child; 2: an item handed out; 3: no reason; 142: the child hung";
  for (size_t i = 1; i < paths.size(); ++i) {
    const ImagePrefetcher::Item item = prefetch->take(i);
    EXPECT_TRUE(item.ok) << i << ": " << item.reason;
  }
}

}  // namespace
}  // namespace dinov3
