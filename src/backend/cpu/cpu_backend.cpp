#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/attention/attention.h"
#include "backend/cpu/gemm/gemm.h"
#include "backend/cpu/gemm/packed_linear.h"
#include "backend/cpu/lowp/attention_bf16.h"
#include "backend/cpu/lowp/lowp_gemm.h"
#include "backend/cpu/thread_pool.h"
#include "util/cpu_info.h"

namespace dinov3 {

namespace cpu {
const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "unknown";
}
}  // namespace cpu

namespace {

using cpu::Isa;

class CpuBuffer final : public DeviceBuffer {
 public:
  explicit CpuBuffer(size_t n) : DeviceBuffer(n), data(cpu::allocate_aligned(n)) {}
  cpu::AlignedPtr data;
};

struct CpuVector final : public Weight {
  int64_t n = 0;
  cpu::AlignedPtr v;
};

const float* data_of(const DeviceBuffer& b) { return static_cast<const CpuBuffer&>(b).data.get(); }
float* data_of(DeviceBuffer& b) { return static_cast<CpuBuffer&>(b).data.get(); }
const cpu::PackedLinear& linear_of(const Weight& w) { return static_cast<const cpu::PackedLinear&>(w); }
const CpuVector& vector_of(const Weight& w) { return static_cast<const CpuVector&>(w); }
const cpu::lowp::LowpLinear& lowp_linear_of(const Weight& w) { return static_cast<const cpu::lowp::LowpLinear&>(w); }

struct LinearDims {
  int64_t out = 0, in = 0;
};

// A flag variable is set when present and not "0" or empty.
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
}

Status check_size(const DeviceBuffer& b, int64_t needed, const char* what) {
  if (needed < 0 || static_cast<size_t>(needed) > b.size()) {
    return make_error(ErrorCode::kInvalidArgument, std::string("cpu backend: buffer '") + what + "' holds " +
                                                       std::to_string(b.size()) + " values, op needs " +
                                                       std::to_string(needed));
  }
  return {};
}

Status check_length(const Weight& w, int64_t needed, const char* what) {
  if (vector_of(w).n < needed) {
    return make_error(ErrorCode::kInvalidArgument, std::string("cpu backend: vector '") + what + "' has " +
                                                       std::to_string(vector_of(w).n) + " values, op needs " +
                                                       std::to_string(needed));
  }
  return {};
}

bool machine_supports(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2: return f.avx2 && f.fma;
    case Isa::kAvx512: return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma;
  }
  return false;
}

