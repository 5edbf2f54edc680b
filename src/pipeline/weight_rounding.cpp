#include "pipeline/weight_rounding.h"

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <system_error>
#include <thread>
#include <utility>

#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/lowp/lowp_linear.h"
#include "backend/forwarding_backend.h"
#include "model/checkpoint.h"

namespace dinov3 {
namespace {

using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Columns rounded before their error is passed on to the rest of the matrix in one product.
constexpr int64_t kGptqBlock = 128;
// Columns of the triangular inverse solved together (inverse_factor).
constexpr int64_t kInverseBlock = 128;
// Memory the recorded layers of one forward may hold (their H in double and a float32 copy of the weights).
constexpr double kRecordBytes = 1024.0 * 1024.0 * 1024.0;

// The grid of one output channel, the one the cpu backend rounds to at load (lowp_linear.h).
struct Grid {
  double m = 0;  // max |w| of the channel
  int8_t round(double v) const { return cpu::lowp::int8_grid_round(v, m); }
  double value(int8_t q) const { return cpu::lowp::int8_grid_value(q, m); }
};

std::vector<Grid> grids_of(const float* w, int64_t out, int64_t in, std::vector<float>& scale) {
  std::vector<Grid> grids(static_cast<size_t>(out));
  scale.resize(static_cast<size_t>(out));
  for (int64_t n = 0; n < out; ++n) {
    double m = 0;
    for (int64_t k = 0; k < in; ++k) m = std::max(m, std::fabs(static_cast<double>(w[n * in + k])));
    grids[static_cast<size_t>(n)].m = m;
    scale[static_cast<size_t>(n)] = static_cast<float>(cpu::lowp::int8_grid_scale(m));
  }
  return grids;
}

// The upper Cholesky factor U of (H + damping x mean(diag) x I)^-1 (H^-1 = U^T U), or false where H is
// not usable (no energy, not finite, not positive definite even damped). With R the order-reversing
// permutation and R H R = L L^T, U = R L^-1 R: one factorisation and one triangular inverse.
bool inverse_factor(const std::vector<double>& h, int64_t in, double damping, Eigen::MatrixXd* u) {
  Eigen::Map<const RowMajorD> H(h.data(), in, in);
  if (!H.allFinite()) return false;
  const double mean_diag = H.diagonal().mean();
  if (!(mean_diag > 0.0)) return false;
  // The lower triangle holds H; reversed, it is the upper triangle of R H R.
  Eigen::MatrixXd reversed = H.reverse();
  double d = damping > 0.0 ? damping : 1e-6;  // not finite: below; none at all would not factor a rank-deficient H
  for (int attempt = 0; attempt < 3 && std::isfinite(d); ++attempt, d *= 10.0) {
    Eigen::MatrixXd damped = reversed;
    damped.diagonal().array() += d * mean_diag;
    Eigen::LLT<Eigen::MatrixXd, Eigen::Upper> chol(damped);
    if (chol.info() != Eigen::Success) continue;
    // L^-1 is lower triangular too: a block of its columns starting at j is zero above row j, and below it
    // solves the trailing corner of L against [I; 0]. Solving column blocks so takes ~in^3/6 multiply-adds,
    // a third of solving L against the whole identity (0.19 s instead of 0.41 s for in = 1536).
    const Eigen::MatrixXd& factor = chol.matrixLLT();  // L^T in its upper triangle
    Eigen::MatrixXd inverse = Eigen::MatrixXd::Zero(in, in);
    for (int64_t j = 0; j < in; j += kInverseBlock) {
      const int64_t width = std::min(kInverseBlock, in - j), rest = in - j;
      inverse.block(j, j, width, width).setIdentity();
      factor.bottomRightCorner(rest, rest).triangularView<Eigen::Upper>().transpose().solveInPlace(
          inverse.block(j, j, rest, width));
    }
    *u = inverse.reverse();
    if (u->allFinite()) return true;
  }
  return false;
}

// Records, for the linear layers [first, last) in loading order, their float32 weights and the sum of
// x^T x over every input row a forward hands them (H, lower triangle).
struct Recording {
  int64_t first = 0, last = 0;
  std::vector<bool> wanted;  // per layer of [first, last): recorded and rounded
  std::vector<std::vector<float>> weights;  // [out * in] per layer
  std::vector<int64_t> out, in;
  std::vector<std::vector<double>> h;  // [in * in] per layer
};

class InputRecorder final : public ForwardingBackend {
 public:
  InputRecorder(std::unique_ptr<Backend> inner, std::shared_ptr<Recording> rec)
      : ForwardingBackend(std::move(inner)), rec_(std::move(rec)) {}

  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* b, int64_t out, int64_t in) override {
    const int64_t n = prepared_++;
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Weight> weight, ForwardingBackend::prepare_linear(w, b, out, in));
    if (n >= rec_->first && n < rec_->last && rec_->wanted[static_cast<size_t>(n - rec_->first)]) {
      const auto i = static_cast<size_t>(n - rec_->first);
      rec_->weights[i].assign(w, w + out * in);
      rec_->out[i] = out;
      rec_->in[i] = in;
      rec_->h[i].assign(static_cast<size_t>(in * in), 0.0);
      index_[weight.get()] = i;
    }
    return weight;
  }

