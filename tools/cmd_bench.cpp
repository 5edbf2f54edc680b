// dinov3 bench: latency statistics at batch 1 and throughput per batch size, as a report.
#include <chrono>
#include <random>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/metrics.h"
#include "report.h"

namespace dinov3::cli {

namespace {

struct BenchOptions {
  ModelOptions model;
  int iterations = 20;
  int warmup = 5;
  std::vector<int> batch_sizes = {1, 2, 4, 8};
  int size = 0;  // 0: the model's input size
  std::string output_dir = "output";
  bool profile = false;  // time every op of the batch-1 runs
};

// Timed forwards of one batch size; the input is fixed random data in the normalised pixel range.
// profile: emptied before the first timed run, so it holds the timed runs' ops.
Result<std::vector<double>> time_batch(Model& model, int64_t batch, int64_t size, int warmup, int iterations,
                                       OpProfile* profile = nullptr) {
  const ModelConfig& c = model.config();
  Tensor input({batch, c.in_chans, size, size});
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> dist(-2.0f, 2.0f);
  for (float& v : input.data) v = dist(rng);
  std::vector<double> ms;
  for (int i = 0; i < warmup + iterations; ++i) {
    if (i == warmup && profile != nullptr) profile->reset();
    const auto t0 = std::chrono::steady_clock::now();
    Result<ForwardOutput> out = model.forward(input);
    if (!out.ok()) return out.status();
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i >= warmup) ms.push_back(t);
  }
  return ms;
}

// The op profile of `runs` forwards (a table in the log, per forward) against their mean latency.
nlohmann::ordered_json report_profile(Report& r, const std::vector<OpStat>& ops, int runs, double mean_ms) {
  char buf[256];
  r.line("ops at batch 1, per forward (mean of " + std::to_string(runs) + " runs):");
  std::snprintf(buf, sizeof(buf), "  %-44s %6s %9s %7s %9s", "op", "calls", "ms", "share", "GFLOP/s");
  r.line(buf);
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  double total_ms = 0;
  for (const OpStat& op : ops) {
    const double ms = 1e3 * op.seconds / runs, calls = static_cast<double>(op.calls) / runs;
    const double gflops = op.seconds > 0 ? op.flops / op.seconds * 1e-9 : 0.0;
    total_ms += ms;
    std::snprintf(buf, sizeof(buf), "  %-44s %6.4g %9.3f %6.1f%% %9s", op.op.c_str(), calls, ms, 100.0 * ms / mean_ms,
                  op.flops > 0 ? std::to_string(static_cast<int64_t>(gflops + 0.5)).c_str() : "-");
    r.line(buf);
    rows.push_back({{"op", op.op}, {"calls_per_forward", calls}, {"ms_per_forward", ms},
                    {"share_of_forward", ms / mean_ms}, {"gflop_per_forward", op.flops / runs * 1e-9},
                    {"gflop_per_s", gflops}});
  }
  std::snprintf(buf, sizeof(buf), "  %-44s %6s %9.3f %6.1f%% of the forward's mean %.3f ms", "all ops", "", total_ms,
                100.0 * total_ms / mean_ms, mean_ms);
  r.line(buf);
  return {{"runs", runs}, {"ms_in_ops_per_forward", total_ms}, {"ops", rows}};
}

nlohmann::ordered_json stats_json(const LatencyStats& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"stddev", s.stddev}, {"min", s.min}, {"max", s.max},
          {"p50", s.p50},     {"p90", s.p90},   {"p99", s.p99}};
}

