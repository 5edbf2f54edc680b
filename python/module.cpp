// dinov3._dinov3: the compiled half of the Python package, on the public C++ API only
// (include/dinov3/). The pure-Python dinov3/__init__.py wraps it with the user-facing classes.
//
// Every call that decodes or computes releases the GIL (ReleasedGil). Library errors become Python
// exceptions carrying the library's message: kNotFound -> FileNotFoundError, kIoError -> OSError,
// kInvalidArgument / kFormatError / kUnsupported -> ValueError, kOutOfMemory -> MemoryError, anything else
// -> RuntimeError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "dinov3/analysis.h"
#include "dinov3/backend.h"
#include "dinov3/collection.h"
#include "dinov3/files.h"
#include "dinov3/hub.h"
#include "dinov3/image.h"
#include "dinov3/int8_plan.h"
#include "dinov3/model.h"
#include "dinov3/op_profile.h"
#include "dinov3/pipeline.h"
#include "dinov3/status.h"
#include "dinov3/tensor.h"
#include "dinov3/version.h"

namespace py = pybind11;

namespace dinov3::python {
namespace {

// Set on a thread while python_stop_check takes the GIL back: at interpreter exit that ends a daemon thread
// by pthread_exit from inside the engine, and the unwind on its way out must not take the GIL again here (a
// second pthread_exit during the first one's unwind is std::terminate).
thread_local bool t_taking_gil_in_stop_check = false;

// Releases the GIL for its scope, as py::gil_scoped_release, but its destructor may unwind. At interpreter
// exit a daemon thread that takes the GIL back is ended by pthread_exit, whose forced unwind has to pass
// through here on its way out (pybind11's dispatcher rethrows it); in a noexcept destructor it was
// std::terminate, and Python aborted at exit while a daemon thread was inside the engine.
class ReleasedGil {
 public:
  ReleasedGil() : state_(PyEval_SaveThread()) {}
  ~ReleasedGil() noexcept(false) {
    if (!t_taking_gil_in_stop_check) PyEval_RestoreThread(state_);
  }
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;

 private:
  PyThreadState* state_;
};

// The models' stop check (Model::set_stop_check), so that Ctrl-C stops a long call (a big batch, a
// high-resolution dense map) between transformer blocks instead of after it. It runs on the thread that
// called into the engine, with the GIL released; at most every 50 ms per thread it takes the GIL and runs
// the interpreter's signal handlers (which act only on the main thread, as Python's own do). A handler that
// raises leaves its exception set and stops the forward; raise() then re-raises that exception. Taking the
// GIL can wait for another Python thread's switch interval (5 ms), hence the spacing: a 30 ms forward never
// checks, a long one pays at most ~10% while another thread holds the GIL, ~0 otherwise.
bool python_stop_check() {
  using Clock = std::chrono::steady_clock;
  thread_local Clock::time_point next_check = Clock::now() + std::chrono::milliseconds(50);
  const Clock::time_point now = Clock::now();
  if (now < next_check) return false;
  next_check = now + std::chrono::milliseconds(50);
  // Once the interpreter is shutting down, a thread here leaves it alone (as it did before there was a
  // check: it takes the GIL back when its call returns). Waiting for the GIL then, or touching pybind11's
  // state, crashed about one exit in 25 with a daemon thread inside a forward.
#if PY_VERSION_HEX >= 0x030D0000
  if (Py_IsFinalizing()) return false;  // public from 3.13, which dropped the underscore form
#else
  if (_Py_IsFinalizing()) return false;
#endif
  t_taking_gil_in_stop_check = true;  // until the GIL is ours (see ReleasedGil)
  const PyGILState_STATE gil = PyGILState_Ensure();
  t_taking_gil_in_stop_check = false;
  const bool stop = PyErr_CheckSignals() != 0;
  PyGILState_Release(gil);
  return stop;
}

PyObject* exception_type(ErrorCode code) {
  switch (code) {
    case ErrorCode::kNotFound: return PyExc_FileNotFoundError;
    case ErrorCode::kIoError: return PyExc_OSError;
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kFormatError:
    case ErrorCode::kUnsupported: return PyExc_ValueError;
    case ErrorCode::kOutOfMemory: return PyExc_MemoryError;
    default: return PyExc_RuntimeError;
  }
}

// Raises the Python exception for a failed Status (the GIL must be held). A forward stopped by
// python_stop_check raises what the signal handler raised (KeyboardInterrupt for Ctrl-C).
[[noreturn]] void raise(const Status& status) {
  if (status.code() == ErrorCode::kCancelled && PyErr_Occurred() != nullptr) throw py::error_already_set();
  // Messages quote paths, whose bytes need not be UTF-8: those become \xNN rather than a decoding error.
  const std::string& m = status.message();
  PyObject* text = PyUnicode_DecodeUTF8(m.data(), static_cast<Py_ssize_t>(m.size()), "backslashreplace");
  if (text != nullptr) {
    PyErr_SetObject(exception_type(status.code()), text);
    Py_DECREF(text);
  }
  throw py::error_already_set();
}

void check(const Status& status) {
  if (!status.ok()) raise(status);
}

template <typename T>
T unwrap(Result<T>&& result) {
  if (!result.ok()) raise(result.status());
  return std::move(result).value();
}

// A float32 array over `data` without a copy: the vector moves into the capsule that owns the memory.
py::array_t<float> to_numpy(std::vector<float>&& data, const Shape& shape) {
  auto* owned = new std::vector<float>(std::move(data));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<float>*>(p); });
  std::vector<py::ssize_t> dims(shape.begin(), shape.end());
  return py::array_t<float>(dims, owned->data(), owner);
}