const cpu::CpuKernels& kernels_for(Isa isa) {
  switch (isa) {
    case Isa::kAvx512: return cpu::cpu_kernels_avx512();
    case Isa::kAvx2: return cpu::cpu_kernels_avx2();
    case Isa::kScalar: break;
  }
  return cpu::cpu_kernels_scalar();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(Isa isa, Precision precision, const cpu::lowp::LowpKernels& lowp, int threads, std::string isa_note)
      : kernels_(kernels_for(isa)),
        precision_(precision),
        lowp_(lowp),
        pool_(threads),
        scratch_(threads),
        isa_note_(std::move(isa_note)) {}

  std::string name() const override { return "cpu"; }
  std::string device() const override {
    std::string lowp_note;
    if (precision_ == Precision::kBF16) lowp_note = std::string(", bf16 ") + lowp_.bf16_name;
    if (precision_ == Precision::kInt8) lowp_note = std::string(", int8 ") + lowp_.int8_name;
    return cpu_brand_string() + ", " + cpu::isa_name(kernels_.isa) + isa_note_ + lowp_note + " (" +
           std::to_string(pool_.size()) + (pool_.size() == 1 ? " thread)" : " threads)");
  }
  Precision precision() const override { return precision_; }
  int threads() const override { return pool_.size(); }
  // Big batches run in passes whose activations stay cache-resident: measured on ViT-S at batch 8, passes
  // of 2-5 images give 5% (fp32) to 17% (int8) more images/s than one pass over all 2088 rows. 12 MiB is
  // 5 ViT-S images (2304 floats per token row); 8 MiB (3 images) measured 1% slower in fp32.
  int64_t max_rows_per_pass(int64_t floats_per_row) const override {
    constexpr int64_t kActivationBytes = int64_t{12} << 20;
    return std::max<int64_t>(1, kActivationBytes / (std::max<int64_t>(floats_per_row, 1) * 4));
  }

  Result<std::unique_ptr<DeviceBuffer>> allocate(size_t n) override {
    try {
      return std::unique_ptr<DeviceBuffer>(new CpuBuffer(n));
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate " + std::to_string(n) + " floats");
    }
  }

  Status upload(DeviceBuffer& dst, size_t offset, const float* src, size_t n) override {
    DINOV3_RETURN_IF_ERROR(check_size(dst, static_cast<int64_t>(offset + n), "upload"));
    if (n > 0) std::memcpy(data_of(dst) + offset, src, n * sizeof(float));
    return {};
  }

  Status download(const DeviceBuffer& src, size_t offset, float* dst, size_t n) override {
    DINOV3_RETURN_IF_ERROR(check_size(src, static_cast<int64_t>(offset + n), "download"));
    if (n > 0) std::memcpy(dst, data_of(src) + offset, n * sizeof(float));
    return {};
  }

  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* bias, int64_t out,
                                                 int64_t in) override {
    if (out <= 0 || in <= 0) {
      return make_error(ErrorCode::kInvalidArgument, "cpu backend: linear shape [" + std::to_string(out) + ", " +
                                                         std::to_string(in) + "] is empty");
    }
    if (precision_ == Precision::kInt8 && in > cpu::lowp::kInt8MaxIn) {
      return make_error(ErrorCode::kUnsupported, "cpu backend: int8 linear layers take at most " +
                                                     std::to_string(cpu::lowp::kInt8MaxIn) + " inputs, not " +
                                                     std::to_string(in));
    }
    try {
      if (lowp()) return std::unique_ptr<Weight>(cpu::lowp::pack_linear_lowp(precision_, w, bias, out, in));
      return std::unique_ptr<Weight>(cpu::pack_linear(w, bias, out, in, kernels_.nr));
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate a packed linear weight");
    }
  }

  Result<std::unique_ptr<Weight>> prepare_vector(const float* v, int64_t n) override {
    try {
      auto vec = std::make_unique<CpuVector>();
      vec->n = n;
      vec->v = cpu::allocate_aligned(static_cast<size_t>(std::max<int64_t>(n, 0)));
      if (n > 0) std::memcpy(vec->v.get(), v, static_cast<size_t>(n) * sizeof(float));
      return std::unique_ptr<Weight>(std::move(vec));
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate a vector weight");
    }
  }

  Status embed(const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height, int64_t width,
               int64_t patch, const Weight& patch_linear, const Weight& prefix, int64_t prefix_count,
               int64_t dim, DeviceBuffer& tokens) override {
    const LinearDims pw = dims_of(patch_linear);
    if (patch <= 0 || pw.in != channels * patch * patch || pw.out != dim) {
      return make_error(ErrorCode::kInvalidArgument, "cpu backend: embed weight does not match the patch shape");
    }
    const int64_t gh = height / patch, gw = width / patch, patches = gh * gw;
    const int64_t per_image = prefix_count + patches;
    DINOV3_RETURN_IF_ERROR(check_size(image, batch * channels * height * width, "image"));
    DINOV3_RETURN_IF_ERROR(check_size(tokens, batch * per_image * dim, "tokens"));
    DINOV3_RETURN_IF_ERROR(check_length(prefix, prefix_count * dim, "prefix"));
    const int64_t cols = pw.in;
    if (patches_capacity_ < static_cast<size_t>(patches * cols)) {
      try {
        patches_ = cpu::allocate_aligned(static_cast<size_t>(patches * cols));
      } catch (const std::bad_alloc&) {
        return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate the patch matrix");
      }
      patches_capacity_ = static_cast<size_t>(patches * cols);
    }
    float* a = patches_.get();
    for (int64_t b = 0; b < batch; ++b) {
      const float* img = data_of(image) + b * channels * height * width;
      // im2col: row i*gw + j holds patch (i, j) in the conv weight's (c, ky, kx) order.
      pool_.run(gh, [&](int64_t i, int) {
        for (int64_t j = 0; j < gw; ++j) {
          float* row = a + (i * gw + j) * cols;
          for (int64_t c = 0; c < channels; ++c)
            for (int64_t ky = 0; ky < patch; ++ky) {
              const float* src = img + (c * height + i * patch + ky) * width + j * patch;
              std::memcpy(row + (c * patch + ky) * patch, src, static_cast<size_t>(patch) * sizeof(float));
            }
        }
      });
      float* seq = data_of(tokens) + b * per_image * dim;
      std::memcpy(seq, vector_of(prefix).v.get(), static_cast<size_t>(prefix_count * dim) * sizeof(float));
      DINOV3_RETURN_IF_ERROR(run_linear(a, cols, patches, patch_linear, cpu::TileEpilogue::kStore, nullptr,
                                        seq + prefix_count * dim, dim));
    }
    return {};
  }

  Status layer_norm(const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma, const Weight& beta,
                    float eps, DeviceBuffer& y) override {
    DINOV3_RETURN_IF_ERROR(check_size(x, rows * dim, "layer_norm x"));
    DINOV3_RETURN_IF_ERROR(check_size(y, rows * dim, "layer_norm y"));
    DINOV3_RETURN_IF_ERROR(check_length(gamma, dim, "layer_norm gamma"));
    DINOV3_RETURN_IF_ERROR(check_length(beta, dim, "layer_norm beta"));
    const float* in = data_of(x);
    float* out = data_of(y);
    const float* g = vector_of(gamma).v.get();
    const float* be = vector_of(beta).v.get();
    const int64_t chunks = std::min<int64_t>(rows, 4 * pool_.size());
    const int64_t per_chunk = chunks > 0 ? (rows + chunks - 1) / chunks : 0;
    pool_.run(chunks, [&](int64_t c, int) {
      const int64_t r0 = c * per_chunk, r1 = std::min(rows, r0 + per_chunk);
      if (r0 < r1) kernels_.layer_norm_rows(in + r0 * dim, out + r0 * dim, r1 - r0, dim, g, be, eps);
    });
    return {};
  }

  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& weight, const LinearEpilogue& epilogue,
                DeviceBuffer& y) override {
    const LinearDims w = dims_of(weight);
    DINOV3_RETURN_IF_ERROR(check_size(x, rows * w.in, "linear x"));
    DINOV3_RETURN_IF_ERROR(check_size(y, rows * w.out, "linear y"));
    cpu::TileEpilogue op = epilogue.activation == Activation::kGelu ? cpu::TileEpilogue::kGelu
                                                                    : cpu::TileEpilogue::kStore;
    const float* scale = nullptr;
    if (epilogue.residual_scale != nullptr) {
      if (epilogue.activation != Activation::kNone) {
        return make_error(ErrorCode::kInvalidArgument, "cpu backend: a residual linear cannot have an activation");
      }
      DINOV3_RETURN_IF_ERROR(check_length(*epilogue.residual_scale, w.out, "residual scale"));
      op = cpu::TileEpilogue::kScaleAdd;
      scale = vector_of(*epilogue.residual_scale).v.get();
    }
    return run_linear(data_of(x), w.in, rows, weight, op, scale, data_of(y), w.out);
  }

  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up,
                       DeviceBuffer& y) override {
    const LinearDims wg = dims_of(gate);
    const LinearDims wu = dims_of(up);
    if (wg.out != wu.out || wg.in != wu.in) {
      return make_error(ErrorCode::kInvalidArgument, "cpu backend: swiglu gate and up shapes differ");
    }
    DINOV3_RETURN_IF_ERROR(check_size(x, rows * wg.in, "swiglu x"));
    DINOV3_RETURN_IF_ERROR(check_size(y, rows * wg.out, "swiglu y"));
    if (lowp()) {
      DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::lowp::swiglu_scratch_floats_lowp()));
      return cpu::lowp::gemm_swiglu_lowp(lowp_, pool_, staging_, scratch_, data_of(x), wg.in, rows,
                                         lowp_linear_of(gate), lowp_linear_of(up), data_of(y), wg.out);
    }
    DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::swiglu_scratch_floats(kernels_)));
    cpu::gemm_swiglu(kernels_, pool_, scratch_, data_of(x), wg.in, rows, linear_of(gate), linear_of(up), data_of(y),
                     wg.out);
    return {};
  }

  Status attention(const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                   int64_t prefix_count, const DeviceBuffer& rope, DeviceBuffer& out) override {
    if (head_dim <= 0 || head_dim % 2 != 0 || prefix_count < 0 || prefix_count > tokens || heads <= 0) {
      return make_error(ErrorCode::kInvalidArgument, "cpu backend: bad attention shape");
    }
    const int64_t dim = heads * head_dim;
    DINOV3_RETURN_IF_ERROR(check_size(qkv, batch * tokens * 3 * dim, "attention qkv"));
    DINOV3_RETURN_IF_ERROR(check_size(rope, (tokens - prefix_count) * 2 * head_dim, "attention rope"));
    DINOV3_RETURN_IF_ERROR(check_size(out, batch * tokens * dim, "attention out"));
    if (batch == 0 || tokens == 0) return {};
    const cpu::AttentionShape shape{batch, tokens, heads, head_dim, prefix_count};
    if (lowp()) {  // bf16 products for both reduced precisions
      DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::lowp::attention_bf16_scratch_floats(lowp_, shape, pool_.size())));
      cpu::lowp::attention_bf16(kernels_, lowp_, pool_, scratch_, shape, data_of(qkv), data_of(rope), data_of(out));
      return {};
    }
    DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::attention_scratch_floats(kernels_, shape, pool_.size())));
    cpu::attention(kernels_, pool_, scratch_, shape, data_of(qkv), data_of(rope), data_of(out));
    return {};
  }

  Status mean_tokens(const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim, int64_t begin, int64_t end,
                     DeviceBuffer& out) override {
    if (begin < 0 || end > tokens || begin >= end) {
      return make_error(ErrorCode::kInvalidArgument, "cpu backend: bad mean_tokens range");
    }
    DINOV3_RETURN_IF_ERROR(check_size(x, batch * tokens * dim, "mean_tokens x"));
    DINOV3_RETURN_IF_ERROR(check_size(out, batch * dim, "mean_tokens out"));
    // Small (one row per image): double accumulators in a contiguous pass over each token row.
    std::vector<double> acc(static_cast<size_t>(dim));
    for (int64_t b = 0; b < batch; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = begin; t < end; ++t) {
        const float* row = data_of(x) + (b * tokens + t) * dim;
        for (int64_t d = 0; d < dim; ++d) acc[static_cast<size_t>(d)] += row[d];
      }
      float* o = data_of(out) + b * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] = static_cast<float>(acc[static_cast<size_t>(d)] / static_cast<double>(end - begin));
    }
    return {};
  }

 private:
  // Every linear weight of a backend is packed for its precision: a PackedLinear for fp32, else a LowpLinear.
  bool lowp() const { return precision_ != Precision::kF32; }

  LinearDims dims_of(const Weight& w) const {
    if (lowp()) return {lowp_linear_of(w).out, lowp_linear_of(w).in};
    return {linear_of(w).out, linear_of(w).in};
  }

  Status run_linear(const float* a, int64_t lda, int64_t rows, const Weight& w, cpu::TileEpilogue op,
                    const float* scale, float* c, int64_t ldc) {
    if (lowp()) {
      return cpu::lowp::gemm_linear_lowp(lowp_, pool_, staging_, a, lda, rows, lowp_linear_of(w), op, scale, c, ldc);
    }
    cpu::gemm_linear(kernels_, pool_, a, lda, rows, linear_of(w), op, scale, c, ldc);
    return {};
  }

  Status reserve_scratch(size_t floats_per_thread) {
    try {
      scratch_.reserve(floats_per_thread);
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate per-thread scratch");
    }
    return {};
  }

  const cpu::CpuKernels& kernels_;
  Precision precision_;
  const cpu::lowp::LowpKernels& lowp_;
  cpu::lowp::LowpStaging staging_;  // activations converted for the current reduced-precision GEMM
  cpu::ThreadPool pool_;
  cpu::ThreadScratch scratch_;
  cpu::AlignedPtr patches_;  // im2col matrix of one image, grown to the largest seen
  size_t patches_capacity_ = 0;
  std::string isa_note_;
};

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options, Isa isa, std::string note) {
  if (options.threads < 0) {
    return make_error(ErrorCode::kInvalidArgument, "cpu backend: negative thread count");
  }
  const int threads = options.threads == 0 ? std::max(1, cpu_core_count()) : options.threads;
  // bf16 and int8 linear layers: AVX512_BF16 / AVX512_VNNI tiles where the CPU has them (and the
  // DINOV3_CPU_NO_BF16 / DINOV3_CPU_NO_VNNI test switches are off), else the AVX-512F emulation (same bits)
  // or, below AVX-512, the portable kernels.
  const CpuFeatures& f = cpu_features();
  const cpu::lowp::LowpKernels& lowp = cpu::lowp::select_lowp_kernels(
      isa == Isa::kAvx512, f.avx512_bf16 && !env_flag("DINOV3_CPU_NO_BF16"),
      f.avx512_vnni && !env_flag("DINOV3_CPU_NO_VNNI"));
  try {
    return std::unique_ptr<Backend>(new CpuBackend(isa, options.precision, lowp, threads, std::move(note)));
  } catch (const std::system_error& e) {
    return make_error(ErrorCode::kInternal, std::string("cpu backend: cannot start worker threads: ") + e.what());
  }
}

}  // namespace

