// dinov3 embed: a whole image collection to one float32 .npy (or .safetensors) plus an index of paths.
// Decoding and preprocessing run on worker threads ahead of the model; finished rows are kept in a
// resumable state so a killed run loses at most the batch in flight.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "cli_common.h"
#include "commands.h"
#include "dinov3/collection.h"
#include "dinov3/hub.h"
#include "dinov3/pipeline.h"
#include "embed_store.h"

namespace dinov3::cli {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct EmbedOptions {
  ModelOptions model;
  std::vector<std::string> inputs;
  std::string out;
  int batch_size = 8;
  std::string pool = "default";
  bool normalize = false;
  bool features = false;
  std::vector<int> layers;
  std::string format;  // npy or safetensors; default from the extension
  bool overwrite = false;
  bool resume = false;
  bool quiet = false;
  int workers = 1;
  bool exif_transpose = false;
  int64_t max_pixels = DecodeOptions{}.max_pixels;
  PreprocessOverrides preprocess;
  InputSize size;
};

std::string format_duration(double s) {
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof(buf), "%dh%02dm", static_cast<int>(s / 3600), static_cast<int>(s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof(buf), "%dm%02ds", static_cast<int>(s / 60), static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof(buf), "%.1fs", s);
  return buf;
}

// `kept_state` is set once the partial state exists, to say where it is if the run then fails.
Result<int> run_embed(const EmbedOptions& o, std::string* kept_state) {
  if (o.inputs.empty()) return make_error(ErrorCode::kInvalidArgument, "no inputs (files, folders or @list.txt)");
  if (o.batch_size < 1 || o.batch_size > 4096) return make_error(ErrorCode::kInvalidArgument, "--batch-size must be in [1, 4096]");
  if (o.workers < 1 || o.workers > 256) return make_error(ErrorCode::kInvalidArgument, "--workers must be in [1, 256]");
  if (o.features && !o.layers.empty()) return make_error(ErrorCode::kInvalidArgument, "give --features or --layers, not both");
  std::string format = o.format;
  if (format.empty()) format = fs::path(o.out).extension() == ".safetensors" ? "safetensors" : "npy";
  if (format != "npy" && format != "safetensors") return make_error(ErrorCode::kInvalidArgument, "--format must be npy or safetensors");
  DINOV3_ASSIGN_OR_RETURN(PoolMode pool, parse_pool(o.pool));
  DINOV3_RETURN_IF_ERROR(EmbedStore::check_output(o.out, o.resume, o.overwrite));  // before any work is done
  DINOV3_ASSIGN_OR_RETURN(std::vector<std::string> paths, expand_inputs(o.inputs));
  if (paths.empty()) return make_error(ErrorCode::kInvalidArgument, "the inputs hold no image files");

  DINOV3_ASSIGN_OR_RETURN(LoadedModel loaded, load_model(o.model, o.model.backend));
  Model& model = *loaded.model;
  const ModelConfig& c = model.config();
  // An input is never written over (--overwrite or not). Only an existing file can be one, so a new
  // output costs no look at the inputs.
  std::vector<std::string> kept;
  for (const std::string& file : {o.out, embed_index_path(o.out)}) {
    if (!file_exists(file)) continue;
    if (kept.empty()) {
      kept = paths;
      for (std::string& f : model_files(model.directory())) kept.push_back(std::move(f));
    }
    DINOV3_RETURN_IF_ERROR(check_not_written_over(file, kept, "an input"));
  }
  DINOV3_ASSIGN_OR_RETURN(const ModelConfig preprocess_model, with_preprocess_overrides(c, o.preprocess));
  DINOV3_ASSIGN_OR_RETURN(PreprocessConfig pc, preprocess_config_for_size(preprocess_model, o.size));
  DINOV3_RETURN_IF_ERROR(intermediate_block_indices(c, o.layers).status());  // before the output is started
  const int64_t T = c.tokens_for(pc.height, pc.width), D = c.embed_dim;
  Shape row_shape = {D};
  if (o.features) row_shape = {T, D};
  if (!o.layers.empty()) row_shape = {static_cast<int64_t>(o.layers.size()), T, D};
  const auto row_numel = static_cast<size_t>(shape_numel(row_shape));

  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<EmbedStore> store, EmbedStore::open(o.out, paths, row_shape, o.resume, o.overwrite));
  *kept_state = "the inputs handled so far are kept in " + EmbedStore::partial_dir(o.out) + " (--resume continues)";
  const size_t start = store->done().size();
  const bool progress = !o.quiet && ::isatty(STDERR_FILENO);
  describe_model_source(loaded);  // even with --quiet: an index built on random weights must not pass unnoticed
  if (!o.quiet) {
    std::fprintf(stderr, "embed: %zu inputs%s, batch %d, %s on %s\n", paths.size(),
                 start > 0 ? (", resuming after " + std::to_string(start)).c_str() : "", o.batch_size,
                 model.backend().name().c_str(), model.backend().device().c_str());
  }