py::array_t<float> to_numpy(Tensor&& t) {
  Shape shape = std::move(t.shape);
  return to_numpy(std::move(t.data), shape);
}

// An HxWx3 uint8 array holding a copy of the picture.
py::array_t<uint8_t> picture_to_numpy(const ImageRGB8& image) {
  py::array_t<uint8_t> out({static_cast<py::ssize_t>(image.height), static_cast<py::ssize_t>(image.width),
                            static_cast<py::ssize_t>(3)});
  std::copy(image.pixels.begin(), image.pixels.end(), out.mutable_data());
  return out;
}

InputSize input_size(const std::optional<int>& size, const std::optional<int>& long_side) {
  InputSize s;
  if (size && long_side) raise(make_error(ErrorCode::kInvalidArgument, "give size or long_side, not both"));
  if ((size && *size < 1) || (long_side && *long_side < 1)) {
    raise(make_error(ErrorCode::kInvalidArgument, "size and long_side must be positive"));
  }
  if (size) s.size = *size;
  if (long_side) s.long_side = *long_side;
  return s;
}

// One image's patch features (dinov3.DenseFeatures wraps it).
class PyDense {
 public:
  explicit PyDense(DenseFeatures f) : f_(std::make_shared<const DenseFeatures>(std::move(f))) {}
  const DenseFeatures& get() const { return *f_; }

  // [grid_h, grid_w, D], a copy.
  py::array_t<float> patches() const {
    std::vector<float> data = f_->patches.data;
    return to_numpy(std::move(data), {f_->grid_h, f_->grid_w, f_->dim()});
  }
  py::tuple grid() const { return py::make_tuple(f_->grid_h, f_->grid_w); }
  py::tuple input_size() const { return py::make_tuple(f_->preprocess.height, f_->preprocess.width); }
  py::tuple image_size() const { return py::make_tuple(f_->image.height, f_->image.width); }
  int patch_size() const { return f_->patch_size; }
  py::bytes source() const { return py::bytes(f_->source); }
  py::array_t<uint8_t> image() const { return picture_to_numpy(f_->image); }
  // (row, column) of the patch under image pixel (x, y); ValueError when there is none.
  py::tuple patch_at(int x, int y) const {
    const int64_t p = unwrap(patch_for_point(*f_, x, y));
    return py::make_tuple(p / f_->grid_w, p % f_->grid_w);
  }

 private:
  std::shared_ptr<const DenseFeatures> f_;
};

// A fitted patch PCA (dinov3.PatchPca wraps it).
class PyPca {
 public:
  explicit PyPca(PatchPca pca) : pca_(std::move(pca)) {}
  const PatchPca& get() const { return pca_; }

  py::array_t<float> mean() const { std::vector<float> v = pca_.mean; return to_numpy(std::move(v), {pca_.dim()}); }
  py::array_t<float> components() const {
    std::vector<float> v = pca_.components;
    return to_numpy(std::move(v), {kPcaComponents, pca_.dim()});
  }
  py::tuple explained_variance_ratio() const {
    const auto& r = pca_.explained_variance_ratio;
    return py::make_tuple(r[0], r[1], r[2]);
  }
  // [3, 2]: (low, high) score of each component, the colour scale.
  py::array_t<float> score_range() const {
    std::vector<float> v;
    for (int k = 0; k < kPcaComponents; ++k) {
      v.push_back(pca_.low[k]);
      v.push_back(pca_.high[k]);
    }
    return to_numpy(std::move(v), {kPcaComponents, 2});
  }
  py::array_t<float> project(const PyDense& f) const {
    Result<Tensor> scores = [&] {
      ReleasedGil release;
      return project_patches(pca_, f.get().patches);
    }();
    Tensor t = unwrap(std::move(scores));
    return to_numpy(std::move(t.data), {f.get().grid_h, f.get().grid_w, kPcaComponents});
  }
  void save(const std::string& path, bool overwrite) const {
    Status status;
    {
      ReleasedGil release;
      status = save_patch_pca(path, pca_, {}, overwrite);
    }
    check(status);
  }
  static PyPca load(const std::string& path) {
    Result<PatchPca> pca = [&] {
      ReleasedGil release;
      return load_patch_pca(path);
    }();
    return PyPca(unwrap(std::move(pca)));
  }

 private:
  PatchPca pca_;
};

PoolMode parse_pool(const std::optional<std::string>& name) {
  PoolMode mode = PoolMode::kDefault;
  if (name && !pool_mode_from_name(*name, &mode)) {
    raise(make_error(ErrorCode::kInvalidArgument, "unknown pool '" + *name + "' (avg, token or default)"));
  }
  return mode;
}

