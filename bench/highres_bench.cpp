// Patch features at high resolution: one photo preprocessed at --size S (256, 512, 768, 1024 by default)
// through the cpu backend, per precision. Prints a table of ms per image, GFLOP/s (forward_flops) and its
// share of the machine's FMA peak, the GFLOP/s ratio to the smallest size, and peak resident memory.
//
// GFLOP per CPU-second (process CPU time of all threads, against one core's peak) is the steadier figure
// when other work shares the cores: time a process waits for a core does not count.
//
// Each (round, precision, size) runs in a child process of its own, so its peak RSS (getrusage) is its
// own, and rounds repeat the whole sweep: a shared machine drifts between fast and slow stretches, so
// every figure is the median over rounds with its range, and the ratios are taken within a round before
// the median; the best single run of each size (the least disturbed one) is shown beside them. The last
// column is what one layer's [heads, T, T] float32 scores would take if a backend materialised them: peak
// RSS staying far below it shows that none does.
//
//   highres_bench [--model DIR] [--image PATH] [--sizes 256,512,768,1024] [--precisions fp32,bf16]
//                 [--rounds 3] [--runs 5] [--warmup 2] [--threads 0]
// Peak per core: PEAK_GFLOPS_FP32 / PEAK_GFLOPS_BF16 (defaults 287 / 528, ../shared/anchors/README.md).
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dinov3/metrics.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "util/cpu_info.h"

namespace {

using namespace dinov3;

struct Options {
  std::string model = DINOV3_SOURCE_DIR "/../shared/fixtures/models/vits16";
  std::string image = DINOV3_SOURCE_DIR "/assets/images/rocket.jpg";
  std::vector<int> sizes = {256, 512, 768, 1024};
  std::vector<std::string> precisions = {"fp32", "bf16"};
  int rounds = 3, runs = 5, warmup = 2, threads = 0;
};

// What a child reports back through its pipe.
struct Sample {
  double ms_p50 = 0, ms_min = 0, ms_max = 0;
  double cpu_ms = 0;  // process CPU time per forward (all threads), mean over the timed runs
  long peak_rss_kb = 0;
  int threads = 0;
  char error[200] = {};
};

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// NaN where a value is not finite (summarize_latencies refuses it), so the table shows it rather than a number.
double median(std::vector<double> v) {
  const Result<LatencyStats> s = summarize_latencies(std::move(v));
  return s.ok() ? s->p50 : std::numeric_limits<double>::quiet_NaN();
}

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

Sample measure(const Options& o, const std::string& precision, int size) {
  Sample s;
  auto fail = [&s](const std::string& what) {
    std::snprintf(s.error, sizeof(s.error), "%s", what.c_str());
    return s;
  };
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.threads = o.threads;
  if (!precision_from_name(precision, &lo.backend_options.precision)) return fail("unknown precision " + precision);
  Result<std::unique_ptr<Model>> model = Model::load(o.model, lo);
  if (!model.ok()) return fail(model.status().message());
  Result<Tensor> input = load_image_batch({o.image}, (*model)->config(), InputSize{size, 0});
  if (!input.ok()) return fail(input.status().message());
  std::vector<double> ms;
  double cpu0 = 0;
  for (int i = 0; i < o.warmup + o.runs; ++i) {
    if (i == o.warmup) cpu0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    Result<ForwardOutput> out = (*model)->forward(*input);
    if (!out.ok()) return fail(out.status().message());
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= o.warmup) ms.push_back(t);
  }
  s.cpu_ms = (cpu_seconds() - cpu0) * 1e3 / o.runs;
  const Result<LatencyStats> latencies = summarize_latencies(ms);
  if (!latencies.ok()) return fail(latencies.status().message());
  const LatencyStats& stats = *latencies;
  s.ms_p50 = stats.p50;
  s.ms_min = stats.min;
  s.ms_max = stats.max;
  s.threads = (*model)->backend().threads();
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  s.peak_rss_kb = usage.ru_maxrss;
  return s;
}

Sample measure_in_child(const Options& o, const std::string& precision, int size) {
  std::fflush(stdout);
  int fds[2];
  Sample s;
  if (pipe(fds) != 0) {
    std::snprintf(s.error, sizeof(s.error), "pipe failed");
    return s;
  }
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const Sample r = measure(o, precision, size);
    const ssize_t n = write(fds[1], &r, sizeof(r));
    _exit(n == static_cast<ssize_t>(sizeof(r)) ? 0 : 1);
  }
  close(fds[1]);
  const ssize_t n = pid > 0 ? read(fds[0], &s, sizeof(s)) : -1;
  close(fds[0]);
  if (pid > 0) waitpid(pid, nullptr, 0);
  if (n != static_cast<ssize_t>(sizeof(s))) std::snprintf(s.error, sizeof(s.error), "the measuring process failed");
  return s;
}

double peak_per_core(const std::string& precision) {
  const char* env = std::getenv(precision == "bf16" ? "PEAK_GFLOPS_BF16" : "PEAK_GFLOPS_FP32");
  if (env != nullptr && *env) return std::atof(env);
  return precision == "bf16" ? 528.0 : 287.0;
}

