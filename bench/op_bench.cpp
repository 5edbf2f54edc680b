// Micro-benchmarks of the cpu backend's ops on the real ViT-S/16 @ 256 px shapes (261 tokens, dim 384,
// 6 heads of 64, MLP 1536), at batch 1 (261 rows) and batch 8 (2088 rows), plus one whole transformer
// block so 12 x block + embed estimates the model. GFLOP/s counts 2 flops per multiply-add.
//
//   dinov3_op_bench [--benchmark_filter=...] [--benchmark_repetitions=5]
//   DINOV3_CPU_ISA=avx2 dinov3_op_bench     # a lower instruction set
// Thread counts come from the benchmark argument "threads" (the backend's pool size).
#include <benchmark/benchmark.h>

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "dinov3/backend.h"

namespace dinov3 {
namespace {

constexpr int64_t kTokens = 261, kDim = 384, kHeads = 6, kHeadDim = 64, kHidden = 1536, kPrefix = 5;

std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// One backend per thread count and precision, created on first use and kept (its pool and scratch stay warm).
Backend& backend(int threads, Precision precision = Precision::kF32) {
  static std::map<std::pair<int, Precision>, std::unique_ptr<Backend>> backends;
  auto& be = backends[{threads, precision}];
  if (!be) {
    BackendOptions options;
    options.threads = threads;
    options.precision = precision;
    auto r = create_cpu_backend(options);
    if (!r.ok()) std::abort();
    be = std::move(r).value();
  }
  return *be;
}

std::unique_ptr<DeviceBuffer> buffer(Backend& be, const std::vector<float>& v) {
  auto b = be.allocate(v.size());
  if (!b.ok() || !be.upload(**b, 0, v.data(), v.size()).ok()) std::abort();
  return std::move(b).value();
}

std::unique_ptr<Weight> linear(Backend& be, int64_t out, int64_t in, uint32_t seed) {
  const auto w = random_vector(static_cast<size_t>(out * in), seed, 1.0f / std::sqrt(static_cast<float>(in)));
  const auto b = random_vector(static_cast<size_t>(out), seed + 1, 0.1f);
  return std::move(be.prepare_linear(w.data(), b.data(), out, in)).value();
}

std::unique_ptr<Weight> vec(Backend& be, int64_t n, uint32_t seed) {
  const auto v = random_vector(static_cast<size_t>(n), seed, 0.1f);
  return std::move(be.prepare_vector(v.data(), n)).value();
}

void set_counters(benchmark::State& state, Backend& be, double flops) {
  state.counters["GFLOP/s"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(be.device());
}

void check(const Status& s) {
  if (!s.ok()) std::abort();
}

// args: rows, out, in, threads, epilogue (0 none, 1 GELU, 2 LayerScale + residual)
// args: rows, out, in, threads, epi (0 store, 1 GELU, 2 LayerScale + residual), precision (0 fp32, 1 bf16,
// 2 int8). bf16/int8 include the activation conversion, as in a forward whose input has no bf16 copy.
constexpr Precision kPrecisions[] = {Precision::kF32, Precision::kBF16, Precision::kInt8};
void BM_linear(benchmark::State& state) {
  const int64_t rows = state.range(0), out = state.range(1), in = state.range(2);
  Backend& be = backend(static_cast<int>(state.range(3)), kPrecisions[state.range(5)]);
  auto w = linear(be, out, in, 1);
  auto gamma = vec(be, out, 2);
  auto x = buffer(be, random_vector(static_cast<size_t>(rows * in), 3));
  auto y = buffer(be, random_vector(static_cast<size_t>(rows * out), 4));
  LinearEpilogue e;
  if (state.range(4) == 1) e.activation = Activation::kGelu;
  if (state.range(4) == 2) e.residual_scale = gamma.get();
  for (auto _ : state) check(be.linear(*x, rows, *w, e, *y));
  set_counters(state, be, 2.0 * rows * out * in);
}

void linear_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"rows", "out", "in", "threads", "epi", "precision"});
  for (int precision : {0, 1, 2})
    for (int threads : {1, 2})
      for (int64_t rows : {kTokens, 8 * kTokens}) {
        b->Args({rows, 3 * kDim, kDim, threads, 0, precision});  // qkv
        b->Args({rows, kDim, kDim, threads, 2, precision});      // proj + LayerScale residual
        b->Args({rows, kHidden, kDim, threads, 1, precision});   // fc1 + GELU
        b->Args({rows, kDim, kHidden, threads, 2, precision});   // fc2 + LayerScale residual
      }
}
BENCHMARK(BM_linear)->Apply(linear_args)->UseRealTime()->Unit(benchmark::kMicrosecond);

// args: batch, tokens, threads, bf16 (0: float32 operands, 1: bf16). 261 tokens is 256 px; 1029, 2309 and
// 4101 are 512, 768 and 1024 px, where one head's K and V outgrow L2.
void BM_attention(benchmark::State& state) {
  const int64_t batch = state.range(0), tokens = state.range(1);
  Backend& be = backend(static_cast<int>(state.range(2)), state.range(3) ? Precision::kBF16 : Precision::kF32);
  auto qkv = buffer(be, random_vector(static_cast<size_t>(batch * tokens * 3 * kDim), 5));
  auto rope = buffer(be, random_vector(static_cast<size_t>((tokens - kPrefix) * 2 * kHeadDim), 6));
  auto out = buffer(be, std::vector<float>(static_cast<size_t>(batch * tokens * kDim)));
  for (auto _ : state) check(be.attention(*qkv, batch, tokens, kHeads, kHeadDim, kPrefix, *rope, *out));
  set_counters(state, be, 4.0 * batch * kHeads * tokens * tokens * kHeadDim);
}
BENCHMARK(BM_attention)->ArgNames({"batch", "tokens", "threads", "bf16"})
    ->Args({1, kTokens, 1, 0})->Args({1, kTokens, 2, 0})->Args({8, kTokens, 2, 0})
    ->ArgsProduct({{1}, {kTokens, 1029, 2309, 4101}, {1, 2}, {0, 1}})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// args: rows, threads