// A float32 setting as the short decimal it was written as (0.485, not 0.48500001430511475).
double decimal(float v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.7g", static_cast<double>(v));
  return std::strtod(buf, nullptr);
}

py::dict config_dict(const Model& model, const PreprocessConfig& pc) {
  const ModelConfig& c = model.config();
  py::dict d;
  d["layout"] = layout_name(c.layout);
  d["architecture"] = c.architecture;
  d["embed_dim"] = c.embed_dim;
  d["depth"] = c.depth;
  d["num_heads"] = c.num_heads;
  d["mlp"] = c.mlp == MlpKind::kSwiGlu ? "swiglu" : "gelu";
  d["mlp_hidden"] = c.mlp_hidden;
  d["patch_size"] = c.patch_size;
  d["num_reg_tokens"] = c.num_reg_tokens;
  d["global_pool"] = pool_mode_name(c.global_pool);
  d["input_size"] = py::make_tuple(3, pc.height, pc.width);
  d["interpolation"] = interpolation_name(pc.interpolation);
  d["crop_mode"] = crop_mode_name(pc.crop_mode);
  d["crop_pct"] = pc.crop_pct;
  d["mean"] = py::make_tuple(decimal(pc.mean[0]), decimal(pc.mean[1]), decimal(pc.mean[2]));
  d["std"] = py::make_tuple(decimal(pc.std[0]), decimal(pc.std[1]), decimal(pc.std[2]));
  d["rescale_factor"] = pc.rescale_factor;
  d["normalize"] = pc.normalize;
  d["preprocess_source"] = c.data.source;
  d["path"] = py::bytes(model.directory());  // a file name need not be UTF-8; Python decodes it (os.fsdecode)
  d["weights_format"] = model.weights_info().format;
  d["weights_dtype"] = model.weights_info().dtype;
  d["parameters"] = model.weights_info().parameters;
  return d;
}

// One image for preprocess(): a file to decode, or 8-bit RGB pixels already in memory.
using ImageSource = std::variant<std::string, ImageRGB8>;

ImageSource image_source(const py::handle& item, size_t index) {
  if (py::isinstance<py::str>(item)) return item.cast<std::string>();
  if (py::isinstance<py::bytes>(item)) return std::string(item.cast<py::bytes>());
  if (!py::isinstance<py::array>(item)) {
    raise(make_error(ErrorCode::kInvalidArgument,
                     "image " + std::to_string(index) + ": expected a path, a PIL.Image or a HxWx3 uint8 array, got " +
                         std::string(py::str(py::type::of(item).attr("__name__")))));
  }
  auto array = py::reinterpret_borrow<py::array>(item);
  const std::string where = "image " + std::to_string(index) + ": ";
  if (!array.dtype().is(py::dtype::of<uint8_t>())) {
    raise(make_error(ErrorCode::kInvalidArgument, where + "expected a uint8 array, got dtype " +
                                                      std::string(py::str(array.dtype()))));
  }
  if (array.ndim() != 3 || array.shape(2) != 3 || array.shape(0) < 1 || array.shape(1) < 1) {
    std::string shape;
    for (py::ssize_t i = 0; i < array.ndim(); ++i) {
      if (i > 0) shape += ", ";
      shape += std::to_string(array.shape(i));
    }
    raise(make_error(ErrorCode::kInvalidArgument, where + "expected a HxWx3 RGB array, got shape [" + shape + "]"));
  }
  // The pixel bound image files have (DecodeOptions::max_pixels), before the copies below are made.
  const int64_t max_pixels = DecodeOptions{}.max_pixels;
  if (array.shape(0) > std::numeric_limits<int>::max() || array.shape(1) > std::numeric_limits<int>::max() ||
      array.shape(0) > max_pixels / array.shape(1)) {
    raise(make_error(ErrorCode::kInvalidArgument, where + "too large: " + std::to_string(array.shape(0)) + " x " +
                                                      std::to_string(array.shape(1)) + " pixels (at most " +
                                                      std::to_string(max_pixels) + ", as for image files)"));
  }
  // A contiguous copy when the array is not one; that copy can fail (ensure() clears numpy's error).
  auto pixels = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(array);
  if (!pixels) {
    raise(make_error(ErrorCode::kOutOfMemory, where + "cannot make a contiguous copy of " +
                                                  std::to_string(array.nbytes()) + " bytes"));
  }
  ImageRGB8 image;
  image.height = static_cast<int>(array.shape(0));
  image.width = static_cast<int>(array.shape(1));
  image.pixels.assign(pixels.data(), pixels.data() + pixels.size());
  return image;
}

// The model and its default preprocessing; shared with the embed iterators it starts.
struct ModelState {
  std::unique_ptr<Model> model;
  PreprocessConfig preprocess;
};

class EmbedIterator {
 public:
  EmbedIterator(std::shared_ptr<ModelState> state, std::vector<std::string> paths, int batch_size, bool normalize,
                bool features, PoolMode pool, int workers, const DecodeOptions& decode)
      : state_(std::move(state)),
        batch_size_(batch_size),
        normalize_(normalize),
        features_(features),
        pool_(pool),
        total_(paths.size()),
        prefetch_(std::move(paths), 0, static_cast<size_t>(batch_size) * 3, workers, state_->preprocess, decode) {}