Result<std::unique_ptr<Backend>> create_cpu_backend_for_isa(const BackendOptions& options, Isa isa) {
  if (!machine_supports(isa)) {
    return make_error(ErrorCode::kUnsupported,
                      std::string("cpu backend: this CPU/OS cannot run the ") + cpu::isa_name(isa) + " kernels");
  }
  return make_backend(options, isa, "");
}

Result<std::unique_ptr<Backend>> create_cpu_backend(const BackendOptions& options) {
  Isa best = Isa::kScalar;
  if (machine_supports(Isa::kAvx2)) best = Isa::kAvx2;
  if (machine_supports(Isa::kAvx512)) best = Isa::kAvx512;
  Isa isa = best;
  std::string note;
  if (const char* env = std::getenv("DINOV3_CPU_ISA"); env != nullptr && env[0] != '\0') {
    const std::string want(env);
    Isa requested;
    if (want == "avx512") {
      requested = Isa::kAvx512;
    } else if (want == "avx2") {
      requested = Isa::kAvx2;
    } else if (want == "scalar") {
      requested = Isa::kScalar;
    } else {
      return make_error(ErrorCode::kInvalidArgument,
                        "DINOV3_CPU_ISA='" + want + "' is not one of avx512, avx2, scalar");
    }
    if (static_cast<int>(requested) <= static_cast<int>(best)) {
      isa = requested;
    } else {
      note = " (DINOV3_CPU_ISA=" + want + " is not supported by this CPU)";
    }
  }
  return make_backend(options, isa, std::move(note));
}

}  // namespace dinov3
