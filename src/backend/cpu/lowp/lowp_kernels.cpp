#include "backend/cpu/lowp/lowp_kernels.h"

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backend/cpu/lowp/lowp_linear.h"

namespace dinov3::cpu::lowp {

float outlier_bar(float rest, int64_t n) {
  return kOutlierRms * std::sqrt(std::max(rest, 0.0f) / static_cast<float>(n));
}

namespace {

// The ranking of candidates: larger magnitude first, the lower channel among equals.
bool ranks_before(float magnitude_a, int32_t index_a, float magnitude_b, int32_t index_b) {
  return magnitude_a > magnitude_b || (magnitude_a == magnitude_b && index_a < index_b);
}

}  // namespace

void TopMagnitudes::offer(float m, int32_t i) {
  if (count < kMaxOutliers) {
    magnitude[count] = m;
    index[count++] = i;
  } else {
    int smallest = 0;  // the one to give up: the last in ranking
    for (int j = 1; j < count; ++j) {
      if (ranks_before(magnitude[smallest], index[smallest], magnitude[j], index[j])) smallest = j;
    }
    magnitude[smallest] = m;
    index[smallest] = i;
  }
  if (count == kMaxOutliers) cut = *std::min_element(magnitude, magnitude + count);
}

namespace {

// Insertion sort of at most kMaxOutliers entries by `before`.
template <class T, class Before>
void sort_small(T* v, int n, Before before) {
  for (int i = 1; i < n; ++i) {
    const T x = v[i];
    int j = i;
    for (; j > 0 && before(x, v[j - 1]); --j) v[j] = v[j - 1];
    v[j] = x;
  }
}

// From the largest in `top` down; returns how many, their channels in index (largest first), and the sum
// of squares left.
int take_outliers(const TopMagnitudes& top, int64_t k, float sum_squares, int32_t* index, float* rest) {
  int order[kMaxOutliers];
  for (int j = 0; j < top.count; ++j) order[j] = j;
  sort_small(order, top.count, [&](int a, int b) {
    return ranks_before(top.magnitude[a], top.index[a], top.magnitude[b], top.index[b]);
  });
  int n = 0;
  *rest = sum_squares;
  for (; n < top.count; ++n) {
    const float m = top.magnitude[order[n]];
    if (!(m > outlier_bar(*rest, k - n))) break;
    *rest -= m * m;
    index[n] = top.index[order[n]];
  }
  return n;
}

}  // namespace

int find_outliers(const float* x, int64_t k, float sum_squares, float amax, GatherFn gather, int32_t* index,
                  float* value) {
  const float bar = outlier_bar(sum_squares, k);
  if (!(amax > bar)) return 0;
  float floor = 0.5f * bar;
  int n = 0;
  for (int pass = 0; pass < kOutlierSearches; ++pass) {
    TopMagnitudes top(floor);
    gather(x, k, top);
    float rest;
    n = take_outliers(top, k, sum_squares, index, &rest);
    const float lower = 0.5f * outlier_bar(rest, k - n);
    if (n == 0 || n == kMaxOutliers || !(lower < floor)) break;
    floor = lower;
  }
  sort_small(index, n, [](int32_t a, int32_t b) { return a < b; });
  for (int j = 0; j < n; ++j) value[j] = x[index[j]];
  return n;
}

void u8_scale_zero(float lo, float hi, float sum_squares, float* scale, int32_t* zero) {
  if (!(sum_squares <= FLT_MAX)) {  // the row holds inf or NaN: its outputs are NaN, as in float32
    *scale = std::nanf("");
    *zero = 0;
    return;
  }
  lo = std::min(lo, 0.0f);
  hi = std::max(hi, 0.0f);
  const float s = (hi - lo) / 255.0f;
  *scale = s;
  *zero = 0;
  // An all-zero row keeps s = 0 (every u = 0 = z).
  if (s >= FLT_MIN && s <= FLT_MAX) *zero = static_cast<int32_t>(std::clamp(std::nearbyint(-lo / s), 0.0f, 255.0f));
}

namespace {

constexpr const char* kScalarBf16Note =
    "bf16 runs on the portable 4x32 scalar tile: its fast tiles need AVX2 or AVX-512, which this CPU lacks or "
    "DINOV3_CPU_ISA turned off; expect it slower than fp32";
constexpr const char* kScalarInt8Note =
    "int8 runs on the portable 4x32 scalar tile: its fast tiles need AVX2 or AVX-512, which this CPU lacks or "
    "DINOV3_CPU_ISA turned off; expect it slower than fp32";
constexpr const char* kAvx2Bf16Note =
    "bf16 runs on an AVX2 emulation of AVX512_BF16 (the same dot products) because this CPU lacks AVX-512 or "
    "DINOV3_CPU_ISA turned it off: it halves the weights' memory, but expect it slower than fp32";
constexpr const char* kAvx2Int8Note =
    "int8 runs on an AVX2 tile (the same int32 sums as AVX512_VNNI) because this CPU lacks AVX-512 or "
    "DINOV3_CPU_ISA turned it off: it quarters the weights' memory, at about fp32's speed";
constexpr const char* kNoVnniNote =
    "int8 runs on an AVX-512BW emulation of AVX512_VNNI (the same results), which this CPU lacks or "
    "DINOV3_CPU_NO_VNNI turned off; expect it slower than bf16";

}  // namespace

const LowpKernels& select_lowp_kernels(Isa isa, bool use_bf16_instructions, bool use_vnni) {
  static const LowpKernels kScalar{"scalar-emulated",
                                   "scalar",
                                   kScalarBf16Note,
                                   kScalarInt8Note,
                                   4,
                                   4,
                                   to_bf16_rows_scalar,
                                   to_bf16_pairs_scalar,
                                   bf16_pairs_scalar,
                                   pack_bf16_rows_transposed,
                                   to_u8_rows_scalar,
                                   gemm_bf16_4x32_scalar,
                                   gemm_u8s8_4x32_scalar};
  static const LowpKernels kAvx2{"avx2-emulated",
                                 "avx2",
                                 kAvx2Bf16Note,
                                 kAvx2Int8Note,
                                 5,
                                 4,
                                 to_bf16_rows_avx2,
                                 to_bf16_pairs_avx2,
                                 bf16_pairs_avx2,
                                 bf16_rows_transposed_avx2,
                                 to_u8_rows_avx2,
                                 gemm_bf16_5x32_avx2_emulated,
                                 gemm_u8s8_4x32_avx2};
  if (isa == Isa::kScalar) return kScalar;
  if (isa == Isa::kAvx2) return kAvx2;
  static const LowpKernels kTables[2][2] = {
      {{"avx512f-emulated", "avx512bw-emulated", nullptr, kNoVnniNote, 12, 12, to_bf16_rows_avx512,
        to_bf16_pairs_avx512, bf16_pairs_avx512, bf16_rows_transposed_avx512, to_u8_rows_avx512,
        gemm_bf16_12x32_avx512_emulated, gemm_u8s8_12x32_avx512bw},
       {"avx512f-emulated", "avx512vnni", nullptr, nullptr, 12, 14, to_bf16_rows_avx512, to_bf16_pairs_avx512,
        bf16_pairs_avx512, bf16_rows_transposed_avx512, to_u8_rows_avx512, gemm_bf16_12x32_avx512_emulated,
        gemm_u8s8_14x32_avx512vnni}},
      {{"avx512bf16", "avx512bw-emulated", nullptr, kNoVnniNote, 14, 12, to_bf16_rows_avx512bf16,
        to_bf16_pairs_avx512bf16, bf16_pairs_avx512, bf16_rows_transposed_avx512, to_u8_rows_avx512,
        gemm_bf16_14x32_avx512bf16, gemm_u8s8_12x32_avx512bw},
       {"avx512bf16", "avx512vnni", nullptr, nullptr, 14, 14, to_bf16_rows_avx512bf16, to_bf16_pairs_avx512bf16,
        bf16_pairs_avx512, bf16_rows_transposed_avx512, to_u8_rows_avx512, gemm_bf16_14x32_avx512bf16,
        gemm_u8s8_14x32_avx512vnni}}};
  return kTables[use_bf16_instructions ? 1 : 0][use_vnni ? 1 : 0];
}

bool uses_bf16_instructions(const LowpKernels& k) { return k.gemm_bf16_tile == gemm_bf16_14x32_avx512bf16; }

}  // namespace dinov3::cpu::lowp