  Status embed(const DeviceBuffer& image, int64_t b, int64_t c, int64_t h, int64_t w, int64_t p, const Weight& pl,
               const Weight& pre, int64_t pc, int64_t d, DeviceBuffer& tokens) override {
    if (const auto it = index_.find(&pl); it != index_.end() && b > 0 && p > 0) {
      // The patch embedding's input rows: each patch's pixels in (c, ky, kx) order.
      std::vector<float> pixels(static_cast<size_t>(b * c * h * w));
      DINOV3_RETURN_IF_ERROR(download(image, 0, pixels.data(), pixels.size()));
      const int64_t gh = h / p, gw = w / p, cols = c * p * p;
      std::vector<float> rows(static_cast<size_t>(gh * gw * cols));
      for (int64_t img = 0; img < b; ++img) {
        for (int64_t i = 0; i < gh; ++i) {
          for (int64_t j = 0; j < gw; ++j) {
            float* row = rows.data() + (i * gw + j) * cols;
            for (int64_t ch = 0; ch < c; ++ch)
              for (int64_t ky = 0; ky < p; ++ky)
                for (int64_t kx = 0; kx < p; ++kx)
                  *row++ = pixels[static_cast<size_t>(((img * c + ch) * h + i * p + ky) * w + j * p + kx)];
          }
        }
        add_rows(it->second, rows.data(), gh * gw, cols);
      }
    }
    return ForwardingBackend::embed(image, b, c, h, w, p, pl, pre, pc, d, tokens);
  }

  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& w, const LinearEpilogue& e,
                DeviceBuffer& y) override {
    DINOV3_RETURN_IF_ERROR(record(x, rows, w));
    return ForwardingBackend::linear(x, rows, w, e, y);
  }

  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& g, const Weight& u, DeviceBuffer& y,
                       const Weight* consumer) override {
    DINOV3_RETURN_IF_ERROR(record(x, rows, g));
    DINOV3_RETURN_IF_ERROR(record(x, rows, u));
    return ForwardingBackend::linear_swiglu(x, rows, g, u, y, consumer);
  }

 private:
  Status record(const DeviceBuffer& x, int64_t rows, const Weight& w) {
    const auto it = index_.find(&w);
    if (it == index_.end() || rows <= 0) return {};
    const int64_t in = rec_->in[it->second];
    if (x.size() < static_cast<size_t>(rows * in)) return {};  // the op's own checks report it
    std::vector<float> values(static_cast<size_t>(rows * in));
    DINOV3_RETURN_IF_ERROR(download(x, 0, values.data(), values.size()));
    add_rows(it->second, values.data(), rows, in);
    return {};
  }

  // Layer i's H += x^T x for rows of x as the int8 weights meet them (outliers out; x is changed).
  void add_rows(size_t i, float* x, int64_t rows, int64_t in) {
    drop_outliers(x, rows, in);
    const RowMajorD xd =
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(x, rows, in).cast<double>();
    Eigen::Map<RowMajorD> H(rec_->h[i].data(), in, in);
    H.selfadjointView<Eigen::Lower>().rankUpdate(xd.transpose());
  }

  // The int8 weights meet a row without its outlier channels: the int8 conversion takes those out and
  // computes them against a copy of the weights of their own (lowp_kernels.h), so they are zeroed here by
  // the conversion's own rule.
  static void drop_outliers(float* x, int64_t rows, int64_t in) {
    using namespace cpu::lowp;
    std::vector<uint8_t> data(static_cast<size_t>(in));
    float scale = 0, outlier_value[kMaxOutliers];
    int32_t zero = 0, outliers = 0, outlier_index[kMaxOutliers];
    const U8Rows dst{data.data(), &scale, &zero, &outliers, outlier_index, outlier_value};
    for (int64_t r = 0; r < rows; ++r) {
      to_u8_rows_scalar(x + r * in, in, 1, in, in, dst);
      for (int32_t j = 0; j < outliers; ++j) x[r * in + outlier_index[j]] = 0.0f;
    }
  }

  std::shared_ptr<Recording> rec_;
  int64_t prepared_ = 0;
  std::map<const Weight*, size_t> index_;
};

}  // namespace