Result<int> run_bench(const BenchOptions& o) {
  for (int b : o.batch_sizes)
    if (b < 1 || b > 4096) return make_error(ErrorCode::kInvalidArgument, "batch size " + std::to_string(b) + " is out of range");
  DINOV3_RETURN_IF_ERROR(Report::check_replaceable(o.output_dir, "bench"));  // before any work
  const std::shared_ptr<OpProfile> profile = o.profile ? std::make_shared<OpProfile>() : nullptr;
  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.model, o.model.backend, profile));
  describe_model_source(loaded);
  Model& model = *loaded.model;
  const ModelConfig& c = model.config();
  const int64_t size = o.size > 0 ? o.size : c.data.height;
  if (size % c.patch_size != 0) {
    return make_error(ErrorCode::kInvalidArgument, "--size " + std::to_string(size) + " is not a multiple of the patch size " +
                                                       std::to_string(c.patch_size));
  }
  const double gflop = forward_flops(c, size, size) * 1e-9;

  Report r("bench");
  auto& j = r.json();
  j["model"] = model_json(loaded);
  j["context"] = run_context(model);
  j["size"] = size;
  j["gflop_per_image"] = gflop;
  j["iterations"] = o.iterations;
  j["warmup"] = o.warmup;
  r.line("model:    " + c.architecture + " at " + std::to_string(size) + "x" + std::to_string(size) + " (" +
         std::to_string(gflop).substr(0, 6) + " GFLOP/image)");
  r.line("backend:  " + model.backend().name() + ", " + precision_label(loaded) + ", " +
         std::to_string(model.backend().threads()) + " thread(s) on " + model.backend().device());
  r.backend_notes(model.backend());
  r.line("build:    " + j["context"]["build"]["commit"].get<std::string>() + ", " + j["context"]["date"].get<std::string>());

  DINOV3_ASSIGN_OR_RETURN(std::vector<double> ms1, time_batch(model, 1, size, o.warmup, o.iterations, profile.get()));
  const std::vector<OpStat> ops = profile ? profile->stats() : std::vector<OpStat>{};
  DINOV3_ASSIGN_OR_RETURN(const LatencyStats lat, summarize_latencies(ms1));
  j["latency_ms"] = stats_json(lat);
  char buf[256];
  std::snprintf(buf, sizeof(buf), "batch 1 latency over %d runs: mean %.2f, stddev %.2f, min %.2f, max %.2f, p50 %.2f, p90 %.2f, p99 %.2f ms",
                o.iterations, lat.mean, lat.stddev, lat.min, lat.max, lat.p50, lat.p90, lat.p99);
  r.line(buf);
  if (profile) j["op_profile"] = report_profile(r, ops, o.iterations, lat.mean);
  r.line("batch   images/s   ms/batch (mean)   ms/batch (p50)   GFLOP/s");
  nlohmann::ordered_json rows = nlohmann::ordered_json::array();
  for (int b : o.batch_sizes) {
    std::vector<double> ms = ms1;
    if (b != 1) {
      DINOV3_ASSIGN_OR_RETURN(ms, time_batch(model, b, size, o.warmup, o.iterations));
    }
    DINOV3_ASSIGN_OR_RETURN(const LatencyStats s, summarize_latencies(ms));
    const double ips = 1000.0 * b / s.mean;
    std::snprintf(buf, sizeof(buf), "%5d   %8.2f   %15.2f   %14.2f   %7.1f", b, ips, s.mean, s.p50, ips * gflop);
    r.line(buf);
    rows.push_back({{"batch", b}, {"images_per_s", ips}, {"gflop_per_s", ips * gflop}, {"ms_per_batch", stats_json(s)}});
  }
  j["throughput"] = rows;
  DINOV3_RETURN_IF_ERROR(r.write(o.output_dir));
  return 0;
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Latency statistics and throughput per batch size");
  auto opts = std::make_shared<BenchOptions>();
  add_model_options(*cmd, &opts->model);
  cmd->add_option("--iterations,-n", opts->iterations, "timed runs per batch size")->capture_default_str()->check(CLI::Range(1, kMaxRuns));
  cmd->add_option("--warmup", opts->warmup, "untimed runs first")->capture_default_str()->check(CLI::Range(0, kMaxRuns));
  cmd->add_option("--batch-sizes", opts->batch_sizes, "batch sizes for throughput")->delimiter(',')->capture_default_str();
  cmd->add_option("--size", opts->size, "square input size (default: the model's)")->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--output-dir", opts->output_dir, "where bench.json and bench.log go")->capture_default_str();
  cmd->add_flag("--profile", opts->profile,
                "time every backend op of the batch-1 runs: ms per forward, share and GFLOP/s per op and shape");
  return {cmd, [opts]() { return run_bench(*opts); }};
}

}  // namespace dinov3::cli