  // (path, pooled [D], features [T, D] or None) for the next readable image; StopIteration at the end.
  py::tuple next() {
    check_own_process();
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    {
      ReleasedGil release;
      lock.lock();
    }
    if (rows_ == 0 || taken_ == rows_) {
      Status status;
      Batch batch;
      {
        ReleasedGil release;
        status = run_batch(&batch);
      }
      check(status);
      if (batch.paths.empty()) throw py::stop_iteration();
      const auto n = static_cast<int64_t>(batch.paths.size());
      paths_ = std::move(batch.paths);
      pooled_ = to_numpy(std::move(batch.pooled), {n, state_->model->config().embed_dim});
      features_batch_ = features_ ? py::object(to_numpy(std::move(batch.features))) : py::object(py::none());
      rows_ = static_cast<size_t>(n);
      taken_ = 0;
    }
    const size_t r = taken_++;
    // Rows are views into the batch's arrays: no copy.
    py::object pooled = pooled_[py::int_(r)];
    py::object features = features_ ? py::object(features_batch_[py::int_(r)]) : py::object(py::none());
    return py::make_tuple(py::bytes(paths_[r]), pooled, features);
  }

  // [(path as bytes, reason)]
  py::list skipped() {
    check_own_process();
    std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
    {
      ReleasedGil release;
      lock.lock();
    }
    py::list out;
    for (const auto& [path, reason] : skipped_) out.append(py::make_tuple(py::bytes(path), py::bytes(reason)));
    return out;
  }

 private:
  struct Batch {
    std::vector<std::string> paths;
    std::vector<float> pooled;  // [n, D]
    Tensor features;            // [n, T, D] when asked for
  };

  // In a process forked from the one that made it, the iterator has no decoding threads, and its lock may
  // have been held by a thread the fork did not copy: RuntimeError before touching either (the prefetcher's
  // own check: ImagePrefetcher::in_own_process).
  void check_own_process() const {
    if (prefetch_.in_own_process()) return;
    PyErr_SetString(PyExc_RuntimeError,
                    "dinov3: this embed iterator was started in another process; a process forked from it has none "
                    "of its decoding threads, so it cannot go on here: call Model.embed again in this process");
    throw py::error_already_set();
  }

  // Takes images until a batch is full or the inputs end, and runs it (no Python objects touched).
  // A batch whose forward failed (Ctrl-C, an allocation) stays staged, and the next call runs it again:
  // its images were already taken from the prefetcher, and would otherwise be lost to a caller who goes on.
  Status run_batch(Batch* batch) {
    if (staged_paths_.empty()) {
      const PreprocessConfig& pc = state_->preprocess;
      const int64_t per_image = 3 * static_cast<int64_t>(pc.height) * pc.width;
      // Sized to the images left, not to batch_size: embed([one], batch_size=4096) took 3 GB.
      const int64_t rows = std::min<int64_t>(batch_size_, static_cast<int64_t>(total_ - next_));
      Tensor input({std::max<int64_t>(rows, 1), 3, pc.height, pc.width});
      int64_t n = 0;
      for (; next_ < total_ && n < batch_size_; ++next_) {
        ImagePrefetcher::Item item = prefetch_.take(next_);
        if (!item.ok) {
          skipped_.emplace_back(prefetch_.paths()[next_], item.reason);
          continue;
        }
        std::copy(item.chw.data.begin(), item.chw.data.end(), input.data.begin() + n * per_image);
        staged_paths_.push_back(prefetch_.paths()[next_]);
        ++n;
      }
      if (n == 0) return {};
      input.shape[0] = n;
      input.data.resize(static_cast<size_t>(n * per_image));
      staged_input_ = std::move(input);
    }
    ForwardOptions fo;
    fo.pool = pool_;
    DINOV3_ASSIGN_OR_RETURN(ForwardOutput out, state_->model->forward(staged_input_, fo));
    batch->paths = std::move(staged_paths_);
    staged_paths_.clear();
    staged_input_ = Tensor();
    const auto D = static_cast<size_t>(state_->model->config().embed_dim);
    if (normalize_) {
      l2_normalize_rows(out.pooled.ptr(), out.pooled.data.size() / D, D);
      if (features_) l2_normalize_rows(out.features.ptr(), out.features.data.size() / D, D);
    }
    batch->pooled = std::move(out.pooled.data);
    if (features_) batch->features = std::move(out.features);
    return {};
  }

  std::shared_ptr<ModelState> state_;
  const int64_t batch_size_;
  const bool normalize_, features_;
  const PoolMode pool_;
  const size_t total_;
  ImagePrefetcher prefetch_;
  std::mutex mu_;  // one next() at a time
  size_t next_ = 0;  // the next input index to take
  // Images taken for a batch whose forward has not succeeded yet (run_batch).
  std::vector<std::string> staged_paths_;
  Tensor staged_input_;
  std::vector<std::pair<std::string, std::string>> skipped_;
  // The batch being handed out.
  std::vector<std::string> paths_;
  py::object pooled_, features_batch_;
  size_t rows_ = 0, taken_ = 0;
};