Int8Rounding round_int8_nearest(const float* w, int64_t out, int64_t in) {
  Int8Rounding r;
  const std::vector<Grid> grids = grids_of(w, out, in, r.scale);
  r.q.resize(static_cast<size_t>(out * in));
  for (int64_t n = 0; n < out; ++n)
    for (int64_t k = 0; k < in; ++k) r.q[static_cast<size_t>(n * in + k)] = grids[static_cast<size_t>(n)].round(w[n * in + k]);
  return r;
}

Int8Rounding round_int8_gptq(const std::vector<double>& h, const float* w, int64_t out, int64_t in, double damping) {
  Eigen::MatrixXd U;
  if (static_cast<int64_t>(h.size()) != in * in || !inverse_factor(h, in, damping, &U)) {
    return round_int8_nearest(w, out, in);
  }
  Int8Rounding r;
  const std::vector<Grid> grids = grids_of(w, out, in, r.scale);
  r.q.resize(static_cast<size_t>(out * in));
  // Columns in blocks: inside a block each rounded column's error goes to the block's later columns at
  // once; the block's errors reach the columns after it in one product.
  Eigen::MatrixXd W = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(w, out, in)
                          .cast<double>();
  for (int64_t b0 = 0; b0 < in; b0 += kGptqBlock) {
    const int64_t count = std::min(kGptqBlock, in - b0);
    Eigen::MatrixXd errors(out, count);
    for (int64_t j = 0; j < count; ++j) {
      const int64_t k = b0 + j;
      const double d = U(k, k);
      for (int64_t n = 0; n < out; ++n) {
        const Grid& g = grids[static_cast<size_t>(n)];
        const int8_t q = g.round(W(n, k));
        r.q[static_cast<size_t>(n * in + k)] = q;
        errors(n, j) = (W(n, k) - g.value(q)) / d;
      }
      const int64_t rest = count - j - 1;
      if (rest > 0) W.block(0, k + 1, out, rest).noalias() -= errors.col(j) * U.block(k, k + 1, 1, rest);
    }
    const int64_t after = in - b0 - count;
    if (after > 0) W.rightCols(after).noalias() -= errors * U.block(b0, b0 + count, count, after);
  }
  return r;
}

