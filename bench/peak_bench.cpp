// The machine's arithmetic peak per core, measured: register-only loops of AVX-512 float32 FMA
// (vfmadd231ps), bf16 dot products (vdpbf16ps) and int8 dot products (vpdpbusd), 24 independent
// accumulators each (enough to cover the latency of two ports), run on 1..N threads at once. Without
// AVX-512 the float32 figure comes from AVX2's vfmadd231ps on ymm (12 accumulators); AVX2 has no bf16 or
// int8 dot product, and the backend's AVX2 bf16 and int8 tiles do their products in float32 FMAs and int16
// multiply-adds. A forward's
// "floor" is its flop count over this figure times the threads it uses.
//
//   peak_bench [--threads N] [--seconds S] [--json FILE]
//
// GFLOP/s counts 2 flops per multiply-add: vfmadd231ps 32 per zmm (16 per ymm), vdpbf16ps 64, vpdpbusd 128 (int "ops").
// Prints one line per (kind, threads): the median per-core rate over the threads of 5 repetitions.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kAcc = 24;      // zmm8..zmm31
constexpr int kAccAvx2 = 12;  // ymm4..ymm15

// Each loop is written in assembly so the compiler can neither fold nor spill it: zmm0 and zmm1 are the
// operands (zero: throughput does not depend on the values, and zeros raise no subnormal assists), zmm8..31
// the independent accumulators.
#define DINOV3_ACC(X)                                                                                       \
  X("8") X("9") X("10") X("11") X("12") X("13") X("14") X("15") X("16") X("17") X("18") X("19") X("20") \
  X("21") X("22") X("23") X("24") X("25") X("26") X("27") X("28") X("29") X("30") X("31")