int run(Options o) {
  LoadOptions reference;
  reference.backend = "reference";
  Result<std::unique_ptr<Model>> probe = Model::load(o.model, reference);
  if (!probe.ok()) {
    std::fprintf(stderr, "highres_bench: %s\n", probe.status().message().c_str());
    return 1;
  }
  const ModelConfig config = (*probe)->config();
  probe->reset();
  // The sizes the model actually gets (--size S is rounded to the patch grid).
  for (int& size : o.sizes) size = round_to_patch(size, static_cast<int>(config.patch_size));

  // samples[precision][size] = one Sample per round
  std::map<std::string, std::map<int, std::vector<Sample>>> samples;
  for (int r = 0; r < o.rounds; ++r) {
    for (const auto& p : o.precisions) {
      for (int size : o.sizes) {
        const Sample s = measure_in_child(o, p, size);
        if (s.error[0] != '\0') {
          std::fprintf(stderr, "highres_bench: %s at %d: %s\n", p.c_str(), size, s.error);
          return 1;
        }
        std::fprintf(stderr, "round %d/%d  %s %4d: %9.1f ms (runs %.1f-%.1f), peak RSS %ld MB\n", r + 1, o.rounds,
                     p.c_str(), size, s.ms_p50, s.ms_min, s.ms_max, s.peak_rss_kb / 1024);
        samples[p][size].push_back(s);
      }
    }
  }

  const int threads = samples.begin()->second.begin()->second.front().threads;
  std::string cpu = cpu_brand_string();
  cpu.erase(cpu.find_last_not_of(' ') + 1);
  std::printf("%s, %d thread(s), %s, %d round(s) x %d runs (+%d warm-up), photo %s\n", cpu.c_str(),
              threads, config.architecture.c_str(), o.rounds, o.runs, o.warmup, o.image.c_str());
  std::printf("\n| precision | size | tokens | GFLOP | ms: median of rounds (range) | GFLOP/s | of peak |"
              " vs %d: per round (range) | best run: GFLOP/s (vs %d) | GFLOP per CPU-s (vs %d) | peak RSS |"
              " [heads,T,T] scores |\n",
              o.sizes.front(), o.sizes.front(), o.sizes.front());
  std::printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& p : o.precisions) {
    const double peak = peak_per_core(p) * threads;
    const double gflop0 = forward_flops(config, o.sizes.front(), o.sizes.front()) * 1e-9;
    double best0 = 0;
    for (const Sample& s0 : samples[p][o.sizes.front()]) best0 = std::max(best0, gflop0 / s0.ms_min * 1e3);
    for (int size : o.sizes) {
      const std::vector<Sample>& v = samples[p][size];
      const std::vector<Sample>& v0 = samples[p][o.sizes.front()];
      const double gflop = forward_flops(config, size, size) * 1e-9;
      std::vector<double> ms, ratio, cpu_rate, cpu_ratio;
      double best = 0;
      long rss = 0;
      for (size_t r = 0; r < v.size(); ++r) {
        ms.push_back(v[r].ms_p50);
        // Ratios within the round: (gflop / ms) / (gflop0 / ms0), and the same per CPU second.
        ratio.push_back(gflop / v[r].ms_p50 / (gflop0 / v0[r].ms_p50));
        cpu_rate.push_back(gflop / v[r].cpu_ms * 1e3);
        cpu_ratio.push_back(gflop / v[r].cpu_ms / (gflop0 / v0[r].cpu_ms));
        best = std::max(best, gflop / v[r].ms_min * 1e3);
        rss = std::max(rss, v[r].peak_rss_kb);
      }
      const double ms50 = median(ms), rate = gflop / ms50 * 1e3;
      const int64_t T = config.tokens_for(size, size);
      const double scores_mb = static_cast<double>(config.num_heads) * static_cast<double>(T * T) * 4.0 / 1048576.0;
      std::printf("| %s | %d | %lld | %.1f | %.1f (%.1f-%.1f) | %.0f | %.0f%% | %.2f (%.2f-%.2f) | %.0f (%.2f) |"
                  " %.0f (%.2f) | %ld MB | %.0f MB |\n",
                  p.c_str(), size, static_cast<long long>(T), gflop, ms50, *std::min_element(ms.begin(), ms.end()),
                  *std::max_element(ms.begin(), ms.end()), rate, 100.0 * rate / peak, median(ratio),
                  *std::min_element(ratio.begin(), ratio.end()), *std::max_element(ratio.begin(), ratio.end()), best,
                  best / best0, median(cpu_rate), median(cpu_ratio), rss / 1024, scores_mb);
    }
  }
  std::printf("\nPeak: %.0f GFLOP/s per core fp32 FMA, %.0f bf16 dot products (x %d threads).\n", peak_per_core("fp32"),
              peak_per_core("bf16"), threads);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "highres_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--model") o.model = value();
    else if (a == "--image") o.image = value();
    else if (a == "--sizes") {
      o.sizes.clear();
      for (const auto& s : split(value())) o.sizes.push_back(std::atoi(s.c_str()));
    } else if (a == "--precisions") o.precisions = split(value());
    else if (a == "--rounds") o.rounds = std::atoi(value().c_str());
    else if (a == "--runs") o.runs = std::atoi(value().c_str());
    else if (a == "--warmup") o.warmup = std::atoi(value().c_str());
    else if (a == "--threads") o.threads = std::atoi(value().c_str());
    else {
      std::fprintf(stderr, "usage: highres_bench [--model DIR] [--image PATH] [--sizes 256,512,768,1024] "
                           "[--precisions fp32,bf16] [--rounds 3] [--runs 5] [--warmup 2] [--threads 0]\n");
      return 2;
    }
  }
  if (o.sizes.empty() || o.precisions.empty() || o.rounds < 1 || o.runs < 1 || o.warmup < 0 ||
      std::any_of(o.sizes.begin(), o.sizes.end(), [](int s) { return s <= 0; })) {
    std::fprintf(stderr, "highres_bench: need sizes > 0, precisions, --rounds >= 1, --runs >= 1, --warmup >= 0\n");
    return 2;
  }
  return run(o);
}