// publish_npy_with_index with the rows from an iterable of float32 arrays (called with the GIL held).
void publish_npy(const std::string& out, const std::vector<int64_t>& shape, const py::iterable& chunks,
                 const std::vector<std::string>& paths, bool overwrite) {
  const ProduceFn rows = [&](const WriteFn& write) -> Status {
    for (const py::handle& chunk : chunks) {
      auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(chunk);
      if (!a) return make_error(ErrorCode::kInvalidArgument, "publish_npy: a chunk is not a float32 array");
      DINOV3_RETURN_IF_ERROR(write(a.data(), static_cast<size_t>(a.size()) * sizeof(float)));
    }
    return {};
  };
  Status status = publish_npy_with_index(out, Shape(shape.begin(), shape.end()), rows, paths, overwrite);
  if (PyErr_Occurred()) throw py::error_already_set();
  check(status);
}

// The engine options as Model() takes them, checked: threads, a known backend and precision.
LoadOptions load_options(const std::string& backend, const std::string& precision, int threads) {
  if (threads < 0) raise(make_error(ErrorCode::kInvalidArgument, "threads must be >= 0 (0: one per core)"));
  // An unknown backend is a wrong argument here (the registry says kNotFound, as for a missing name).
  const std::vector<std::string> backends = backend_names();
  if (std::find(backends.begin(), backends.end(), backend) == backends.end()) {
    std::string known;
    for (const auto& b : backends) known += (known.empty() ? "" : ", ") + b;
    raise(make_error(ErrorCode::kInvalidArgument, "unknown backend '" + backend + "' (available: " + known + ")"));
  }
  LoadOptions lo;
  lo.backend = backend;
  lo.backend_options.threads = threads;
  if (!precision_from_name(precision, &lo.backend_options.precision)) {
    raise(make_error(ErrorCode::kInvalidArgument, "unknown precision '" + precision + "' (fp32, bf16, int8)"));
  }
  return lo;
}

// load_options, then the backend made with them on this machine (its thread bound, precisions it lacks).
void check_engine_options(const std::string& backend, const std::string& precision, int threads) {
  const LoadOptions lo = load_options(backend, precision, threads);
  Result<std::unique_ptr<Backend>> made = [&] {
    ReleasedGil release;
    return create_backend(lo.backend, lo.backend_options);
  }();
  check(made.status());
}

class PyModel {
 public:
  PyModel(const std::string& spec, const std::string& backend, const std::string& precision, int threads,
          const std::string& int8_plan, bool profile) {
    LoadOptions lo = load_options(backend, precision, threads);
    if (profile) lo.op_profile = profile_ = std::make_shared<OpProfile>();
    auto state = std::make_shared<ModelState>();
    Status status;
    {
      ReleasedGil release;
      status = [&]() -> Status {
        if (!int8_plan.empty()) {
          DINOV3_ASSIGN_OR_RETURN(Int8Plan plan, read_int8_plan(int8_plan));
          lo.int8_plan = std::make_shared<const Int8Plan>(std::move(plan));
        }
        DINOV3_ASSIGN_OR_RETURN(ModelLocation loc, resolve_model(spec));
        DINOV3_ASSIGN_OR_RETURN(state->model, Model::load(loc.dir, lo));
        DINOV3_RETURN_IF_ERROR(state->model->set_stop_check(python_stop_check));
        DINOV3_ASSIGN_OR_RETURN(state->preprocess, preprocess_config_for(state->model->config()));
        return {};
      }();
    }
    check(status);
    state_ = std::move(state);
  }

  py::dict config() const { return config_dict(*state_->model, state_->preprocess); }
  std::string backend_name() { return state_->model->backend().name(); }
  std::string device() { return state_->model->backend().device(); }

  // The op profile since loading or the last reset: one dict per op and shape.
  py::list op_profile(bool reset) {
    if (!profile_) {
      raise(make_error(ErrorCode::kInvalidArgument, "op_profile: the model was loaded without profile=True"));
    }
    py::list out;
    for (const OpStat& s : profile_->stats()) {
      py::dict d;
      d["op"] = s.op;
      d["calls"] = s.calls;
      d["seconds"] = s.seconds;
      d["gflop"] = s.flops * 1e-9;
      out.append(std::move(d));
    }
    if (reset) profile_->reset();
    return out;
  }