void BM_layer_norm(benchmark::State& state) {
  const int64_t rows = state.range(0);
  Backend& be = backend(static_cast<int>(state.range(1)));
  auto g = vec(be, kDim, 7), b = vec(be, kDim, 8);
  auto x = buffer(be, random_vector(static_cast<size_t>(rows * kDim), 9));
  auto y = buffer(be, std::vector<float>(static_cast<size_t>(rows * kDim)));
  for (auto _ : state) check(be.layer_norm(*x, rows, kDim, *g, *b, 1e-6f, *y));
  state.counters["GB/s"] = benchmark::Counter(2.0 * rows * kDim * sizeof(float) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(be.device());
}
BENCHMARK(BM_layer_norm)->ArgNames({"rows", "threads"})->Args({kTokens, 2})->Args({8 * kTokens, 2})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// args: batch, threads. Patch embedding of 256x256 RGB images (im2col + [384 x 768] GEMM).
void BM_embed(benchmark::State& state) {
  const int64_t batch = state.range(0);
  Backend& be = backend(static_cast<int>(state.range(1)));
  auto w = linear(be, kDim, 3 * 16 * 16, 10);
  auto prefix = vec(be, kPrefix * kDim, 11);
  auto image = buffer(be, random_vector(static_cast<size_t>(batch * 3 * 256 * 256), 12));
  auto tokens = buffer(be, std::vector<float>(static_cast<size_t>(batch * kTokens * kDim)));
  for (auto _ : state) check(be.embed(*image, batch, 3, 256, 256, 16, *w, *prefix, kPrefix, kDim, *tokens));
  set_counters(state, be, 2.0 * batch * 256 * kDim * 768);
}
BENCHMARK(BM_embed)->ArgNames({"batch", "threads"})->Args({1, 2})->Args({8, 2})
    ->UseRealTime()->Unit(benchmark::kMicrosecond);

// One ViT-S transformer block exactly as the model calls it. args: batch, threads.
// The model per image ~ 12_blocks_per_image + embed / batch.
void BM_block(benchmark::State& state) {
  const int64_t batch = state.range(0), rows = batch * kTokens;
  Backend& be = backend(static_cast<int>(state.range(1)));
  auto n1g = vec(be, kDim, 20), n1b = vec(be, kDim, 21), n2g = vec(be, kDim, 22), n2b = vec(be, kDim, 23);
  auto qkv_w = linear(be, 3 * kDim, kDim, 24), proj_w = linear(be, kDim, kDim, 25);
  auto fc1_w = linear(be, kHidden, kDim, 26), fc2_w = linear(be, kDim, kHidden, 27);
  auto g1 = vec(be, kDim, 28), g2 = vec(be, kDim, 29);
  auto x = buffer(be, random_vector(static_cast<size_t>(rows * kDim), 30));
  auto h = buffer(be, std::vector<float>(static_cast<size_t>(rows * kDim)));
  auto qkv = buffer(be, std::vector<float>(static_cast<size_t>(rows * 3 * kDim)));
  auto a = buffer(be, std::vector<float>(static_cast<size_t>(rows * kDim)));
  auto m = buffer(be, std::vector<float>(static_cast<size_t>(rows * kHidden)));
  auto rope = buffer(be, random_vector(static_cast<size_t>((kTokens - kPrefix) * 2 * kHeadDim), 31));
  LinearEpilogue none, gelu, res1, res2;
  gelu.activation = Activation::kGelu;
  res1.residual_scale = g1.get();
  res2.residual_scale = g2.get();
  for (auto _ : state) {
    check(be.layer_norm(*x, rows, kDim, *n1g, *n1b, 1e-6f, *h));
    check(be.linear(*h, rows, *qkv_w, none, *qkv));
    check(be.attention(*qkv, batch, kTokens, kHeads, kHeadDim, kPrefix, *rope, *a));
    check(be.linear(*a, rows, *proj_w, res1, *x));
    check(be.layer_norm(*x, rows, kDim, *n2g, *n2b, 1e-6f, *h));
    check(be.linear(*h, rows, *fc1_w, gelu, *m));
    check(be.linear(*m, rows, *fc2_w, res2, *x));
  }
  const double gemm = 2.0 * rows * kDim * (3 * kDim + kDim + 2 * kHidden);
  const double attn = 4.0 * batch * kHeads * kTokens * kTokens * kHeadDim;
  set_counters(state, be, gemm + attn);
  // Seconds per image for 12 such blocks (the model minus embed and the final norm), printed as time.
  state.counters["12_blocks_per_image"] =
      benchmark::Counter(static_cast<double>(batch) / 12.0, benchmark::Counter::kIsIterationInvariantRate |
                                                                benchmark::Counter::kInvert);
}
BENCHMARK(BM_block)->ArgNames({"batch", "threads"})->Args({1, 1})->Args({1, 2})->Args({8, 2})
    ->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace dinov3

BENCHMARK_MAIN();