#define DINOV3_ZERO(r) "vpxord %%zmm" r ", %%zmm" r ", %%zmm" r "\n"
#define DINOV3_FMA(r) "vfmadd231ps %%zmm0, %%zmm1, %%zmm" r "\n"
#define DINOV3_BF16(r) "vdpbf16ps %%zmm0, %%zmm1, %%zmm" r "\n"
#define DINOV3_INT8(r) "vpdpbusd %%zmm0, %%zmm1, %%zmm" r "\n"
#define DINOV3_LOOP(OP)                                                                                     \
  __asm__ volatile("vpxord %%zmm0, %%zmm0, %%zmm0\n"                                                     \
                   "vpxord %%zmm1, %%zmm1, %%zmm1\n" DINOV3_ACC(DINOV3_ZERO) "1:\n" DINOV3_ACC(OP)          \
                   "dec %0\n"                                                                             \
                   "jnz 1b\n"                                                                             \
                   : "+r"(iters)                                                                          \
                   :                                                                                      \
                   : "cc", "xmm0", "xmm1", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",    \
                     "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",     \
                     "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31")

// The AVX2 float32 loop: ymm0 and ymm1 the operands, ymm4..15 the accumulators.
#define DINOV3_ACC_AVX2(X) X("4") X("5") X("6") X("7") X("8") X("9") X("10") X("11") X("12") X("13") X("14") X("15")
#define DINOV3_ZERO_AVX2(r) "vpxor %%ymm" r ", %%ymm" r ", %%ymm" r "\n"
#define DINOV3_FMA_AVX2(r) "vfmadd231ps %%ymm0, %%ymm1, %%ymm" r "\n"

// iters >= 1. Run only where the instruction exists (supported() below).
__attribute__((target("avx512f"))) void loop_fma(long iters) { DINOV3_LOOP(DINOV3_FMA); }
__attribute__((target("avx512f"))) void loop_bf16(long iters) { DINOV3_LOOP(DINOV3_BF16); }
__attribute__((target("avx512f"))) void loop_int8(long iters) { DINOV3_LOOP(DINOV3_INT8); }
__attribute__((target("avx2,fma"))) void loop_fma_avx2(long iters) {
  __asm__ volatile("vpxor %%ymm0, %%ymm0, %%ymm0\n"
                   "vpxor %%ymm1, %%ymm1, %%ymm1\n" DINOV3_ACC_AVX2(DINOV3_ZERO_AVX2) "1:\n"
                   DINOV3_ACC_AVX2(DINOV3_FMA_AVX2)
                   "dec %0\n"
                   "jnz 1b\n"
                   : "+r"(iters)
                   :
                   : "cc", "xmm0", "xmm1", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",
                     "xmm13", "xmm14", "xmm15");
}

struct Kind {
  const char* name;
  const char* feature;  // for __builtin_cpu_supports
  double flops_per_instruction;
  void (*loop)(long);
  int instructions = kAcc;  // per iteration of the loop
};

bool supported(const Kind& k) {
  __builtin_cpu_init();
  // AVX2's float32 loop stands in only where the AVX-512 one cannot run.
  if (std::strcmp(k.feature, "avx2") == 0) {
    return !__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  if (!__builtin_cpu_supports("avx512f")) return false;
  if (std::strcmp(k.feature, "avx512bf16") == 0) return __builtin_cpu_supports("avx512bf16");
  if (std::strcmp(k.feature, "avx512vnni") == 0) return __builtin_cpu_supports("avx512vnni");
  return true;
}

// Runs `loop` on `threads` threads started together for about `seconds`; per-thread GFLOP/s.
std::vector<double> run(const Kind& k, int threads, double seconds) {
  using clock = std::chrono::steady_clock;
  // Calibrate iterations on one thread so each thread's run lasts about `seconds`.
  long iters = 1 << 14;
  for (;;) {
    const auto t0 = clock::now();
    k.loop(iters);
    const double dt = std::chrono::duration<double>(clock::now() - t0).count();
    if (dt > 0.05) {
      iters = static_cast<long>(static_cast<double>(iters) * seconds / dt) + 1;
      break;
    }
    iters *= 4;
  }
  std::vector<double> rate(static_cast<size_t>(threads));
  std::atomic<int> ready{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      const auto t0 = clock::now();
      k.loop(iters);
      const double dt = std::chrono::duration<double>(clock::now() - t0).count();
      rate[static_cast<size_t>(t)] =
          static_cast<double>(iters) * k.instructions * k.flops_per_instruction / dt / 1e9;
    });
  }
  for (auto& th : pool) th.join();
  return rate;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  int max_threads = static_cast<int>(std::thread::hardware_concurrency());
  double seconds = 0.3;
  std::string json_path;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) {
      max_threads = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else if (a == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else {
      std::fprintf(stderr, "usage: peak_bench [--threads N] [--seconds S] [--json FILE]\n");
      return 2;
    }
  }
  if (max_threads < 1 || !(seconds > 0.0 && seconds < 60.0)) {
    std::fprintf(stderr, "peak_bench: --threads must be >= 1 and --seconds in (0, 60)\n");
    return 2;
  }
  const Kind kinds[] = {{"fp32", "avx512f", 32.0, loop_fma},
                        {"fp32", "avx2", 16.0, loop_fma_avx2, kAccAvx2},
                        {"bf16", "avx512bf16", 64.0, loop_bf16},
                        {"int8", "avx512vnni", 128.0, loop_int8}};
  // A kind is "not supported" only when none of its loops can run.
  auto runnable = [&](const char* name) {
    return std::any_of(std::begin(kinds), std::end(kinds),
                       [&](const Kind& k) { return std::strcmp(k.name, name) == 0 && supported(k); });
  };
  std::string json = "{";
  bool first = true;
  std::printf("kind  threads  GFLOP/s per core (median of 5; min-max)\n");
  for (const Kind& k : kinds) {
    if (!supported(k)) {
      const bool last_of_name =
          std::none_of(&k + 1, std::end(kinds), [&](const Kind& o) { return std::strcmp(o.name, k.name) == 0; });
      if (last_of_name && !runnable(k.name)) std::printf("%-5s  not supported by this CPU\n", k.name);
      continue;
    }
    std::string per_threads;
    for (int threads = 1; threads <= max_threads; threads = threads < max_threads ? std::min(threads * 2, max_threads) : threads + 1) {
      std::vector<double> reps;
      for (int r = 0; r < 5; ++r) reps.push_back(median(run(k, threads, seconds)));
      const double m = median(reps);
      std::printf("%-5s  %7d  %8.1f  (%.1f-%.1f)\n", k.name, threads, m, *std::min_element(reps.begin(), reps.end()),
                  *std::max_element(reps.begin(), reps.end()));
      char buf[96];
      std::snprintf(buf, sizeof buf, "%s\"%d\": %.1f", per_threads.empty() ? "" : ", ", threads, m);
      per_threads += buf;
    }
    json += std::string(first ? "" : ", ") + "\"" + k.name + "\": {" + per_threads + "}";
    first = false;
  }
  json += "}\n";
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (!f || std::fputs(json.c_str(), f) < 0 || std::fclose(f) != 0) {
      std::fprintf(stderr, "peak_bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
  }
  return 0;
}