  py::array_t<float> preprocess(const py::sequence& images) {
    std::vector<ImageSource> sources;
    sources.reserve(images.size());
    for (size_t i = 0; i < images.size(); ++i) sources.push_back(image_source(images[i], i));
    if (sources.empty()) raise(make_error(ErrorCode::kInvalidArgument, "preprocess: no images given"));
    const PreprocessConfig& pc = state_->preprocess;
    const int64_t per_image = 3 * static_cast<int64_t>(pc.height) * pc.width;
    Tensor out({static_cast<int64_t>(sources.size()), 3, pc.height, pc.width});
    Status status;
    {
      ReleasedGil release;
      for (size_t i = 0; i < sources.size() && status.ok(); ++i) {
        float* dst = out.ptr() + static_cast<int64_t>(i) * per_image;
        if (const auto* path = std::get_if<std::string>(&sources[i])) {
          Result<Tensor> one = preprocess_image_file(*path, pc);
          if (one.ok()) std::copy(one->data.begin(), one->data.end(), dst);
          else status = one.status();
        } else {
          Result<ImageRGB8> geometry = transform_rgb8(std::get<ImageRGB8>(sources[i]), pc);
          status = geometry.ok() ? to_normalized_chw(*geometry, pc, dst)
                                 : geometry.status().with_context("image " + std::to_string(i));
        }
      }
    }
    check(status);
    return to_numpy(std::move(out));
  }

  py::dict forward(const py::array_t<float, py::array::c_style>& x, const std::optional<std::string>& pool,
                   const std::optional<std::vector<int>>& layers) {
    ForwardOptions fo;
    fo.pool = parse_pool(pool);
    if (layers) fo.intermediate_blocks = *layers;
    Shape shape(x.shape(), x.shape() + x.ndim());
    Result<ForwardOutput> result = make_error(ErrorCode::kInternal, "no forward ran");
    {
      ReleasedGil release;
      Tensor input(std::move(shape), std::vector<float>(x.data(), x.data() + x.size()));
      result = state_->model->forward(input, fo);
    }
    ForwardOutput out = unwrap(std::move(result));
    py::dict d;
    d["features"] = to_numpy(std::move(out.features));
    d["pooled"] = to_numpy(std::move(out.pooled));
    py::list blocks;
    for (auto& inter : out.intermediates) blocks.append(to_numpy(std::move(inter.tokens)));
    d["blocks"] = blocks;
    return d;
  }

  std::unique_ptr<EmbedIterator> embed(std::vector<std::string> paths, int batch_size, bool normalize, bool features,
                                       const std::optional<std::string>& pool, int workers, bool exif_transpose) {
    if (batch_size < 1 || batch_size > 4096) raise(make_error(ErrorCode::kInvalidArgument, "batch_size must be in [1, 4096]"));
    if (workers < 1 || workers > 256) raise(make_error(ErrorCode::kInvalidArgument, "workers must be in [1, 256]"));
    DecodeOptions decode;
    decode.exif_transpose = exif_transpose;
    return std::make_unique<EmbedIterator>(state_, std::move(paths), batch_size, normalize, features, parse_pool(pool),
                                           workers, decode);
  }

  PyDense dense(const py::handle& image, const std::optional<int>& size, const std::optional<int>& long_side) {
    ImageSource source = image_source(image, 0);
    const InputSize s = input_size(size, long_side);
    Result<DenseFeatures> f = make_error(ErrorCode::kInternal, "no features computed");
    {
      ReleasedGil release;
      if (const auto* path = std::get_if<std::string>(&source)) {
        f = compute_dense_features(*state_->model, *path, s);
      } else {
        f = compute_dense_features(*state_->model, std::move(std::get<ImageRGB8>(source)), s, "image");
      }
    }
    return PyDense(unwrap(std::move(f)));
  }

  // (PyPca, pictures, masks): dinov3 pca over the given images' features.
  py::tuple pca(const std::vector<const PyDense*>& images, bool foreground, const PyPca* reuse) {
    if (images.empty()) raise(make_error(ErrorCode::kInvalidArgument, "pca: no images given"));
    std::vector<const DenseFeatures*> features;
    for (const PyDense* d : images) {
      if (d == nullptr) raise(make_error(ErrorCode::kInvalidArgument, "pca: None among the images"));
      features.push_back(&d->get());
    }
    PcaPictureOptions options;
    options.foreground = foreground;
    options.reuse = reuse ? &reuse->get() : nullptr;
    Result<PcaPictures> result = make_error(ErrorCode::kInternal, "no PCA computed");
    {
      ReleasedGil release;
      result = pca_pictures(features, options);
    }
    PcaPictures pictures = unwrap(std::move(result));
    py::list out, masks;
    for (const ImageRGB8& p : pictures.pictures) out.append(picture_to_numpy(p));
    for (size_t i = 0; i < pictures.masks.size(); ++i) {
      const DenseFeatures& f = *features[i];
      py::array_t<bool> m({static_cast<py::ssize_t>(f.grid_h), static_cast<py::ssize_t>(f.grid_w)});
      std::transform(pictures.masks[i].begin(), pictures.masks[i].end(), m.mutable_data(), [](uint8_t v) { return v != 0; });
      masks.append(m);
    }
    return py::make_tuple(PyPca(std::move(pictures.pca)), out, masks);
  }

