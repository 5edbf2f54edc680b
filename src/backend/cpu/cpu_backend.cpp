#include "backend/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/attention/attention.h"
#include "backend/cpu/gemm/gemm.h"
#include "backend/cpu/gemm/packed_linear.h"
#include "backend/cpu/lowp/attention_bf16.h"
#include "backend/cpu/lowp/bf16.h"
#include "backend/cpu/lowp/lowp_gemm.h"
#include "backend/cpu/thread_pool.h"
#include "backend/op_checks.h"
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

// A buffer's values may also be held in bf16 (lowp/bf16.h's rounding) when the op that wrote them could
// round them on the way out: a bf16 GEMM that reads the buffer next takes these rows instead of converting
// the float32 ones (one pass over the activations and one thread-pool round trip less per linear layer).
// The copy is valid for `rows` rows of `cols` values (row stride round_up(cols, 2), zero-padded) from the
// buffer's start, and only until anything else writes the buffer (every write goes through output_of).
// When the op's output goes only to a bf16 linear layer (LinearEpilogue::consumer), the copy is all it
// writes: `only` is set and the float32 rows are filled from the copy if anything reads them (data_of).
struct Bf16Copy {
  cpu::lowp::AlignedBytes data;
  size_t capacity = 0;  // uint16 elements
  int64_t rows = 0, cols = 0;
  bool only = false;  // the float32 values of the copy's rows were not written
  static int64_t ld(int64_t cols) { return (cols + 1) / 2 * 2; }
};

class CpuBuffer final : public DeviceBuffer {
 public:
  CpuBuffer(const Backend& owner, size_t n) : DeviceBuffer(owner, n), data(cpu::allocate_aligned(n)) {}
  cpu::AlignedPtr data;
  Bf16Copy bf16;
};

struct CpuVector final : public Weight {
  cpu::AlignedPtr v;  // info().out values
};

// Every buffer and weight reaching these has passed op_checks: this backend made it, so the casts hold.
// The float32 values of a buffer an op reads; a buffer whose copy is its only form gets them from the copy
// first (the values rounded to bf16, as LinearEpilogue::consumer allows).
const float* data_of(const DeviceBuffer& b) {
  auto& cb = const_cast<CpuBuffer&>(static_cast<const CpuBuffer&>(b));
  Bf16Copy& c = cb.bf16;
  if (c.only && c.rows > 0) {
    const auto* h = reinterpret_cast<const uint16_t*>(c.data.get());
    for (int64_t r = 0; r < c.rows; ++r)
      for (int64_t i = 0; i < c.cols; ++i) cb.data.get()[r * c.cols + i] = cpu::lowp::float_from_bf16(h[r * Bf16Copy::ld(c.cols) + i]);
  }
  c.only = false;
  return cb.data.get();
}
// The float32 values of a buffer an op is about to write: its bf16 copy stops being valid (and the values
// of a copy-only buffer that the op does not overwrite are gone, as LinearEpilogue::consumer says).
float* output_of(DeviceBuffer& b) {
  auto& cb = static_cast<CpuBuffer&>(b);
  cb.bf16.rows = 0;
  cb.bf16.only = false;
  return cb.data.get();
}
// The valid bf16 copy of x's first `rows` rows of `cols` values, or nullptr.
const uint16_t* bf16_copy_of(const DeviceBuffer& x, int64_t rows, int64_t cols) {
  const Bf16Copy& c = static_cast<const CpuBuffer&>(x).bf16;
  const bool valid = c.rows > 0 && c.cols == cols && rows <= c.rows;
  return valid ? reinterpret_cast<const uint16_t*>(c.data.get()) : nullptr;
}
// Room for a bf16 copy of `rows` rows of `cols` values in y (call after output_of(y)), or nullptr when it
// cannot be had (the op then simply does not write one). Valid once the op finishes it (finish_bf16_copy).
uint16_t* bf16_copy_for(DeviceBuffer& y, int64_t rows, int64_t cols) {
  Bf16Copy& c = static_cast<CpuBuffer&>(y).bf16;
  const auto need = static_cast<size_t>(rows * Bf16Copy::ld(cols));
  if (need > c.capacity) {
    try {
      c.data = cpu::lowp::allocate_bytes(need * sizeof(uint16_t));
    } catch (const std::bad_alloc&) {
      c.capacity = 0;
      return nullptr;
    }
    c.capacity = need;
  }
  return reinterpret_cast<uint16_t*>(c.data.get());
}
// The op has written y's copy (its real columns): zero the pair padding of an odd width and mark it valid;
// `only`: the copy is all the op wrote.
void finish_bf16_copy(DeviceBuffer& y, int64_t rows, int64_t cols, bool only = false) {
  Bf16Copy& c = static_cast<CpuBuffer&>(y).bf16;
  if (cols % 2 != 0) {
    auto* d = reinterpret_cast<uint16_t*>(c.data.get());
    for (int64_t r = 0; r < rows; ++r) d[r * Bf16Copy::ld(cols) + cols] = 0;
  }
  c.rows = rows;
  c.cols = cols;
  c.only = only;
}
const cpu::PackedLinear& linear_of(const Weight& w) { return static_cast<const cpu::PackedLinear&>(w); }
const CpuVector& vector_of(const Weight& w) { return static_cast<const CpuVector&>(w); }
const cpu::lowp::LowpLinear& lowp_linear_of(const Weight& w) { return static_cast<const cpu::lowp::LowpLinear&>(w); }

