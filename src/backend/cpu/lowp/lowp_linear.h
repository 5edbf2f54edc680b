// Linear-layer weights for the reduced-precision paths, packed once at load with the fp32 panel geometry
// (panels of kNr = 32 output columns, K-major, zero-padded past `out`) but with K grouped the way the dot
// product instructions consume it:
//   bf16: data[((p * k_pad/2 + kp) * 32 + j) * 2 + e] = bf16(W[p*32 + j][2*kp + e])       (vdpbf16ps pairs)
//   int8: data[((p * k_pad/4 + kq) * 32 + j) * 4 + e] = q(W[p*32 + j][4*kq + e])          (vpdpbusd quads)
// int8 weights are symmetric per output channel: W[n][k] ~ col_scale[n] * q, q in [-127, 127]; a second
// copy, symmetric per input channel (channel_q[k][n] ~ W[n][k] / channel_scale[k], K-major rows of panels * 32
// columns), serves the activations' outlier channels (lowp_kernels.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

#include "backend/cpu/aligned_floats.h"
#include "backend/cpu/weight_arena.h"
#include "dinov3/backend.h"

namespace dinov3::cpu::lowp {

inline constexpr int kNr = 32;  // output columns per panel: two zmm of float32/int32 accumulators
// Longest int8 dot product whose int32 sum cannot overflow: 255 * 127 * 65536 < 2^31.
inline constexpr int64_t kInt8MaxIn = 65536;

struct AlignedByteDelete {
  void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(kCacheLine)); }
};
using AlignedBytes = std::unique_ptr<uint8_t[], AlignedByteDelete>;
AlignedBytes allocate_bytes(size_t n);  // zero-initialised, 64-byte aligned; throws std::bad_alloc

// Bytes per element and elements per K group (one 32-bit lane of the dot-product instruction).
// The symmetric int8 grid of a weight channel whose largest |w| is m: q = round(v * 127 / m) (to nearest
// even, in double) in [-127, 127], scale m / 127. Load-time rounding and calibration's GPTQ
// (src/pipeline/weight_rounding.cpp) both take it.
// Ties to even without the current rounding mode (std::nearbyint follows it): std::round takes ties away
// from zero, and an exact tie goes to 2 * round(q / 2) instead.
inline double round_half_even(double q) {
  return std::fabs(q - std::trunc(q)) == 0.5 ? 2.0 * std::round(q / 2.0) : std::round(q);
}
inline int8_t int8_grid_round(double v, double m) {
  const double q = m > 0.0 ? round_half_even(v * 127.0 / m) : 0.0;
  return static_cast<int8_t>(std::clamp(q, -127.0, 127.0));
}
inline double int8_grid_scale(double m) { return m / 127.0; }
inline double int8_grid_value(int8_t q, double m) { return static_cast<double>(q) * m / 127.0; }

inline int element_bytes(Precision p) { return p == Precision::kInt8 ? 1 : 2; }
inline int k_group(Precision p) { return p == Precision::kInt8 ? 4 : 2; }

struct LowpLinear final : public Weight {
  Precision precision = Precision::kBF16;
  int64_t out = 0, in = 0;
  int64_t k_pad = 0;  // `in` rounded up to whole K groups
  int64_t panels = 0;
  std::shared_ptr<uint8_t> data;  // the panels, in the backend's WeightArena
  AlignedPtr bias;       // [panels * 32], zero-padded
  bool has_bias = false;
  AlignedPtr col_scale;  // int8: [panels * 32] per-channel weight scale
  std::unique_ptr<int32_t[]> col_sum;  // int8: [panels * 32] sum_k q[n][k] (see lowp_kernels.h)
  AlignedBytes channel_q;  // int8: [in, panels * 32]
  AlignedPtr channel_scale;  // int8: [in]

  const uint8_t* panel(int64_t p) const { return data.get() + p * k_pad * kNr * element_bytes(precision); }
};

// bf16 B operands in the panel layout above, K padded with zeros to k_pad (even), columns to whole panels.
// pack_bf16_transposed: of C = A · m^T (panels over the rows of m, K = its columns), m float32 row-major
// with row stride ld. The *_rows variants take m already in bf16 (row stride ld elements):
// pack_bf16_rows_transposed as above with K = k_pad columns, pack_bf16_rows_plain of C = A · m (panels over
// its `cols` columns, K = its `rows` rows).
void pack_bf16_transposed(const float* m, int64_t ld, int64_t rows, int64_t cols, int64_t k_pad, uint16_t* dst);
void pack_bf16_rows_transposed(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst);
void pack_bf16_rows_plain(const uint16_t* m, int64_t ld, int64_t rows, int64_t cols, int64_t k_pad, uint16_t* dst);

// precision: kBF16 or kInt8. w: [out, in] row-major; bias: [out] or nullptr; values (int8 only, optional,
// of w's shape): the int8 weights and per-output-channel scales to use instead of rounding w (the
// per-input-channel copy is still rounded from w). Throws std::bad_alloc.
std::unique_ptr<LowpLinear> pack_linear_lowp(Precision precision, const float* w, const float* bias, int64_t out,
                                             int64_t in, const Int8LinearValues& values = {},
                                             WeightArena* arena = nullptr);

}  // namespace dinov3::cpu::lowp