  // (similarity [grid_h, grid_w] of the target, picture): dinov3 similarity.
  py::tuple similarity(const PyDense& source, int x, int y, const PyDense& target, double alpha) {
    if (!(alpha >= 0.0 && alpha <= 1.0)) raise(make_error(ErrorCode::kInvalidArgument, "alpha must be in [0, 1]"));
    const DenseFeatures& from = source.get();
    const DenseFeatures& to = target.get();
    const int64_t p = unwrap(patch_for_point(from, x, y));
    if (from.dim() != to.dim()) {
      raise(make_error(ErrorCode::kInvalidArgument, "similarity: the two feature sets have different widths"));
    }
    Result<std::vector<float>> sim = make_error(ErrorCode::kInternal, "no similarity computed");
    Result<ImageRGB8> picture = make_error(ErrorCode::kInternal, "no picture drawn");
    {
      ReleasedGil release;
      sim = patch_similarity(from.patches.ptr() + p * from.dim(), from.dim(), to);
      if (sim.ok()) picture = render_similarity(to, *sim, alpha);
    }
    std::vector<float> values = unwrap(std::move(sim));
    ImageRGB8 pic = unwrap(std::move(picture));
    return py::make_tuple(to_numpy(std::move(values), {to.grid_h, to.grid_w}), picture_to_numpy(pic));
  }

 private:
  std::shared_ptr<ModelState> state_;
  std::shared_ptr<OpProfile> profile_;  // with profile=True
};

}  // namespace
}  // namespace dinov3::python