// A flag variable is set when present and not "0" or empty.
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && std::string(v) != "0";
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

// With the bf16 instructions in use (lowp), the AVX-512 set whose bf16 outputs convert with them.
const cpu::CpuKernels& kernels_for(Isa isa, const cpu::lowp::LowpKernels& lowp) {
  switch (isa) {
    case Isa::kAvx512:
      return cpu::lowp::uses_bf16_instructions(lowp) ? cpu::cpu_kernels_avx512bf16() : cpu::cpu_kernels_avx512();
    case Isa::kAvx2: return cpu::cpu_kernels_avx2();
    case Isa::kScalar: break;
  }
  return cpu::cpu_kernels_scalar();
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(Isa isa, const BackendOptions& options, const cpu::lowp::LowpKernels& lowp, int threads,
             std::string isa_note)
      : kernels_(kernels_for(isa, lowp)),
        precision_(options.precision),
        int8_linear_precision_(options.int8_linear_precision),
        int8_linear_values_(options.int8_linear_values),
        bf16_copies_(options.precision != Precision::kF32 && !env_flag("DINOV3_CPU_NO_BF16_COPIES")),
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
  std::vector<std::string> notes() const override {
    const char* note = precision_ == Precision::kBF16   ? lowp_.bf16_note
                       : precision_ == Precision::kInt8 ? lowp_.int8_note
                                                        : nullptr;
    if (note == nullptr) return {};
    return {note};
  }
  // Big batches run in passes whose activations stay cache-resident: measured on ViT-S at batch 8, passes
  // of 2-5 images give 5% (fp32) to 17% (int8) more images/s than one pass over all 2088 rows. 12 MiB is
  // 5 ViT-S images (2304 floats per token row); 8 MiB (3 images) measured 1% slower in fp32.
  int64_t max_rows_per_pass(int64_t floats_per_row) const override {
    constexpr int64_t kActivationBytes = int64_t{12} << 20;
    return std::max<int64_t>(1, kActivationBytes / (std::max<int64_t>(floats_per_row, 1) * 4));
  }

  Result<std::unique_ptr<DeviceBuffer>> allocate(size_t n) override {
    try {
      return std::unique_ptr<DeviceBuffer>(new CpuBuffer(*this, n));
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate " + std::to_string(n) + " floats");
    }
  }

  Status upload(DeviceBuffer& dst, size_t offset, const float* src, size_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::upload(*this, dst, offset, src, n));
    float* out = output_of(dst);
    if (n > 0) std::memcpy(out + offset, src, n * sizeof(float));
    return {};
  }

  Status download(const DeviceBuffer& src, size_t offset, float* dst, size_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::download(*this, src, offset, dst, n));
    if (n > 0) std::memcpy(dst, data_of(src) + offset, n * sizeof(float));
    return {};
  }

  Result<std::unique_ptr<Weight>> prepare_linear(const float* w, const float* bias, int64_t out,
                                                 int64_t in) override {
    DINOV3_RETURN_IF_ERROR(op_checks::prepare_linear(*this, w, out, in));
    if (precision_ == Precision::kInt8 && in > cpu::lowp::kInt8MaxIn) {
      return make_error(ErrorCode::kUnsupported, "cpu backend: int8 linear layers take at most " +
                                                     std::to_string(cpu::lowp::kInt8MaxIn) + " inputs, not " +
                                                     std::to_string(in));
    }
    try {
      std::unique_ptr<Weight> packed;
      if (lowp()) {
        Precision p = precision_;
        if (p == Precision::kInt8 && int8_linear_precision_) p = int8_linear_precision_(linears_prepared_);
        if (p != Precision::kInt8 && p != Precision::kBF16) {
          return make_error(ErrorCode::kInvalidArgument,
                            "cpu backend: an int8 backend's layer runs int8 or bf16; linear layer " +
                                std::to_string(linears_prepared_) + " was given precision " +
                                std::to_string(static_cast<int>(p)) + " (" + precision_name(p) + ")");
        }
        Int8LinearValues values;
        if (p == Precision::kInt8 && int8_linear_values_) values = int8_linear_values_(linears_prepared_);
        if (values.q != nullptr && (values.out != out || values.in != in || values.scale == nullptr)) {
          return make_error(ErrorCode::kInvalidArgument,
                            "cpu backend: linear layer " + std::to_string(linears_prepared_) + " is [" +
                                std::to_string(out) + ", " + std::to_string(in) + "], its int8 values [" +
                                std::to_string(values.out) + ", " + std::to_string(values.in) + "]" +
                                (values.scale == nullptr ? " without scales" : ""));
        }
        ++linears_prepared_;
        packed = cpu::lowp::pack_linear_lowp(p, w, bias, out, in, values, &weight_arena_);
      } else {
        packed = cpu::pack_linear(w, bias, out, in, kernels_.nr, &weight_arena_);
      }
      packed->set_info(op_checks::linear_info(*this, out, in));
      return packed;
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate a packed linear weight");
    }
  }

  Result<std::unique_ptr<Weight>> prepare_vector(const float* v, int64_t n) override {
    DINOV3_RETURN_IF_ERROR(op_checks::prepare_vector(*this, v, n));
    try {
      auto vec = std::make_unique<CpuVector>();
      vec->v = cpu::allocate_aligned(static_cast<size_t>(n));
      if (n > 0) std::memcpy(vec->v.get(), v, static_cast<size_t>(n) * sizeof(float));
      vec->set_info(op_checks::vector_info(*this, n));
      return std::unique_ptr<Weight>(std::move(vec));
    } catch (const std::bad_alloc&) {
      return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate a vector weight");
    }
  }

  Status embed(const DeviceBuffer& image, int64_t batch, int64_t channels, int64_t height, int64_t width,
               int64_t patch, const Weight& patch_linear, const Weight& prefix, int64_t prefix_count,
               int64_t dim, DeviceBuffer& tokens) override {
    DINOV3_RETURN_IF_ERROR(op_checks::embed(*this, image, batch, channels, height, width, patch, patch_linear, prefix,
                                            prefix_count, dim, tokens));
    const int64_t gh = height / patch, gw = width / patch, patches = gh * gw;
    const int64_t per_image = prefix_count + patches;
    const int64_t cols = patch_linear.info().in;
    // A bf16 patch layer reads bf16 rows: the patches go straight into them (the staging rows its GEMM would
    // convert the float32 im2col matrix into, by the same conversion, so the same values), one pass over the
    // image instead of a float32 copy of it and a conversion pass. A bf16 copy like the others (Bf16Copy), so
    // DINOV3_CPU_NO_BF16_COPIES=1 takes the float32 path, and the tests that compare both hold its bits.
    const bool bf16_patches = keeps_bf16_copy(&patch_linear);
    const int64_t k_pad = bf16_patches ? lowp_linear_of(patch_linear).k_pad : cols;
    float* a = nullptr;
    uint16_t* a_bf16 = nullptr;
    if (bf16_patches) {
      DINOV3_RETURN_IF_ERROR(staging_.reserve(patches, k_pad * 2));
      a_bf16 = reinterpret_cast<uint16_t*>(staging_.rows_data());
    } else {
      if (patches_capacity_ < static_cast<size_t>(patches * cols)) {
        try {
          patches_ = cpu::allocate_aligned(static_cast<size_t>(patches * cols));
        } catch (const std::bad_alloc&) {
          return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate the patch matrix");
        }
        patches_capacity_ = static_cast<size_t>(patches * cols);
      }
      a = patches_.get();
    }
    float* token_rows = output_of(tokens);
    for (int64_t b = 0; b < batch; ++b) {
      const float* img = data_of(image) + b * channels * height * width;
      // im2col: row i*gw + j holds patch (i, j) in the conv weight's (c, ky, kx) order.
      pool_.run(gh, [&](int64_t i, int) {
        for (int64_t j = 0; j < gw; ++j) {
          const float* patch_src = img + i * patch * width + j * patch;  // channel 0, row ky = 0
          if (a_bf16 != nullptr) {
            uint16_t* row = a_bf16 + (i * gw + j) * k_pad;
            for (int64_t c = 0; c < channels; ++c) {
              lowp_.to_bf16_rows(patch_src + c * height * width, width, patch, patch, patch, row + c * patch * patch);
            }
            std::fill(row + cols, row + k_pad, 0);
          } else {
            float* row = a + (i * gw + j) * cols;
            for (int64_t c = 0; c < channels; ++c)
              for (int64_t ky = 0; ky < patch; ++ky) {
                std::memcpy(row + (c * patch + ky) * patch, patch_src + (c * height + ky) * width,
                            static_cast<size_t>(patch) * sizeof(float));
              }
          }
        }
      });
      float* seq = token_rows + b * per_image * dim;
      std::memcpy(seq, vector_of(prefix).v.get(), static_cast<size_t>(prefix_count * dim) * sizeof(float));
      cpu::lowp::Bf16Copies copies;
      copies.in = a_bf16;
      DINOV3_RETURN_IF_ERROR(run_linear(a, cols, patches, patch_linear, cpu::TileEpilogue::kStore, nullptr,
                                        seq + prefix_count * dim, dim, copies));
    }
    return {};
  }

  Status layer_norm(const DeviceBuffer& x, int64_t rows, int64_t dim, const Weight& gamma, const Weight& beta,
                    float eps, DeviceBuffer& y, const Weight* consumer = nullptr) override {
    DINOV3_RETURN_IF_ERROR(op_checks::layer_norm(*this, x, rows, dim, gamma, beta, y, consumer));
    const NormRows norm = begin_norm(data_of(x), rows, dim, gamma, beta, eps, y, consumer);
    const int64_t chunks = std::min<int64_t>(rows, 4 * pool_.size());
    const int64_t per_chunk = chunks > 0 ? (rows + chunks - 1) / chunks : 0;
    pool_.run(chunks, [&](int64_t c, int) {
      const int64_t r0 = c * per_chunk, r1 = std::min(rows, r0 + per_chunk);
      if (r0 < r1) norm.run(r0, r1);
    });
    finish_norm(norm, rows, y);
    return {};
  }

  // The residual GEMM normalises each row tile the moment its last panel is stored (gemm.h's RowsDone), so
  // the LayerNorm needs no pass or barrier of its own; the same kernel on the same rows gives the same bits.
  Status linear_residual_layer_norm(const DeviceBuffer& x, int64_t rows, const Weight& weight,
                                    const Weight& layer_scale, DeviceBuffer& y, const Weight& gamma,
                                    const Weight& beta, float eps, DeviceBuffer& z,
                                    const Weight* z_consumer = nullptr) override {
    DINOV3_RETURN_IF_ERROR(op_checks::linear_residual_layer_norm(*this, x, rows, weight, layer_scale, y, gamma, beta,
                                                                 z, z_consumer));
    const WeightInfo& w = weight.info();
    cpu::lowp::Bf16Copies copies;
    copies.in = bf16_copy_of(x, rows, w.in);
    const float* in = input_of(x, copies.in, weight);
    float* out = output_of(y);
    const NormRows norm = begin_norm(out, rows, w.out, gamma, beta, eps, z, z_consumer);
    if (row_counts_capacity_ < rows) {
      try {
        row_counts_ = std::make_unique<std::atomic<int32_t>[]>(static_cast<size_t>(rows));
      } catch (const std::bad_alloc&) {
        return make_error(ErrorCode::kOutOfMemory, "cpu backend: cannot allocate the row counters");
      }
      row_counts_capacity_ = rows;
    }
    for (int64_t i = 0; i < rows; ++i) row_counts_[i].store(0, std::memory_order_relaxed);
    cpu::RowsDone done;
    done.fn = [](void* ctx, int64_t row0, int n) { static_cast<const NormRows*>(ctx)->run(row0, row0 + n); };
    done.ctx = const_cast<NormRows*>(&norm);
    done.counts = row_counts_.get();
    DINOV3_RETURN_IF_ERROR(run_linear(in, w.in, rows, weight, cpu::TileEpilogue::kScaleAdd,
                                      vector_of(layer_scale).v.get(), out, w.out, copies, &done));
    finish_norm(norm, rows, z);
    return {};
  }

  Status linear(const DeviceBuffer& x, int64_t rows, const Weight& weight, const LinearEpilogue& epilogue,
                DeviceBuffer& y) override {
    DINOV3_RETURN_IF_ERROR(op_checks::linear(*this, x, rows, weight, epilogue, y));
    const WeightInfo& w = weight.info();
    // A reduced-precision backend's GELU output feeds the next linear layer, which rounds it to bf16 or int8:
    // the lower-precision GELU serves it (TileEpilogue::kGeluLowp).
    const bool gelu = epilogue.activation == Activation::kGelu;
    cpu::TileEpilogue op = !gelu   ? cpu::TileEpilogue::kStore
                           : lowp() ? cpu::TileEpilogue::kGeluLowp
                                    : cpu::TileEpilogue::kGelu;
    const float* scale = nullptr;
    if (epilogue.residual_scale != nullptr) {
      op = cpu::TileEpilogue::kScaleAdd;
      scale = vector_of(*epilogue.residual_scale).v.get();
    }
    cpu::lowp::Bf16Copies copies;
    copies.in = bf16_copy_of(x, rows, w.in);
    const float* in = input_of(x, copies.in, weight);
    float* out = output_of(y);
    // An activation's output (an MLP hidden layer) feeds the next linear layer: keep it in bf16 too, or
    // only in bf16 when that layer is named and reads bf16.
    // (op_checks refuses an activation on a residual linear, so `gelu` is whether op is a GELU.)
    if (keeps_bf16_copy(epilogue.consumer, gelu)) copies.out = bf16_copy_for(y, rows, w.out);
    copies.ld_out = Bf16Copy::ld(w.out);
    copies.out_only = copies.out != nullptr && reads_bf16(epilogue.consumer);
    // Attention's qkv in bf16: all that attention reads from it (bf16_attention_input).
    if (epilogue.attention_input && bf16_attention_input() && bf16_copies_) {
      copies.out = bf16_copy_for(y, rows, w.out);
      copies.out_only = copies.out != nullptr;
    }
    DINOV3_RETURN_IF_ERROR(run_linear(in, w.in, rows, weight, op, scale, out, w.out, copies));
    if (copies.out != nullptr) finish_bf16_copy(y, rows, w.out, copies.out_only);
    return {};
  }

  Status linear_swiglu(const DeviceBuffer& x, int64_t rows, const Weight& gate, const Weight& up, DeviceBuffer& y,
                       const Weight* consumer = nullptr) override {
    DINOV3_RETURN_IF_ERROR(op_checks::linear_swiglu(*this, x, rows, gate, up, y, consumer));
    const WeightInfo& wg = gate.info();
    if (lowp()) {
      DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::lowp::swiglu_scratch_floats_lowp()));
      cpu::lowp::Bf16Copies copies;
      copies.in = bf16_copy_of(x, rows, wg.in);
      const float* in = input_of(x, copies.in, gate);
      float* out = output_of(y);
      if (keeps_bf16_copy(consumer)) copies.out = bf16_copy_for(y, rows, wg.out);  // it feeds a linear layer
      copies.ld_out = Bf16Copy::ld(wg.out);
      copies.out_only = copies.out != nullptr && reads_bf16(consumer);
      DINOV3_RETURN_IF_ERROR(cpu::lowp::gemm_swiglu_lowp(lowp_, pool_, staging_, scratch_, in, wg.in, rows,
                                                         lowp_linear_of(gate), lowp_linear_of(up), out, wg.out,
                                                         copies));
      if (copies.out != nullptr) finish_bf16_copy(y, rows, wg.out, copies.out_only);
      return {};
    }
    DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::swiglu_scratch_floats(kernels_)));
    cpu::gemm_swiglu(kernels_, pool_, scratch_, data_of(x), wg.in, rows, linear_of(gate), linear_of(up), output_of(y),
                     wg.out);
    return {};
  }

  Status attention(const DeviceBuffer& qkv, int64_t batch, int64_t tokens, int64_t heads, int64_t head_dim,
                   int64_t prefix_count, const DeviceBuffer& rope, DeviceBuffer& out,
                   const Weight* consumer = nullptr) override {
    DINOV3_RETURN_IF_ERROR(
        op_checks::attention(*this, qkv, batch, tokens, heads, head_dim, prefix_count, rope, out, consumer));
    float* o = output_of(out);
    if (batch == 0 || tokens == 0) return {};
    const cpu::AttentionShape shape{batch, tokens, heads, head_dim, prefix_count};
    if (lowp()) {  // bf16 products for both reduced precisions
      DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::lowp::attention_bf16_scratch_floats(lowp_, shape, pool_.size())));
      // The attention output feeds the projection: keep it in bf16 too.
      const int64_t rows = batch * tokens, dim = heads * head_dim;
      uint16_t* o_bf16 = keeps_bf16_copy(consumer) ? bf16_copy_for(out, rows, dim) : nullptr;
      const uint16_t* qkv_bf16 = nullptr;
      if (bf16_attention_input()) {
        // q, k and v rounded to bf16 first: the qkv layer's copy, or its float32 rows converted here.
        qkv_bf16 = bf16_copy_of(qkv, rows, 3 * dim);
        if (qkv_bf16 == nullptr) {
          DINOV3_ASSIGN_OR_RETURN(qkv_bf16, cpu::lowp::bf16_rows(lowp_, pool_, staging_, data_of(qkv), 3 * dim, rows,
                                                                 3 * dim, Bf16Copy::ld(3 * dim)));
        }
      }
      const float* qkv_f32 = qkv_bf16 == nullptr ? data_of(qkv) : nullptr;
      const bool only =
          cpu::lowp::attention_bf16(kernels_, lowp_, pool_, scratch_, shape, qkv_f32, qkv_bf16, Bf16Copy::ld(3 * dim),
                                    data_of(rope), o, o_bf16, Bf16Copy::ld(dim), reads_bf16(consumer));
      if (o_bf16 != nullptr) finish_bf16_copy(out, rows, dim, only);
      return {};
    }
    DINOV3_RETURN_IF_ERROR(reserve_scratch(cpu::attention_scratch_floats(kernels_, shape, pool_.size())));
    cpu::attention(kernels_, pool_, scratch_, shape, data_of(qkv), data_of(rope), o);
    return {};
  }

  Status mean_tokens(const DeviceBuffer& x, int64_t batch, int64_t tokens, int64_t dim, int64_t begin, int64_t end,
                     DeviceBuffer& out) override {
    DINOV3_RETURN_IF_ERROR(op_checks::mean_tokens(*this, x, batch, tokens, dim, begin, end, out));
    // Small (one row per image): double accumulators in a contiguous pass over each token row.
    std::vector<double> acc(static_cast<size_t>(dim));
    float* out_rows = output_of(out);
    for (int64_t b = 0; b < batch; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t t = begin; t < end; ++t) {
        const float* row = data_of(x) + (b * tokens + t) * dim;
        for (int64_t d = 0; d < dim; ++d) acc[static_cast<size_t>(d)] += row[d];
      }
      float* o = out_rows + b * dim;
      for (int64_t d = 0; d < dim; ++d) o[d] = static_cast<float>(acc[static_cast<size_t>(d)] / static_cast<double>(end - begin));
    }
    return {};
  }

 private:
  // Every linear weight of a backend is packed for its precision: a PackedLinear for fp32, else a LowpLinear.
  bool lowp() const { return precision_ != Precision::kF32; }

  // Whether attention rounds q, k and v to bf16 before RoPE (and so reads the qkv layer's bf16 copy): at
  // both reduced precisions, whose attention multiplies in bf16.
  bool bf16_attention_input() const { return lowp(); }
  // Whether a linear layer runs in bf16 (and so reads a bf16 copy of its input when there is one).
  bool reads_bf16(const Weight* w) const {
    return w != nullptr && lowp() && lowp_linear_of(*w).precision == Precision::kBF16;
  }
  // Whether an op whose output feeds linear layers writes a bf16 copy: when the model names the reader,
  // exactly when that layer reads bf16 (an int8 one quantises the float32 rows); when not, `unnamed`.
  bool keeps_bf16_copy(const Weight* consumer, bool unnamed = true) const {
    if (!bf16_copies_) return false;
    return consumer != nullptr ? reads_bf16(consumer) : unnamed;
  }
  // The float32 input of linear layer w: not filled in from a copy-only buffer when w reads the copy.
  const float* input_of(const DeviceBuffer& x, const uint16_t* copy, const Weight& w) const {
    if (copy != nullptr && reads_bf16(&w)) return static_cast<const CpuBuffer&>(x).data.get();
    return data_of(x);
  }

  Status run_linear(const float* a, int64_t lda, int64_t rows, const Weight& w, cpu::TileEpilogue op,
                    const float* scale, float* c, int64_t ldc, const cpu::lowp::Bf16Copies& copies = {},
                    const cpu::RowsDone* done = nullptr) {
    if (lowp()) {
      return cpu::lowp::gemm_linear_lowp(lowp_, pool_, staging_, a, lda, rows, lowp_linear_of(w), op, scale, c, ldc,
                                         copies, done);
    }
    cpu::gemm_linear(kernels_, pool_, a, lda, rows, linear_of(w), op, scale, c, ldc, done);
    return {};
  }

  // A LayerNorm of rows of `in` into y: run(r0, r1) normalises rows [r0, r1) (any thread, any order).
  struct NormRows {
    const cpu::CpuKernels* kernels;
    const float* in;
    float* out;          // null when the bf16 copy is all y keeps
    uint16_t* out_bf16;  // y's bf16 copy, or null
    int64_t ld_bf16, dim;
    const float* gamma;
    const float* beta;
    float eps;
    void run(int64_t r0, int64_t r1) const {
      kernels->layer_norm_rows(in + r0 * dim, out != nullptr ? out + r0 * dim : nullptr, r1 - r0, dim, gamma, beta,
                               eps, out_bf16 != nullptr ? out_bf16 + r0 * ld_bf16 : nullptr, ld_bf16);
    }
  };
  // LayerNorm's output feeds linear layers: keep it in bf16 too for a bf16 one (only in bf16 when the
  // consumer named is one). `in` is read before y is claimed for writing (y may be x).
  NormRows begin_norm(const float* in, int64_t rows, int64_t dim, const Weight& gamma, const Weight& beta, float eps,
                      DeviceBuffer& y, const Weight* consumer) {
    NormRows n{&kernels_, in, output_of(y), nullptr, Bf16Copy::ld(dim), dim, vector_of(gamma).v.get(),
               vector_of(beta).v.get(), eps};
    n.out_bf16 = keeps_bf16_copy(consumer) ? bf16_copy_for(y, rows, dim) : nullptr;
    if (n.out_bf16 != nullptr && reads_bf16(consumer)) n.out = nullptr;
    return n;
  }
  void finish_norm(const NormRows& n, int64_t rows, DeviceBuffer& y) {
    if (n.out_bf16 != nullptr) finish_bf16_copy(y, rows, n.dim, /*only=*/n.out == nullptr);
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
  std::function<Precision(int64_t)> int8_linear_precision_;  // BackendOptions::int8_linear_precision
  std::function<Int8LinearValues(int64_t)> int8_linear_values_;  // BackendOptions::int8_linear_values
  int64_t linears_prepared_ = 0;
  // Whether ops whose output feeds bf16 linear layers or attention also write it in bf16 (Bf16Copy): at both
  // reduced precisions (where every layer is int8, only qkv's for attention). DINOV3_CPU_NO_BF16_COPIES=1
  // turns them off (same results).
  bool bf16_copies_;
  const cpu::lowp::LowpKernels& lowp_;
  cpu::WeightArena weight_arena_;   // the packed linear weights (weight_arena.h: huge pages)
  cpu::lowp::LowpStaging staging_;  // activations converted for the current reduced-precision GEMM
  cpu::ThreadPool pool_;
  cpu::ThreadScratch scratch_;
  cpu::AlignedPtr patches_;  // im2col matrix of one image, grown to the largest seen
  std::unique_ptr<std::atomic<int32_t>[]> row_counts_;  // linear_residual_layer_norm's RowsDone counters
  int64_t row_counts_capacity_ = 0;
  size_t patches_capacity_ = 0;
  std::string isa_note_;
};