Result<std::vector<Int8Rounding>> round_linear_layers_gptq(const std::string& path, const Tensor& images,
                                                           const std::string& backend, int threads,
                                                           const std::vector<bool>& wanted,
                                                           const std::function<void(int64_t)>& done) {
  // The layers' shapes, from the checkpoint's config (no weight prepared).
  std::vector<LinearLayer> layers;
  {
    DINOV3_ASSIGN_OR_RETURN(const Checkpoint ckpt, open_checkpoint(path));
    layers = linear_layers(ckpt.config);
  }
  if (!wanted.empty() && wanted.size() != layers.size()) {
    return make_error(ErrorCode::kInvalidArgument, "int8 rounding: " + std::to_string(wanted.size()) +
                                                       " layers asked for, the model has " +
                                                       std::to_string(layers.size()));
  }
  auto is_wanted = [&](size_t i) { return wanted.empty() || wanted[i]; };
  // Memory the recording of layer i takes: its H in double and its weights.
  auto record_bytes = [&](size_t i) {
    const LinearLayer& l = layers[i];
    return is_wanted(i) ? 8.0 * static_cast<double>(l.in * l.in) + 4.0 * static_cast<double>(l.out * l.in) : 0.0;
  };
  BackendOptions f32;
  f32.threads = threads;
  std::vector<Int8Rounding> rounded(layers.size());
  size_t first = 0;
  while (first < layers.size()) {
    while (first < layers.size() && !is_wanted(first)) ++first;
    if (first == layers.size()) break;
    // As many layers as fit the memory allowance (at least one wanted).
    size_t last = first;
    double bytes = 0;
    do {
      bytes += record_bytes(last);
      ++last;
    } while (last < layers.size() && bytes + record_bytes(last) <= kRecordBytes);
    auto rec = std::make_shared<Recording>();
    rec->first = static_cast<int64_t>(first);
    rec->last = static_cast<int64_t>(last);
    const size_t count = last - first;
    rec->wanted.resize(count);
    for (size_t i = 0; i < count; ++i) rec->wanted[i] = is_wanted(first + i);
    rec->weights.resize(count);
    rec->h.resize(count);
    rec->out.assign(count, 0);
    rec->in.assign(count, 0);
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Backend> inner, create_backend(backend, f32));
    {
      DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                              Model::load(path, std::make_unique<InputRecorder>(std::move(inner), rec)));
      DINOV3_ASSIGN_OR_RETURN(const ForwardOutput ignored, model->forward(images));
      (void)ignored;
    }
    for (size_t i = 0; i < count; ++i) {
      if (rec->wanted[i] && rec->weights[i].empty()) {
        return make_error(ErrorCode::kInternal, "int8 rounding: layer " + layers[first + i].name + " was not prepared");
      }
    }
    // The layers are independent: one per worker at a time, largest first.
    std::vector<size_t> order;
    for (size_t i = 0; i < count; ++i) {
      if (rec->wanted[i]) order.push_back(i);
    }
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rec->in[a] * rec->out[a] * rec->in[a] > rec->in[b] * rec->out[b] * rec->in[b]; });
    std::atomic<size_t> next{0};
    auto work = [&] {
      for (size_t j; (j = next.fetch_add(1)) < order.size();) {
        const size_t i = order[j];
        rounded[first + i] = round_int8_gptq(rec->h[i], rec->weights[i].data(), rec->out[i], rec->in[i]);
        std::vector<double>().swap(rec->h[i]);
        std::vector<float>().swap(rec->weights[i]);
      }
    };
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    const size_t workers = std::min<size_t>(order.size(), threads > 0 ? static_cast<size_t>(threads) : hw);
    std::vector<std::thread> pool;
    try {
      for (size_t t = 1; t < workers; ++t) pool.emplace_back(work);
    } catch (const std::system_error&) {
      // Fewer workers then.
    }
    work();
    for (std::thread& t : pool) t.join();
    first = last;
    if (done) done(static_cast<int64_t>(first));
  }
  return rounded;
}

}  // namespace dinov3