  DecodeOptions dec;
  dec.exif_transpose = o.exif_transpose;
  dec.max_pixels = o.max_pixels;
  ImagePrefetcher prefetch(paths, start, static_cast<size_t>(o.batch_size) * 3, o.workers, pc, dec);
  ForwardOptions fo;
  fo.pool = pool;
  fo.intermediate_blocks = o.layers;
  const auto t_start = Clock::now();
  double model_seconds = 0;
  size_t embedded = 0, skipped = 0;
  const int64_t per_image = 3 * static_cast<int64_t>(pc.height) * pc.width;
  for (size_t i = start; i < paths.size();) {
    std::vector<DoneEntry> entries;
    Tensor batch({o.batch_size, 3, pc.height, pc.width});
    int64_t n = 0;
    for (; i < paths.size() && n < o.batch_size; ++i) {
      ImagePrefetcher::Item item = prefetch.take(i);
      if (!item.ok) {
        entries.push_back({paths[i], false, item.reason});
        ++skipped;
        if (!o.quiet) std::fprintf(stderr, "%sskipped: %s\n", progress ? "\r\033[K" : "", escape_line(item.reason).c_str());
        continue;
      }
      std::copy(item.chw.data.begin(), item.chw.data.end(), batch.data.begin() + n * per_image);
      entries.push_back({paths[i], true, ""});
      ++n;
    }
    std::vector<float> rows;
    if (n > 0) {
      batch.shape[0] = n;
      batch.data.resize(static_cast<size_t>(n * per_image));
      const auto t0 = Clock::now();
      DINOV3_ASSIGN_OR_RETURN(ForwardOutput out, model.forward(batch, fo));
      model_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      rows.resize(static_cast<size_t>(n) * row_numel);
      if (o.features) {
        rows = std::move(out.features.data);
      } else if (!o.layers.empty()) {
        const size_t block = static_cast<size_t>(T * D);
        for (int64_t b = 0; b < n; ++b)
          for (size_t l = 0; l < o.layers.size(); ++l)
            std::copy_n(out.intermediates[l].tokens.ptr() + b * static_cast<int64_t>(block), block,
                        rows.data() + (static_cast<size_t>(b) * o.layers.size() + l) * block);
      } else {
        rows = std::move(out.pooled.data);
      }
      // --normalize applies to each D-wide vector (every token of every layer for the token outputs).
      if (o.normalize) l2_normalize_rows(rows.data(), rows.size() / static_cast<size_t>(D), static_cast<size_t>(D));
    }
    DINOV3_RETURN_IF_ERROR(store->append(rows.data(), static_cast<size_t>(n), entries));
    embedded += static_cast<size_t>(n);
    if (progress) {
      const double el = std::chrono::duration<double>(Clock::now() - t_start).count();
      const double rate = static_cast<double>(i - start) / std::max(el, 1e-9);
      std::fprintf(stderr, "\r\033[K%zu/%zu  %.1f img/s  ETA %s", i, paths.size(), rate,
                   format_duration(static_cast<double>(paths.size() - i) / std::max(rate, 1e-9)).c_str());
    }
  }
  const double total = std::chrono::duration<double>(Clock::now() - t_start).count();
  DINOV3_RETURN_IF_ERROR(store->publish(format));
  kept_state->clear();
  if (!o.quiet) {
    if (progress) std::fprintf(stderr, "\r\033[K");
    size_t skipped_total = 0;
    for (const auto& e : store->done()) skipped_total += e.ok ? 0 : 1;
    std::fprintf(stderr, "embed: %zu rows in %s (%zu this run, %zu skipped in all) in %s\n", store->rows(), o.out.c_str(),
                 embedded, skipped_total, format_duration(total).c_str());
    for (const auto& e : store->done())
      if (!e.ok) std::fprintf(stderr, "  skipped: %s\n", escape_line(e.reason).c_str());
    if (embedded > 0) {
      std::fprintf(stderr, "embed: end to end %.2f img/s, model only %.2f img/s (%.0f%%)\n", embedded / total,
                   embedded / model_seconds, 100.0 * model_seconds / total);
    }
    std::fprintf(stderr, "embed: index %s\n", embed_index_path(o.out).c_str());
  }
  return 0;
}

}  // namespace

Command add_embed_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("embed", "Embed image files, folders or @lists into one .npy with an index of paths");
  auto opts = std::make_shared<EmbedOptions>();
  add_model_options(*cmd, &opts->model);
  cmd->add_option("inputs", opts->inputs, "image files, folders (searched recursively) or @list.txt")->required();
  cmd->add_option("-o,--output", opts->out, "output .npy (or .safetensors); the index goes beside it")->required();
  cmd->add_option("--batch-size", opts->batch_size, "images per forward")->capture_default_str();
  cmd->add_option("--pool", opts->pool, "pooled output: avg, token or default")->capture_default_str();
  cmd->add_flag("--normalize", opts->normalize, "L2-normalise each output vector");
  cmd->add_flag("--features", opts->features, "write all tokens [N, T, D] instead of pooled [N, D]");
  cmd->add_option("--layers", opts->layers, "write these blocks' tokens [N, L, T, D]")->delimiter(',');
  cmd->add_option("--format", opts->format, "npy or safetensors (default: from the file name)");
  cmd->add_flag("--overwrite", opts->overwrite, "replace an existing output (and any interrupted run)");
  cmd->add_flag("--resume", opts->resume, "continue an interrupted run with the same inputs");
  cmd->add_flag("--quiet,-q", opts->quiet, "no progress or summary");
  cmd->add_option("--workers", opts->workers, "decoding threads")->capture_default_str();
  add_decode_options(*cmd, &opts->exif_transpose, &opts->max_pixels, "skip");
  add_preprocess_options(*cmd, &opts->preprocess);
  add_size_options(*cmd, &opts->size);
  return {cmd, [opts]() -> Result<int> {
    std::string kept_state;
    Result<int> r = run_embed(*opts, &kept_state);
    if (r.ok() || kept_state.empty()) return r;
    return make_error(r.status().code(), r.status().message() + "; " + kept_state);
  }};
}

}  // namespace dinov3::cli