Result<std::unique_ptr<Backend>> make_backend(const BackendOptions& options, Isa isa, std::string note) {
  if (options.threads < 0) {
    return make_error(ErrorCode::kInvalidArgument, "cpu backend: negative thread count");
  }
  const int cores = std::max(1, cpu_core_count());
  // Each worker has its own scratch and spin-waits between ops, so far more workers than cores only cost
  // memory and time (20000 took seconds to start and a forward ran 100x slower): a bounded count.
  const int max_threads = std::max(256, 4 * cores);
  if (options.threads > max_threads) {
    return make_error(ErrorCode::kInvalidArgument, "cpu backend: " + std::to_string(options.threads) +
                                                       " threads is more than " + std::to_string(max_threads) +
                                                       " (this machine has " + std::to_string(cores) + " cores)");
  }
  const int threads = options.threads == 0 ? cores : options.threads;
  // bf16 and int8 linear layers: AVX512_BF16 / AVX512_VNNI tiles where the CPU has them (and the
  // DINOV3_CPU_NO_BF16 / DINOV3_CPU_NO_VNNI test switches are off), else the AVX-512F emulation (same bits)
  // or, below AVX-512, the AVX2 emulation (the same dot products) or the portable kernels.
  const CpuFeatures& f = cpu_features();
  const cpu::lowp::LowpKernels& lowp = cpu::lowp::select_lowp_kernels(
      isa, f.avx512_bf16 && !env_flag("DINOV3_CPU_NO_BF16"),
      f.avx512_vnni && !env_flag("DINOV3_CPU_NO_VNNI"));
  try {
    return std::unique_ptr<Backend>(new CpuBackend(isa, options, lowp, threads, std::move(note)));
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
