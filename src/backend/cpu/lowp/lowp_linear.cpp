#include "backend/cpu/lowp/lowp_linear.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/lowp/bf16.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "util/float_env.h"

namespace dinov3::cpu::lowp {

AlignedBytes allocate_bytes(size_t n) {
  const size_t bytes = n == 0 ? 1 : n;
  auto* p = static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t(kCacheLine)));
  std::memset(p, 0, bytes);
  return AlignedBytes(p);
}

namespace {

// Panels of kNr columns with K in pairs: word (k / 2, j) of panel p holds value(k, p * kNr + j), even k in
// its low half; zero where k >= k_count or the column >= n_count, up to k_pad (even).
template <class Value>
void pack_pairs(int64_t k_count, int64_t n_count, int64_t k_pad, Value value, uint16_t* dst) {
  const int64_t panels = (n_count + kNr - 1) / kNr;
  for (int64_t p = 0; p < panels; ++p) {
    for (int64_t k = 0; k < k_pad; ++k) {
      uint16_t* out = dst + (p * k_pad + (k & ~int64_t{1})) * kNr + (k & 1);
      for (int64_t j = 0; j < kNr; ++j) {
        const int64_t n = p * kNr + j;
        out[2 * j] = k < k_count && n < n_count ? value(k, n) : 0;
      }
    }
  }
}

}  // namespace

void pack_bf16_transposed(const float* m, int64_t ld, int64_t rows, int64_t cols, int64_t k_pad, uint16_t* dst) {
  pack_pairs(cols, rows, k_pad, [&](int64_t k, int64_t n) { return bf16_from_float(m[n * ld + k]); }, dst);
}

void to_bf16_pairs_scalar(const float* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  pack_pairs(rows, cols, rows_pad, [&](int64_t r, int64_t c) { return bf16_from_float(x[r * ldx + c]); }, dst);
}

void bf16_pairs_scalar(const uint16_t* x, int64_t ldx, int64_t rows, int64_t cols, int64_t rows_pad, uint16_t* dst) {
  pack_pairs(rows, cols, rows_pad, [&](int64_t r, int64_t c) { return x[r * ldx + c]; }, dst);
}

// A K pair of one row is one 32-bit word, so the transposition moves words.
void pack_bf16_rows_transposed(const uint16_t* m, int64_t ld, int64_t rows, int64_t k_pad, uint16_t* dst) {
  const int64_t panels = (rows + kNr - 1) / kNr, pairs = k_pad / 2;
  for (int64_t p = 0; p < panels; ++p) {
    uint16_t* panel = dst + p * k_pad * kNr;
    for (int64_t j = 0; j < kNr; ++j) {
      const int64_t n = p * kNr + j;
      for (int64_t kp = 0; kp < pairs; ++kp) {
        uint32_t word = 0;
        if (n < rows) std::memcpy(&word, m + n * ld + 2 * kp, sizeof(word));
        std::memcpy(panel + (kp * kNr + j) * 2, &word, sizeof(word));
      }
    }
  }
}

void pack_bf16_rows_plain(const uint16_t* m, int64_t ld, int64_t rows, int64_t cols, int64_t k_pad, uint16_t* dst) {
  const int64_t panels = (cols + kNr - 1) / kNr;
  for (int64_t p = 0; p < panels; ++p) {
    const int64_t valid = std::min<int64_t>(kNr, cols - p * kNr);
    for (int64_t k = 0; k < k_pad; ++k) {
      uint16_t* out = dst + (p * k_pad + (k & ~int64_t{1})) * kNr + (k & 1);
      int64_t j = 0;
      if (k < rows) {
        for (const uint16_t* src = m + k * ld + p * kNr; j < valid; ++j) out[2 * j] = src[j];
      }
      for (; j < kNr; ++j) out[2 * j] = 0;
    }
  }
}

namespace {

// Symmetric int8 of the n values v[0], v[stride], ... on the grid of their max |v| (int8_grid_round);
// put(i, q) receives each value's q. Returns the scale.
template <class Put>
float quantize_symmetric(const float* v, int64_t n, int64_t stride, Put&& put) {
  double m = 0.0;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(v[i * stride])));
  for (int64_t i = 0; i < n; ++i) put(i, int8_grid_round(v[i * stride], m));
  return static_cast<float>(int8_grid_scale(m));
}

// Per output channel into the panels (the column sums feed the zero-point correction): the given values,
// else w rounded; then the per-input-channel copy from w (lowp_kernels.h).
void pack_int8(const float* w, const Int8LinearValues& values, LowpLinear& lin) {
  auto* dst = reinterpret_cast<int8_t*>(lin.data.get());
  for (int64_t n = 0; n < lin.out; ++n) {
    const int64_t p = n / kNr, j = n % kNr;
    int32_t sum = 0;
    auto put = [&](int64_t k, int8_t q) {
      dst[((p * lin.k_pad / 4 + k / 4) * kNr + j) * 4 + k % 4] = q;
      sum += q;
    };
    if (values.q != nullptr) {
      for (int64_t k = 0; k < lin.in; ++k) put(k, values.q[n * lin.in + k]);
      lin.col_scale[n] = values.scale[n];
    } else {
      lin.col_scale[n] = quantize_symmetric(w + n * lin.in, lin.in, 1, put);
    }
    lin.col_sum[n] = sum;
  }
  const int64_t cols = lin.panels * kNr;
  auto* channel = reinterpret_cast<int8_t*>(lin.channel_q.get());
  for (int64_t k = 0; k < lin.in; ++k) {
    lin.channel_scale[k] =
        quantize_symmetric(w + k, lin.out, lin.in, [&](int64_t n, int8_t q) { channel[k * cols + n] = q; });
  }
}

}  // namespace

std::unique_ptr<LowpLinear> pack_linear_lowp(Precision precision, const float* w, const float* bias, int64_t out,
                                             int64_t in, const Int8LinearValues& values, WeightArena* arena) {
  const ScopedDefaultFloatEnv float_env;  // the int8 grid and its scales, whatever the caller's mode
  auto lin = std::make_unique<LowpLinear>();
  lin->precision = precision;
  lin->out = out;
  lin->in = in;
  const int64_t group = k_group(precision);
  lin->k_pad = (in + group - 1) / group * group;
  lin->panels = (out + kNr - 1) / kNr;
  const int64_t cols = lin->panels * kNr;
  lin->data = allocate_weight_bytes(arena, static_cast<size_t>(cols * lin->k_pad * element_bytes(precision)));
  lin->bias = allocate_aligned(static_cast<size_t>(cols));
  if (bias != nullptr) std::copy(bias, bias + out, lin->bias.get());
  lin->has_bias = bias != nullptr;
  if (precision == Precision::kInt8) {
    lin->col_scale = allocate_aligned(static_cast<size_t>(cols));
    lin->col_sum = std::make_unique<int32_t[]>(static_cast<size_t>(cols));
    lin->channel_q = allocate_bytes(static_cast<size_t>(in * cols));
    lin->channel_scale = allocate_aligned(static_cast<size_t>(in));
    pack_int8(w, values, *lin);
  } else {
    pack_bf16_transposed(w, in, out, in, lin->k_pad, reinterpret_cast<uint16_t*>(lin->data.get()));
  }
  return lin;
}

}  // namespace dinov3::cpu::lowp
