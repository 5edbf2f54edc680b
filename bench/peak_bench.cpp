// The machine's arithmetic peak per core, measured: register-only loops of AVX-512 float32 FMA
// (vfmadd231ps), bf16 dot products (vdpbf16ps) and int8 dot products (vpdpbusd), 24 independent
// accumulators each (enough to cover the latency of two ports), run on 1..N threads at once. A forward's
// "floor" is its flop count over this figure times the threads it uses.
//
//   peak_bench [--threads N] [--seconds S] [--json FILE]
//
// GFLOP/s counts 2 flops per multiply-add: vfmadd231ps 32 per zmm, vdpbf16ps 64, vpdpbusd 128 (int "ops").
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

constexpr int kAcc = 24;  // zmm8..zmm31

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

// iters >= 1. Run only where the instruction exists (supported() below).
__attribute__((target("avx512f"))) void loop_fma(long iters) { DINOV3_LOOP(DINOV3_FMA); }
__attribute__((target("avx512f"))) void loop_bf16(long iters) { DINOV3_LOOP(DINOV3_BF16); }
__attribute__((target("avx512f"))) void loop_int8(long iters) { DINOV3_LOOP(DINOV3_INT8); }

struct Kind {
  const char* name;
  const char* feature;  // for __builtin_cpu_supports
  double flops_per_instruction;
  void (*loop)(long);
};

bool supported(const Kind& k) {
  __builtin_cpu_init();
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
          static_cast<double>(iters) * kAcc * k.flops_per_instruction / dt / 1e9;
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
                        {"bf16", "avx512bf16", 64.0, loop_bf16},
                        {"int8", "avx512vnni", 128.0, loop_int8}};
  std::string json = "{";
  bool first = true;
  std::printf("kind  threads  GFLOP/s per core (median of 5; min-max)\n");
  for (const Kind& k : kinds) {
    if (!supported(k)) {
      std::printf("%-5s  not supported by this CPU\n", k.name);
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