PYBIND11_MODULE(_dinov3, m) {
  using dinov3::python::EmbedIterator;
  using dinov3::python::PyModel;
  m.doc() = "Compiled core of the dinov3 package; use the classes in `dinov3` rather than this module.";
  m.attr("__version__") = dinov3::version_string();
  m.attr("build_commit") = dinov3::build_commit();
  m.attr("DEFAULT_MODEL") = dinov3::kDefaultModelId;

  m.def(
      "expand_inputs",
      [](const std::vector<std::string>& specs) {
        dinov3::Result<std::vector<std::string>> paths = [&] {
          dinov3::python::ReleasedGil release;
          return dinov3::expand_inputs(specs);
        }();
        py::list out;
        for (const std::string& p : dinov3::python::unwrap(std::move(paths))) out.append(py::bytes(p));
        return out;
      },
      py::arg("specs"), "The image files that files, folders and @list.txt name, as `dinov3 embed` lists them (bytes).");
  m.def("escape_line", [](const std::string& text) { return py::bytes(dinov3::escape_line(text)); }, py::arg("text"),
        "Bytes as one line of text, as embed's index and state files hold them.");
  m.def("embed_index_path", [](const std::string& out) { return py::bytes(dinov3::embed_index_path(out)); }, py::arg("out"));
  m.def(
      "check_embed_output",
      [](const std::string& out, bool allow_existing) { dinov3::python::check(dinov3::check_embed_output(out, allow_existing)); },
      py::arg("out"), py::arg("allow_existing"), "Raises ValueError for an output embed may not write.");
  m.def("check_engine_options", &dinov3::python::check_engine_options, py::arg("backend"), py::arg("precision"),
        py::arg("threads"), "Raises ValueError for engine options Model() would refuse on this machine.");
  m.def(
      "check_not_written_over",
      [](const std::string& output, const std::vector<std::string>& kept, const std::string& what) {
        dinov3::python::check(dinov3::check_not_written_over(output, kept, what));
      },
      py::arg("output"), py::arg("kept"), py::arg("what"), "Raises ValueError when output is one of kept.");
  m.def(
      "model_files",
      [](const std::string& spec) {
        // The files of the model `spec` names, as it resolves on this machine.
        dinov3::Result<dinov3::ModelLocation> loc = dinov3::resolve_model(spec);
        dinov3::python::check(loc.status());
        py::list out;
        for (const std::string& f : dinov3::model_files(loc->dir)) out.append(py::bytes(f));
        return out;
      },
      py::arg("spec"), "The files the model spec resolves to on this machine (bytes); raises where it does not.");
  m.def(
      "calibrate_int8",
      [](const std::string& spec, const py::array_t<float, py::array::c_style>& pixels, double budget, int threads,
         const std::string& plan_path, bool overwrite, const std::string& rounding,
         const std::vector<std::string>& image_files) {
        using namespace dinov3;
        if (threads < 0) python::raise(make_error(ErrorCode::kInvalidArgument, "threads must be >= 0 (0: one per core)"));
        if (rounding != "gptq" && rounding != "nearest") {
          python::raise(make_error(ErrorCode::kInvalidArgument, "rounding must be 'gptq' or 'nearest', not '" + rounding + "'"));
        }
        // Every check on the plan's files before any work: never over an input, never over a folder or a FIFO.
        const Result<ModelLocation> location = resolve_model(spec);
        python::check(location.status());
        std::vector<std::string> inputs = image_files;
        for (std::string& f : model_files(location->dir)) inputs.push_back(std::move(f));
        python::check(check_int8_plan_path(plan_path, /*with_weights=*/rounding == "gptq"));
        for (const std::string& p : int8_plan_files(plan_path)) {
          python::check(check_not_written_over(p, inputs, "an input"));
          if (!overwrite && file_exists(p)) {
            python::raise(make_error(ErrorCode::kInvalidArgument, p + " exists; pass overwrite=True or another path"));
          }
          python::check(check_output_file(p, /*overwrite=*/true));
          std::error_code ec;
          const std::filesystem::path folder = std::filesystem::path(p).parent_path();
          if (!folder.empty() && !std::filesystem::is_directory(folder, ec)) {
            python::raise(make_error(ErrorCode::kNotFound, p + ": the folder " + folder.string() + " does not exist"));
          }
        }
        Shape shape(pixels.shape(), pixels.shape() + pixels.ndim());
        Result<Int8Plan> plan = make_error(ErrorCode::kInternal, "no calibration ran");
        Status written;
        {
          dinov3::python::ReleasedGil release;
          Tensor input(std::move(shape), std::vector<float>(pixels.data(), pixels.data() + pixels.size()));
          CalibrationOptions o;
          o.threads = threads;
          o.budget = budget;
          o.gptq = rounding == "gptq";
          plan = calibrate_int8(location->dir, input, o);
          if (plan.ok()) {
            written = write_int8_plan(*plan, plan_path, overwrite);
            name_int8_plan_weights(*plan, plan_path);
          }
        }
        python::check(written);
        return int8_plan_to_json(python::unwrap(std::move(plan)));
      },
      py::arg("model"), py::arg("pixels"), py::arg("budget"), py::arg("threads"), py::arg("plan"), py::arg("overwrite"),
      py::arg("rounding"), py::arg("image_files"),
      "Measures each linear layer's int8 error on the pixels, writes the plan file (and its rounded weights), "
      "returns its JSON text.");
  m.def("publish_npy", &dinov3::python::publish_npy, py::arg("out"), py::arg("shape"), py::arg("chunks"), py::arg("paths"),
        py::arg("overwrite"),
        "Writes a float32 .npy from an iterable of row arrays and its index of paths, both or neither.");

  py::class_<EmbedIterator>(m, "EmbedIterator", "Batches of images decoded ahead and embedded, one row at a time.")
      .def("next", &EmbedIterator::next, "(path, pooled, features or None) for the next readable image.")
      .def("skipped", &EmbedIterator::skipped, "(path, reason) for each unreadable image so far.");

  using dinov3::python::PyDense;
  using dinov3::python::PyPca;
  py::class_<PyDense>(m, "DenseFeatures", "One image's patch features at a chosen resolution.")
      .def("patches", &PyDense::patches, "float32 [grid_h, grid_w, D] (a copy).")
      .def("grid", &PyDense::grid)
      .def("input_size", &PyDense::input_size)
      .def("image_size", &PyDense::image_size)
      .def("patch_size", &PyDense::patch_size)
      .def("source", &PyDense::source)
      .def("image", &PyDense::image, "The decoded image, HxWx3 uint8 (a copy).")
      .def("patch_at", &PyDense::patch_at, py::arg("x"), py::arg("y"));

  py::class_<PyPca>(m, "PatchPca", "Three principal axes of patch features and their colour scale.")
      .def("mean", &PyPca::mean)
      .def("components", &PyPca::components)
      .def("explained_variance_ratio", &PyPca::explained_variance_ratio)
      .def("score_range", &PyPca::score_range)
      .def("project", &PyPca::project, py::arg("features"))
      .def("save", &PyPca::save, py::arg("path"), py::arg("overwrite"))
      .def_static("load", &PyPca::load, py::arg("path"));

  py::class_<PyModel>(m, "Model", "A loaded DINOv3 model (see dinov3.Model).")
      .def(py::init<const std::string&, const std::string&, const std::string&, int, const std::string&, bool>(),
           py::arg("model"), py::arg("backend"), py::arg("precision"), py::arg("threads"), py::arg("int8_plan"),
           py::arg("profile"))
      .def("op_profile", &PyModel::op_profile, py::arg("reset"), "Per op and shape: calls, seconds, gflop.")
      .def("config", &PyModel::config, "Architecture, dimensions, pooling and preprocessing defaults.")
      .def("backend_name", &PyModel::backend_name, "The compute backend's name.")
      .def("device", &PyModel::device, "The device the backend computes on.")
      .def("preprocess", &PyModel::preprocess, py::arg("images"),
           "Paths (str) or HxWx3 uint8 arrays -> float32 [B, 3, H, W].")
      .def("forward", &PyModel::forward, py::arg("x"), py::arg("pool"), py::arg("layers"),
           "float32 [B, 3, H, W] (C-contiguous) -> dict of features, pooled, blocks.")
      .def("embed", &PyModel::embed, py::arg("paths"), py::arg("batch_size"), py::arg("normalize"),
           py::arg("features"), py::arg("pool"), py::arg("workers"), py::arg("exif_transpose"),
           "An iterator over the readable images' embeddings, decoding ahead on worker threads.")
      .def("dense", &PyModel::dense, py::arg("image"), py::arg("size"), py::arg("long_side"),
           "Patch features of one image at a chosen resolution.")
      .def("pca", &PyModel::pca, py::arg("images"), py::arg("foreground"), py::arg("reuse").none(true),
           "(PatchPca, pictures, masks) over the images' patch features together.")
      .def("similarity", &PyModel::similarity, py::arg("source"), py::arg("x"), py::arg("y"), py::arg("target"),
           py::arg("alpha"), "(similarity [grid_h, grid_w], picture) of the patch under (x, y).");
}
