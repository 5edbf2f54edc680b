#include "dinov3/pipeline.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "util/api_guard.h"
#include "util/fork_epoch.h"

namespace dinov3 {

Result<PreprocessConfig> preprocess_config_for(const ModelConfig& config, int size) {
  const ScopedDefaultFloatEnv float_env;
  const DataConfig& d = config.data;
  PreprocessConfig p;
  if (config.patch_size < 1) {  // parse_model_config refuses it; a ModelConfig built in code may hold it
    return make_error(ErrorCode::kInvalidArgument, "patch size " + std::to_string(config.patch_size) + " is not positive");
  }
  if (d.height < 1 || d.width < 1 || d.height > kMaxInputSide || d.width > kMaxInputSide) {
    return make_error(ErrorCode::kInvalidArgument, "input size " + std::to_string(d.height) + "x" +
                                                       std::to_string(d.width) + " is not in [1, " +
                                                       std::to_string(kMaxInputSide) + "]");
  }
  if (!parse_interpolation(d.interpolation, &p.interpolation)) {
    return make_error(ErrorCode::kUnsupported, "interpolation '" + d.interpolation +
                                                   "' is not supported (bicubic or bilinear)");
  }
  if (!parse_crop_mode(d.crop_mode, &p.crop_mode)) {
    return make_error(ErrorCode::kUnsupported, "crop_mode '" + d.crop_mode +
                                                   "' is not supported (center, squash or border)");
  }
  if (d.channels != 3) {
    return make_error(ErrorCode::kUnsupported, "images give 3 channels, the model takes " + std::to_string(d.channels));
  }
  p.height = static_cast<int>(size > 0 ? size : d.height);
  p.width = static_cast<int>(size > 0 ? size : d.width);
  if (p.height % config.patch_size != 0 || p.width % config.patch_size != 0) {
    return make_error(ErrorCode::kInvalidArgument, "input size " + std::to_string(p.height) + "x" +
                                                       std::to_string(p.width) + " is not a multiple of the patch size " +
                                                       std::to_string(config.patch_size));
  }
  p.crop_pct = d.crop_pct;
  p.mean = d.mean;
  p.std = d.std;
  p.rescale_factor = d.rescale_factor;
  p.normalize = d.normalize;
  DINOV3_RETURN_IF_ERROR(check_preprocess_config(p));
  return p;
}

Result<Tensor> load_image_batch(const std::vector<std::string>& paths, const PreprocessConfig& config,
                                const DecodeOptions& options) {
  if (paths.empty()) return make_error(ErrorCode::kInvalidArgument, "no images given");
  return guard_api_call("loading images", [&]() -> Result<Tensor> {
    const int64_t per_image = 3 * static_cast<int64_t>(config.height) * config.width;
    Tensor batch({static_cast<int64_t>(paths.size()), 3, config.height, config.width});
    for (size_t i = 0; i < paths.size(); ++i) {
      DINOV3_ASSIGN_OR_RETURN(Tensor one, preprocess_image_file(paths[i], config, options));
      std::copy(one.data.begin(), one.data.end(), batch.data.begin() + static_cast<int64_t>(i) * per_image);
    }
    return batch;
  });
}

void l2_normalize_rows(float* data, size_t rows, size_t width) {
  const ScopedDefaultFloatEnv float_env;
  for (size_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (size_t i = 0; i < width; ++i) ss += static_cast<double>(data[r * width + i]) * data[r * width + i];
    const double inv = ss > 0 ? 1.0 / std::sqrt(ss) : 0.0;
    for (size_t i = 0; i < width; ++i) data[r * width + i] = static_cast<float>(data[r * width + i] * inv);
  }
}

struct ImagePrefetcher::State {
  State(std::vector<std::string> p, size_t first, size_t window, const PreprocessConfig& c, const DecodeOptions& o)
      : paths(std::move(p)), next(first), consume(first), window(std::max<size_t>(window, 1)), config(c), options(o) {}
  void run();

  const std::vector<std::string> paths;
  size_t next, consume, window;  // next to decode, next to be taken, how far ahead of it to decode
  const PreprocessConfig config;
  const DecodeOptions options;
  std::mutex mu;
  std::condition_variable cv;
  std::map<size_t, Item> ready;
  bool stop = false;
  std::vector<std::thread> threads;
  const uint64_t epoch = fork_epoch();  // the process whose threads these are (util/fork_epoch.h)
};

ImagePrefetcher::ImagePrefetcher(std::vector<std::string> paths, size_t first, size_t window, int workers,
                                 const PreprocessConfig& config, const DecodeOptions& options)
    : state_(std::make_unique<State>(std::move(paths), first, window, config, options)) {
  State* s = state_.get();
  for (int i = 0; i < std::max(workers, 1); ++i) s->threads.emplace_back([s] { s->run(); });
}

ImagePrefetcher::~ImagePrefetcher() {
  if (!in_own_process()) {  // forked: no workers to stop or join, and the lock may be held forever
    (void)state_.release();
    return;
  }
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  for (auto& t : state_->threads) t.join();
}

const std::vector<std::string>& ImagePrefetcher::paths() const { return state_->paths; }

bool ImagePrefetcher::in_own_process() const { return fork_epoch() == state_->epoch; }

ImagePrefetcher::Item ImagePrefetcher::take(size_t index) {
  State& s = *state_;
  if (!in_own_process()) {  // checked before the lock, which a thread the fork did not copy may hold
    Item none;
    none.reason = "image " + std::to_string(index) +
                  ": not decoded: the image prefetcher was started in another process, and a process forked "
                  "from it has none of its decoding threads (start a new one in this process)";
    return none;
  }
  std::unique_lock<std::mutex> lock(s.mu);
  // An index no worker will ever decode would be waited for forever: it is an item with the reason.
  if (index >= s.paths.size() || index < s.consume) {
    Item none;
    none.reason = "image " + std::to_string(index) + ": " +
                  (index >= s.paths.size() ? "past the last of the " + std::to_string(s.paths.size()) + " paths"
                                           : "already taken, or before the first (each index is taken once, in "
                                             "increasing order)");
    return none;
  }
  if (index > s.consume) {  // skipping ahead: the paths in between are dropped, undecoded where not yet begun
    s.consume = index;
    s.next = std::max(s.next, index);
    s.cv.notify_all();
  }
  s.cv.wait(lock, [&] { return s.ready.count(index) > 0; });
  Item item = std::move(s.ready[index]);
  s.ready.erase(s.ready.begin(), s.ready.upper_bound(index));  // and any skipped one decoded meanwhile
  s.consume = index + 1;
  s.cv.notify_all();
  return item;
}

void ImagePrefetcher::State::run() {
  for (;;) {
    size_t index;
    {
      std::unique_lock<std::mutex> lock(mu);
      // next >= consume always, so the difference cannot wrap (consume + window could, for a huge window).
      cv.wait(lock, [&] { return stop || (next < paths.size() && next - consume < window); });
      if (stop) return;
      index = next++;
    }
    Item item;
    Result<Tensor> t = preprocess_image_file(paths[index], config, options);
    if (t.ok()) {
      item.ok = true;
      item.chw = std::move(t).value();
    } else {
      item.reason = t.status().message();
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      ready[index] = std::move(item);
    }
    cv.notify_all();
  }
}

}  // namespace dinov3
