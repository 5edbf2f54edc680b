// The reduced-precision (bf16, int8) paths of the cpu backend: every micro-tile and driver against the
// reference backend, the emulated bf16 path against the AVX512_BF16 one bit for bit, and whole models
// against the fixtures' timm outputs with the accuracy tool's thresholds.
//
// Tolerances (relative L2, ||got - want|| / ||want||), derived rather than fitted:
// * Arithmetic. Fed operands already rounded the way the kernel rounds them (bf16, or the int8 grid with
//   its scales), the reference computes the same dot products exactly in double. What is left is float32
//   accumulation (bf16: one rounding per step, eps * sqrt(K) ~ 6e-8 * 40 for K <= 1536; int8: exact
//   integer sums, then two float32 multiplies) and the float32 epilogues: the float32 GEMM tolerance
//   2e-6 of cpu_backend_test applies unchanged.
// * bf16 rounding. RNE to 8 significant bits gives each operand a relative error |d| <= 2^-9. A product's
//   error is x w (d_x + d_w); summed over K independent terms, E[err^2] <= 2 * 2^-18 * sum (x w)^2 while,
//   for independent zero-mean data, E[y^2] = sum (x w)^2. So rel L2 <= sqrt(2) * 2^-9 = 2.8e-3 (expected
//   about 1/sqrt(3) of that, 1.6e-3, since the rounding error is uniform, not always at its bound).
// * int8 rounding. A symmetric grid of step max/127 has a uniform error of RMS step/sqrt(12), relative to
//   the operand's RMS: (max/rms) / (127 sqrt(12)). Weights here are uniform (max/rms = sqrt(3)),
//   activations Gaussian (max/rms <= 4.5 over a row), so rel L2 <= sqrt(3 + 4.5^2) / (127 sqrt(12)) = 1.1e-2.
// * Models. bf16: the accuracy tool's thresholds, per image: rel L2 < 1e-2 and cosine > 0.999 for the
//   features and the pooled embedding. int8 meets the cosine threshold but not the rel L2 one (README.md):
//   each weight kind (patch, qkv, proj, fc1, fc2) on its per-channel grid perturbs the output by about
//   (max/rms) / (127 sqrt(12)) ~ 0.6-0.9% (max/rms ~ 3-4 for these weights), five kinds in quadrature give
//   ~2%, per-token activations ~1% more in quadrature: rel L2 < 3e-2 bounds that and still catches a
//   broken int8 path (errors of order 1 and up).
#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <algorithm>
#include <bit>
#include <cfenv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/lowp/bf16.h"
#include "backend/cpu/lowp/lowp_gemm.h"
#include "backend/reference/reference_backend.h"
#include "cli.h"
#include "dinov3/model.h"
#include "dinov3/tensor_file.h"
#include "test_labels.h"
#include "test_util.h"
#include "util/cpu_info.h"

namespace dinov3 {
namespace {

using cpu::TileEpilogue;
namespace lowp = cpu::lowp;

constexpr double kArithmeticTol = 2e-6;
const double kBf16RoundingTol = std::sqrt(2.0) * std::ldexp(1.0, -9);
const double kInt8RoundingTol = std::sqrt(3.0 + 4.5 * 4.5) / (127.0 * std::sqrt(12.0));
constexpr double kModelMaxRelL2 = 1e-2;
constexpr double kModelMinCosine = 0.999;
constexpr double kInt8ModelMaxRelL2 = 3e-2;

// ---- the operands as the kernels see them --------------------------------------------------------------

std::vector<float> bf16_rounded(std::vector<float> v) {
  for (float& x : v) x = lowp::float_from_bf16(lowp::bf16_from_float(x));
  return v;
}

// Activations as the int8 conversion splits them (lowp_kernels.h): per row, the outlier channels (from the
// largest |x| down, each above 6 x the RMS of the values not taken out, at most 8) exactly, and the rest
// (outliers as 0) on its asymmetric grid over [min(lo, 0), max(hi, 0)]: s = (hi - lo) / 255,
// z = round(-lo / s), x ~ s * (clamp(round(x / s) + z, 0, 255) - z). Written from the documented rule, in
// double where the kernels' own rounding does not matter; operands here have clear-cut outliers or none.
struct Int8Rows {
  std::vector<float> rest;      // [rows, cols] the grid values, 0 at outliers
  std::vector<float> outliers;  // [rows, cols] the outliers' exact values, 0 elsewhere
};

Int8Rows int8_rows_split(const std::vector<float>& v, int64_t rows, int64_t cols) {
  Int8Rows out{std::vector<float>(v.size(), 0.0f), std::vector<float>(v.size(), 0.0f)};
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = v.data() + r * cols;
    std::vector<int64_t> order(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) order[static_cast<size_t>(i)] = i;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return std::fabs(row[a]) > std::fabs(row[b]); });
    double rest = 0.0;
    for (int64_t i = 0; i < cols; ++i) rest += static_cast<double>(row[i]) * row[i];
    std::vector<bool> outlier(static_cast<size_t>(cols), false);
    for (int64_t n = 0; n < std::min<int64_t>(8, cols); ++n) {
      const double m = std::fabs(row[order[static_cast<size_t>(n)]]);
      if (!(m > 6.0 * std::sqrt(rest / static_cast<double>(cols - n)))) break;
      rest -= m * m;
      outlier[static_cast<size_t>(order[static_cast<size_t>(n)])] = true;
    }
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0; i < cols; ++i) {
      if (outlier[static_cast<size_t>(i)]) continue;
      lo = std::min(lo, row[i]);
      hi = std::max(hi, row[i]);
    }
    const float s = (hi - lo) / 255.0f;
    const float z = s > 0.0f ? std::nearbyint(-lo / s) : 0.0f;
    const float inv = s > 0.0f ? 1.0f / s : 0.0f;
    for (int64_t i = 0; i < cols; ++i) {
      const size_t at = static_cast<size_t>(r * cols + i);
      if (outlier[static_cast<size_t>(i)]) {
        out.outliers[at] = row[i];
      } else {
        const float u = std::clamp(std::nearbyint(row[i] * inv) + z, 0.0f, 255.0f);
        out.rest[at] = (u - z) * s;
      }
    }
  }
  return out;
}

// Symmetric int8 rounding of `groups` vectors of `len` values (vector g's i-th value at g * group_stride +
// i * stride), each on its own grid (lowp_linear.cpp: scale and rounding in double).
std::vector<float> int8_grid_rounded(std::vector<float> w, int64_t groups, int64_t len, int64_t group_stride,
                                     int64_t stride) {
  for (int64_t g = 0; g < groups; ++g) {
    float* v = w.data() + g * group_stride;
    double m = 0.0;
    for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(static_cast<double>(v[i * stride])));
    for (int64_t i = 0; i < len; ++i) {
      float& x = v[i * stride];
      x = m > 0.0 ? static_cast<float>(std::nearbyint(x * 127.0 / m)) * static_cast<float>(m / 127.0) : 0.0f;
    }
  }
  return w;
}

// Weights on their per-output-channel grid.
std::vector<float> int8_weights_rounded(std::vector<float> w, int64_t out, int64_t in) {
  return int8_grid_rounded(std::move(w), out, in, in, 1);
}

// The weights' per-input-channel copy that multiplies the outliers (lowp_linear.h).
std::vector<float> int8_channels_rounded(std::vector<float> w, int64_t out, int64_t in) {
  return int8_grid_rounded(std::move(w), in, out, 1, in);
}

// Side by side: [a | b] row by row.
std::vector<float> concat_rows(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t cols) {
  std::vector<float> c(static_cast<size_t>(rows * cols * 2));
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(a.begin() + r * cols, a.begin() + (r + 1) * cols, c.begin() + 2 * r * cols);
    std::copy(b.begin() + r * cols, b.begin() + (r + 1) * cols, c.begin() + (2 * r + 1) * cols);
  }
  return c;
}

// ---- the reference backend as the oracle ------------------------------------------------------------

enum class Epi { kStore, kGelu, kResidual, kSwiglu };

struct LinearCase {
  int64_t rows, out, in;
};
const LinearCase kCases[] = {
    {261, 1152, 384}, {261, 384, 1536}, {523, 384, 384}, {1, 1, 1}, {7, 100, 63}, {29, 33, 1537}, {15, 64, 6},
};

struct Operands {
  std::vector<float> x, w, w2, bias, bias2, y0, gamma;
};

// with_outliers: a few input channels 20-60 times larger in every row, their weights that much smaller, as
// trained ViTs carry them (scripts/make_outlier_model.py); a few rows also get one more, smaller outlier.
Operands make_operands(const LinearCase& c, uint32_t seed, bool with_outliers = false) {
  Operands o;
  const float bound = 1.0f / std::sqrt(static_cast<float>(c.in));
  o.x = test::random_normal(static_cast<size_t>(c.rows * c.in), seed);
  o.w = test::random_uniform(static_cast<size_t>(c.out * c.in), seed + 1, -bound, bound);
  o.w2 = test::random_uniform(static_cast<size_t>(c.out * c.in), seed + 2, -bound, bound);
  if (with_outliers) {
    const int64_t channels[] = {3, c.in / 2, c.in - 5};
    const float factors[] = {20.0f, 60.0f, 35.0f};
    for (int j = 0; j < 3; ++j) {
      for (int64_t r = 0; r < c.rows; ++r) o.x[static_cast<size_t>(r * c.in + channels[j])] = factors[j] * (r % 2 ? 2.5f : -3.0f);
      for (int64_t n = 0; n < c.out; ++n) {
        o.w[static_cast<size_t>(n * c.in + channels[j])] /= factors[j];
        o.w2[static_cast<size_t>(n * c.in + channels[j])] /= factors[j];
      }
    }
    for (int64_t r = 0; r < c.rows; r += 3) o.x[static_cast<size_t>(r * c.in + 7)] = 40.0f;
  }
  o.bias = test::random_uniform(static_cast<size_t>(c.out), seed + 3, -0.5f, 0.5f);
  o.bias2 = test::random_uniform(static_cast<size_t>(c.out), seed + 4, -0.5f, 0.5f);
  o.y0 = test::random_normal(static_cast<size_t>(c.rows * c.out), seed + 5);
  o.gamma = test::random_uniform(static_cast<size_t>(c.out), seed + 6, 0.05f, 1.0f);
  return o;
}

std::unique_ptr<Backend> reference() {
  auto r = create_reference_backend({});
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

std::unique_ptr<DeviceBuffer> upload(Backend& be, const std::vector<float>& v) {
  auto buf = be.allocate(v.size());
  EXPECT_TRUE(buf.ok());
  EXPECT_TRUE(be.upload(**buf, 0, v.data(), v.size()).ok());
  return std::move(buf).value();
}

std::vector<float> download(Backend& be, const DeviceBuffer& b) {
  std::vector<float> v(b.size());
  EXPECT_TRUE(be.download(b, 0, v.data(), v.size()).ok());
  return v;
}

// The layer through any Backend: y0 is the residual stream (kResidual) or overwritten.
std::vector<float> backend_linear(Backend& be, const LinearCase& c, const Operands& o, Epi epi) {
  auto w = be.prepare_linear(o.w.data(), o.bias.data(), c.out, c.in);
  auto w2 = be.prepare_linear(o.w2.data(), o.bias2.data(), c.out, c.in);
  auto gamma = be.prepare_vector(o.gamma.data(), c.out);
  EXPECT_TRUE(w.ok() && w2.ok() && gamma.ok());
  auto x = upload(be, o.x);
  auto y = upload(be, o.y0);
  if (epi == Epi::kSwiglu) {
    EXPECT_TRUE(be.linear_swiglu(*x, c.rows, **w2, **w, *y).ok());
  } else {
    LinearEpilogue e;
    if (epi == Epi::kGelu) e.activation = Activation::kGelu;
    if (epi == Epi::kResidual) e.residual_scale = gamma->get();
    EXPECT_TRUE(be.linear(*x, c.rows, **w, e, *y).ok());
  }
  return download(be, *y);
}

// The reference on operands already rounded as `precision` rounds them.
std::vector<float> oracle_on_rounded(const LinearCase& c, Operands o, Precision precision, Epi epi) {
  if (precision == Precision::kBF16) {
    o.x = bf16_rounded(o.x);
    o.w = bf16_rounded(o.w);
    o.w2 = bf16_rounded(o.w2);
    auto ref = reference();
    return backend_linear(*ref, c, o, epi);
  }
  // int8: the grid part and the outliers as one layer over [rest | outliers] and [W | W per channel].
  const Int8Rows x = int8_rows_split(o.x, c.rows, c.in);
  o.x = concat_rows(x.rest, x.outliers, c.rows, c.in);
  o.w = concat_rows(int8_weights_rounded(o.w, c.out, c.in), int8_channels_rounded(o.w, c.out, c.in), c.out, c.in);
  o.w2 = concat_rows(int8_weights_rounded(o.w2, c.out, c.in), int8_channels_rounded(o.w2, c.out, c.in), c.out, c.in);
  auto ref = reference();
  return backend_linear(*ref, LinearCase{c.rows, c.out, 2 * c.in}, o, epi);
}

// ---- the kernel sets, driven directly -----------------------------------------------------------------

enum class KernelSet { kScalar, kAvx2, kAvx512Emulated, kBest };

const char* kernel_set_name(KernelSet k) {
  switch (k) {
    case KernelSet::kScalar: return "scalar";
    case KernelSet::kAvx2: return "avx2";
    case KernelSet::kAvx512Emulated: return "avx512f_emulated";
    case KernelSet::kBest: return "best";
  }
  return "?";
}

bool machine_has_avx512() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl && f.fma;
}

constexpr KernelSet kEverySet[] = {KernelSet::kScalar, KernelSet::kAvx2, KernelSet::kAvx512Emulated, KernelSet::kBest};

// nullptr where the machine cannot run the set.
const lowp::LowpKernels* kernels_for(KernelSet k) {
  const CpuFeatures& f = cpu_features();
  switch (k) {
    case KernelSet::kScalar: return &lowp::select_lowp_kernels(cpu::Isa::kScalar, false, false);
    case KernelSet::kAvx2: return f.avx2 && f.fma ? &lowp::select_lowp_kernels(cpu::Isa::kAvx2, false, false) : nullptr;
    case KernelSet::kAvx512Emulated:
      return machine_has_avx512() ? &lowp::select_lowp_kernels(cpu::Isa::kAvx512, false, false) : nullptr;
    case KernelSet::kBest:
      return machine_has_avx512() ? &lowp::select_lowp_kernels(cpu::Isa::kAvx512, f.avx512_bf16, f.avx512_vnni)
                                  : nullptr;
  }
  return nullptr;
}

// The layer through the lowp drivers with FTZ/DAZ, as the backend's threads run them (GELU as the backend's
// reduced precisions run it: TileEpilogue::kGeluLowp).
std::vector<float> lowp_linear(const lowp::LowpKernels& k, Precision precision, const LinearCase& c,
                               const Operands& o, Epi epi) {
  auto w = lowp::pack_linear_lowp(precision, o.w.data(), o.bias.data(), c.out, c.in);
  auto w2 = lowp::pack_linear_lowp(precision, o.w2.data(), o.bias2.data(), c.out, c.in);
  cpu::ThreadPool pool(2);
  cpu::ThreadScratch scratch(pool.size());
  scratch.reserve(lowp::swiglu_scratch_floats_lowp());
  lowp::LowpStaging staging;
  std::vector<float> y = o.y0;
  Status s;
  if (epi == Epi::kSwiglu) {
    s = lowp::gemm_swiglu_lowp(k, pool, staging, scratch, o.x.data(), c.in, c.rows, *w2, *w, y.data(), c.out);
  } else {
    const TileEpilogue op = epi == Epi::kGelu       ? TileEpilogue::kGeluLowp
                            : epi == Epi::kResidual ? TileEpilogue::kScaleAdd
                                                    : TileEpilogue::kStore;
    s = lowp::gemm_linear_lowp(k, pool, staging, o.x.data(), c.in, c.rows, *w, op, o.gamma.data(), y.data(), c.out);
  }
  EXPECT_TRUE(s.ok()) << s.message();
  return y;
}

struct KernelParam {
  KernelSet set;
  Precision precision;
};

std::string kernel_param_name(const testing::TestParamInfo<KernelParam>& info) {
  return std::string(kernel_set_name(info.param.set)) + "_" + precision_name(info.param.precision);
}

class LowpKernelTest : public testing::TestWithParam<KernelParam> {};

DINOV3_SUITE_LABELS(LowpKernelTest, "unit");

TEST_P(LowpKernelTest, ArithmeticMatchesReferenceOnRoundedOperands) {
  const lowp::LowpKernels* k = kernels_for(GetParam().set);
  if (k == nullptr) GTEST_SKIP() << "this machine cannot run these kernels";
  for (const LinearCase& c : kCases) {
    for (bool outliers : {false, true}) {
      if (outliers && (GetParam().precision != Precision::kInt8 || c.in < 64)) continue;
      const Operands o = make_operands(c, 11, outliers);
      for (Epi epi : {Epi::kStore, Epi::kGelu, Epi::kResidual, Epi::kSwiglu}) {
        const auto got = lowp_linear(*k, GetParam().precision, c, o, epi);
        const auto want = oracle_on_rounded(c, o, GetParam().precision, epi);
        EXPECT_LE(test::rel_l2(got, want), kArithmeticTol) << c.rows << "x" << c.out << "x" << c.in << " epilogue "
                                                           << static_cast<int>(epi) << (outliers ? " outliers" : "");
      }
    }
  }
}

TEST_P(LowpKernelTest, RoundingErrorWithinPrecisionBound) {
  const lowp::LowpKernels* k = kernels_for(GetParam().set);
  if (k == nullptr) GTEST_SKIP() << "this machine cannot run these kernels";
  const double tol = GetParam().precision == Precision::kBF16 ? kBf16RoundingTol : kInt8RoundingTol;
  auto ref = reference();
  for (const LinearCase& c : kCases) {
    if (c.in < 64) continue;  // the bounds are statistical: they need K terms to average over
    Operands o = make_operands(c, 23);
    std::fill(o.bias.begin(), o.bias.end(), 0.0f);  // the error of the dot products alone
    const auto got = lowp_linear(*k, GetParam().precision, c, o, Epi::kStore);
    const auto want = backend_linear(*ref, c, o, Epi::kStore);
    EXPECT_LE(test::rel_l2(got, want), tol) << c.rows << "x" << c.out << "x" << c.in;
  }
}

INSTANTIATE_TEST_SUITE_P(Kernels, LowpKernelTest,
                         testing::Values(KernelParam{KernelSet::kScalar, Precision::kBF16},
                                         KernelParam{KernelSet::kScalar, Precision::kInt8},
                                         KernelParam{KernelSet::kAvx2, Precision::kBF16},
                                         KernelParam{KernelSet::kAvx2, Precision::kInt8},
                                         KernelParam{KernelSet::kAvx512Emulated, Precision::kBF16},
                                         KernelParam{KernelSet::kAvx512Emulated, Precision::kInt8},
                                         KernelParam{KernelSet::kBest, Precision::kBF16},
                                         KernelParam{KernelSet::kBest, Precision::kInt8}),
                         kernel_param_name);

DINOV3_SUITE_LABELS(Bf16, "unit");

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(lowp::bf16_from_float(1.0f), 0x3F80);
  EXPECT_EQ(lowp::bf16_from_float(1.0f + 0x1p-8f), 0x3F80);        // tie, down to even
  EXPECT_EQ(lowp::bf16_from_float(1.0f + 3 * 0x1p-8f), 0x3F82);    // tie, up to even
  EXPECT_EQ(lowp::bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  EXPECT_EQ(lowp::bf16_from_float(-2.0f), 0xC000);
  EXPECT_EQ(lowp::bf16_from_float(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(lowp::bf16_from_float(std::numeric_limits<float>::max()), 0x7F80);  // rounds up to infinity
  EXPECT_EQ(lowp::bf16_from_float(-std::numeric_limits<float>::denorm_min()), 0x8000);
  EXPECT_TRUE(std::isnan(lowp::float_from_bf16(lowp::bf16_from_float(std::numeric_limits<float>::quiet_NaN()))));
}

// Where both exist, the emulated tile must give the AVX512_BF16 tile's float32 bits (the same store code
// runs after both), and the scalar tile the same dot products (its epilogue multiply-adds are not fused,
// so it is compared on plain stores).
TEST(Bf16, EmulationIsBitExact) {
  const lowp::LowpKernels* best = kernels_for(KernelSet::kBest);
  const lowp::LowpKernels* emulated = kernels_for(KernelSet::kAvx512Emulated);
  const lowp::LowpKernels* scalar = kernels_for(KernelSet::kScalar);
  for (const LinearCase& c : kCases) {
    const Operands o = make_operands(c, 31);
    const auto plain = lowp_linear(*scalar, Precision::kBF16, c, o, Epi::kStore);
    if (emulated == nullptr) continue;
    for (Epi epi : {Epi::kStore, Epi::kGelu, Epi::kResidual, Epi::kSwiglu}) {
      const auto em = lowp_linear(*emulated, Precision::kBF16, c, o, epi);
      if (epi == Epi::kStore) {
        EXPECT_EQ(std::memcmp(em.data(), plain.data(), em.size() * sizeof(float)), 0);
      }
      if (std::strcmp(best->bf16_name, "avx512bf16") != 0) continue;
      const auto native = lowp_linear(*best, Precision::kBF16, c, o, epi);
      EXPECT_EQ(std::memcmp(em.data(), native.data(), em.size() * sizeof(float)), 0)
          << c.rows << "x" << c.out << "x" << c.in << " epilogue " << static_cast<int>(epi);
    }
  }
}

// The AVX2 tiles (two 16-column halves over an A split per K block) form the portable tiles' dot products
// and int32 sums bit for bit: plain stores (the portable epilogue's multiply-adds are not fused), K past
// one split block (kSplitGroups) included, int8 with and without outlier channels.
TEST(Bf16, Avx2TilesMatchScalarBitExact) {
  const lowp::LowpKernels* avx2 = kernels_for(KernelSet::kAvx2);
  if (avx2 == nullptr) GTEST_SKIP() << "no AVX2";
  for (const LinearCase& c : kCases) {  // 1537 inputs: 769 bf16 pairs, 385 int8 quads
    for (Precision p : {Precision::kBF16, Precision::kInt8}) {
      for (bool outliers : {false, true}) {
        if (outliers && (p != Precision::kInt8 || c.in < 64)) continue;
        const Operands o = make_operands(c, 41, outliers);
        const auto got = lowp_linear(*avx2, p, c, o, Epi::kStore);
        const auto want = lowp_linear(*kernels_for(KernelSet::kScalar), p, c, o, Epi::kStore);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0)
            << precision_name(p) << " " << c.rows << "x" << c.out << "x" << c.in << (outliers ? " outliers" : "");
      }
    }
  }
}

// float32 bit patterns where bf16 rounding has something to get wrong: quiet and signalling NaNs, infinities,
// subnormals, the smallest normal, signed zero, ties to even (both ways), just above and below half a step,
// and the largest finite values (which round to infinity).
constexpr uint32_t kBf16SpecialBits[] = {0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0x7F800000u, 0xFF800000u,
                                         0x00000001u, 0x807FFFFFu, 0x00800000u, 0x80000000u, 0x3F808000u,
                                         0x3F818000u, 0x3F80C000u, 0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F8000u,
                                         0x3F807FFFu};

// A GEMM's bf16 copy of its output (Bf16Copies::out) holds bf16_from_float of each stored value, on every
// kernel set (the AVX512_BF16 tile converts with vcvtneps2bf16, the others with the integer formula):
// special values (NaN, infinities, subnormals, ties, overflow to infinity) come from the bias, the weights
// being zero.
TEST(Bf16, OutputCopiesRoundLikeBf16FromFloat) {
  const int64_t rows = 17, out = 41, in = 8, ld = out + 1;
  std::vector<float> bias = test::random_normal(static_cast<size_t>(out), 91);
  for (size_t i = 0; i < std::size(kBf16SpecialBits); ++i) std::memcpy(&bias[i], &kBf16SpecialBits[i], sizeof(float));
  const std::vector<float> w(static_cast<size_t>(out * in), 0.0f);
  const std::vector<float> x = test::random_normal(static_cast<size_t>(rows * in), 92);
  for (KernelSet set : kEverySet) {
    const lowp::LowpKernels* k = kernels_for(set);
    if (k == nullptr) continue;
    for (Precision p : {Precision::kBF16, Precision::kInt8}) {
      auto packed = lowp::pack_linear_lowp(p, w.data(), bias.data(), out, in);
      cpu::ThreadPool pool(2);
      lowp::LowpStaging staging;
      std::vector<float> y(static_cast<size_t>(rows * out));
      std::vector<uint16_t> copy(static_cast<size_t>(rows * ld), 0x5555);
      lowp::Bf16Copies copies;
      copies.out = copy.data();
      copies.ld_out = ld;
      ASSERT_TRUE(lowp::gemm_linear_lowp(*k, pool, staging, x.data(), in, rows, *packed, TileEpilogue::kStore, nullptr,
                                         y.data(), out, copies)
                      .ok());
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < out; ++j) {
          const float v = y[static_cast<size_t>(r * out + j)];
          ASSERT_EQ(copy[static_cast<size_t>(r * ld + j)], lowp::bf16_from_float(v))
              << kernel_set_name(set) << " " << precision_name(p) << " row " << r << " column " << j << " value " << v;
        }
        EXPECT_EQ(copy[static_cast<size_t>(r * ld + out)], 0x5555) << "the padding column is the caller's";
      }
    }
  }
}

// A full-width tile's store (bias, float32 C and bf16 copy settled per tile) gives the bits of the general
// store a last, narrower panel takes: output columns 32..39 repeat columns 0..7 (the same weight rows, bias,
// scale and residual), so each row's 8 values come out of both paths, for every combination of bias, C and
// bf16 copy, each epilogue, full-height and ragged tiles, on every kernel set.
TEST(Bf16, FullWidthStoreGivesTheGeneralStoresBits) {
  const int64_t in = 24, out = 40, rows = 31;  // 31 rows: two full-height tiles and a ragged one
  std::vector<float> w = test::random_normal(static_cast<size_t>(out * in), 95);
  std::vector<float> bias = test::random_normal(static_cast<size_t>(out), 96);
  std::vector<float> scale = test::random_normal(static_cast<size_t>(out), 97);
  for (int64_t j = 32; j < out; ++j) {
    std::copy_n(w.begin() + (j - 32) * in, in, w.begin() + j * in);
    bias[static_cast<size_t>(j)] = bias[static_cast<size_t>(j - 32)];
    scale[static_cast<size_t>(j)] = scale[static_cast<size_t>(j - 32)];
  }
  const std::vector<float> x = test::random_normal(static_cast<size_t>(rows * in), 98);
  std::vector<float> y0 = test::random_normal(static_cast<size_t>(rows * out), 99);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 32; j < out; ++j) y0[static_cast<size_t>(r * out + j)] = y0[static_cast<size_t>(r * out + j - 32)];
  }
  for (KernelSet set : kEverySet) {
    const lowp::LowpKernels* k = kernels_for(set);
    if (k == nullptr) continue;
    for (bool with_bias : {false, true}) {
      auto packed = lowp::pack_linear_lowp(Precision::kBF16, w.data(), with_bias ? bias.data() : nullptr, out, in);
      for (TileEpilogue e : {TileEpilogue::kStore, TileEpilogue::kGeluLowp, TileEpilogue::kScaleAdd}) {
        for (int copy_mode : {0, 1, 2}) {  // no bf16 copy, C and the copy, the copy only
          if (copy_mode == 2 && e == TileEpilogue::kScaleAdd) continue;  // it reads C
          cpu::ThreadPool pool(2);
          lowp::LowpStaging staging;
          std::vector<float> y = y0;
          std::vector<uint16_t> copy(static_cast<size_t>(rows * out), 0);
          lowp::Bf16Copies copies;
          if (copy_mode > 0) {
            copies.out = copy.data();
            copies.ld_out = out;
            copies.out_only = copy_mode == 2;
          }
          ASSERT_TRUE(lowp::gemm_linear_lowp(*k, pool, staging, x.data(), in, rows, *packed, e,
                                             e == TileEpilogue::kScaleAdd ? scale.data() : nullptr, y.data(), out,
                                             copies)
                          .ok());
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t j = 0; j < 8; ++j) {
              const size_t a = static_cast<size_t>(r * out + j), b = a + 32;
              const std::string where = std::string(kernel_set_name(set)) + (with_bias ? " bias" : " no bias") +
                                        " epilogue " + std::to_string(static_cast<int>(e)) + " copies " +
                                        std::to_string(copy_mode) + " row " + std::to_string(r) + " column " +
                                        std::to_string(j);
              uint32_t fa, fb;
              std::memcpy(&fa, &y[a], sizeof(fa));
              std::memcpy(&fb, &y[b], sizeof(fb));
              ASSERT_EQ(fa, fb) << where;
              ASSERT_EQ(copy[a], copy[b]) << where;
              if (copy_mode == 1) {
                ASSERT_EQ(copy[a], lowp::bf16_from_float(y[a])) << where;
              } else if (copy_mode == 2) {
                ASSERT_EQ(fa, std::bit_cast<uint32_t>(y0[a])) << where << ": C untouched";
                ASSERT_NE(copy[a], 0) << where << ": the copy written";
              }
            }
          }
        }
      }
    }
  }
}

// The operand conversions (to_bf16_rows: GEMM inputs; to_bf16_pairs: attention's V from float32) give
// bf16_from_float of every value on every kernel set (the AVX512_BF16 set converts with vcvtneps2bf16 and
// vcvtne2ps2bf16), the special values included, with whole vectors, ragged tails and pair padding.
TEST(Bf16, OperandConversionsRoundLikeBf16FromFloat) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{5, 261}, {17, 64}, {3, 15}, {2, 48}}) {
    const int64_t ldx = cols + 5, k_pad = (cols + 1) / 2 * 2, rows_pad = (rows + 1) / 2 * 2;
    std::vector<float> x = test::random_normal(static_cast<size_t>(rows * ldx), 94);
    for (size_t i = 0; i < x.size(); i += 7) {
      std::memcpy(&x[i], &kBf16SpecialBits[(i / 7) % std::size(kBf16SpecialBits)], sizeof(float));
    }
    for (KernelSet set : kEverySet) {
      const lowp::LowpKernels* k = kernels_for(set);
      if (k == nullptr) continue;
      std::vector<uint16_t> got(static_cast<size_t>(rows * k_pad), 0x5555);
      k->to_bf16_rows(x.data(), ldx, rows, cols, k_pad, got.data());
      std::vector<uint16_t> pairs(static_cast<size_t>((cols + lowp::kNr - 1) / lowp::kNr * lowp::kNr * rows_pad),
                                  0x5555);
      k->to_bf16_pairs(x.data(), ldx, rows, cols, rows_pad, pairs.data());
      for (int64_t r = 0; r < rows_pad; ++r) {
        for (int64_t c = 0; c < k_pad; ++c) {
          const bool inside = r < rows && c < cols;
          const uint16_t want = inside ? lowp::bf16_from_float(x[static_cast<size_t>(r * ldx + c)]) : 0;
          if (r < rows) {
            ASSERT_EQ(got[static_cast<size_t>(r * k_pad + c)], want)
                << kernel_set_name(set) << " rows, row " << r << " column " << c;
          }
          if (c < cols) {  // panel c / kNr, row pair r / 2, column c % kNr, low half for even r
            const int64_t at = ((c / lowp::kNr) * rows_pad + r / 2 * 2) * lowp::kNr + 2 * (c % lowp::kNr) + r % 2;
            ASSERT_EQ(pairs[static_cast<size_t>(at)], want)
                << kernel_set_name(set) << " pairs, row " << r << " column " << c;
          }
        }
      }
    }
  }
}

// The GELU of the reduced-precision layers (TileEpilogue::kGeluLowp), point by point through a bf16 1x1
// identity layer (inputs exact in bf16, so the product is exact) on every kernel set, against erfc in double:
// within 1.7e-7 |x| (the table's absolute error on Phi) plus float32 rounding, over [-12, 12] and the specials.
TEST(Bf16, ReducedPrecisionGeluIsAccurateEverywhere) {
  std::vector<float> x;
  for (float v = -12.0f; v <= 12.0f; v += 1.0f / 512.0f) {
    const float b = lowp::float_from_bf16(lowp::bf16_from_float(v));
    if (x.empty() || b != x.back()) x.push_back(b);
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.0f, -0.0f, 6.0f, -6.0f, 1e30f, -1e30f, inf, std::numeric_limits<float>::quiet_NaN()}) {
    x.push_back(lowp::float_from_bf16(lowp::bf16_from_float(v)));
  }
  const int64_t rows = static_cast<int64_t>(x.size());
  const float one = 1.0f;
  auto packed = lowp::pack_linear_lowp(Precision::kBF16, &one, nullptr, 1, 1);
  for (KernelSet set : kEverySet) {
    const lowp::LowpKernels* k = kernels_for(set);
    if (k == nullptr) continue;
    cpu::ThreadPool pool(2);
    lowp::LowpStaging staging;
    std::vector<float> y(x.size());
    ASSERT_TRUE(lowp::gemm_linear_lowp(*k, pool, staging, x.data(), 1, rows, *packed, TileEpilogue::kGeluLowp, nullptr,
                                       y.data(), 1)
                    .ok());
    for (size_t i = 0; i < x.size(); ++i) {
      const double v = x[i];
      if (std::isnan(v)) {
        EXPECT_TRUE(std::isnan(y[i])) << kernel_set_name(set);
        continue;
      }
      if (std::isinf(v)) {  // +inf stays; -inf is outside what a layer can produce from finite inputs
        if (v > 0) {
          EXPECT_EQ(y[i], inf) << kernel_set_name(set);
        }
        continue;
      }
      const double want = 0.5 * v * std::erfc(-v / std::sqrt(2.0));
      EXPECT_LE(std::fabs(y[i] - want), 1.7e-7 * std::fabs(v) + 2.5e-7 * std::fabs(want))
          << kernel_set_name(set) << " gelu(" << x[i] << ")";
    }
  }
}

// The application's rounding mode does not reach the kernels: the pool runs every task with round-to-nearest
// (some kernels round through the mode: the reduced-precision GELU's interval, int8 quantisation), on the
// caller's thread and on workers that inherited the mode, and gives the caller's mode back. bf16 with its
// GELU and int8 with its quantised rows, on every kernel set, bit for bit against round-to-nearest.
TEST(Bf16, CallersRoundingModeChangesNoBits) {
  const int64_t rows = 37, in = 96, out = 70;
  const std::vector<float> x = test::random_normal(static_cast<size_t>(rows * in), 511, 0.0f, 2.0f);
  const std::vector<float> w = test::random_normal(static_cast<size_t>(out * in), 512, 0.0f, 0.2f);
  const std::vector<float> bias = test::random_normal(static_cast<size_t>(out), 513);
  auto run = [&](const lowp::LowpKernels& k, Precision p) {
    auto packed = lowp::pack_linear_lowp(p, w.data(), bias.data(), out, in);
    cpu::ThreadPool pool(2);  // made under the caller's mode: its worker starts with it
    lowp::LowpStaging staging;
    std::vector<float> y(static_cast<size_t>(rows * out));
    const TileEpilogue op = p == Precision::kBF16 ? TileEpilogue::kGeluLowp : TileEpilogue::kStore;
    EXPECT_TRUE(lowp::gemm_linear_lowp(k, pool, staging, x.data(), in, rows, *packed, op, nullptr, y.data(), out).ok());
    return y;
  };
  for (KernelSet set : kEverySet) {
    const lowp::LowpKernels* k = kernels_for(set);
    if (k == nullptr) continue;
    for (Precision p : {Precision::kBF16, Precision::kInt8}) {
      const std::vector<float> want = run(*k, p);
      for (int mode : {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
        ASSERT_EQ(std::fesetround(mode), 0);
        const std::vector<float> got = run(*k, p);
        EXPECT_EQ(std::fegetround(), mode) << "the caller's rounding mode was not given back";
        std::fesetround(FE_TONEAREST);
        EXPECT_EQ(std::memcmp(got.data(), want.data(), want.size() * sizeof(float)), 0)
            << kernel_set_name(set) << " " << precision_name(p) << " rounding mode " << mode;
      }
    }
  }
}

// The int8 grid rounds ties to even, and to nearest otherwise, whatever the rounding mode (load-time rounding
// runs on the caller's thread, calibration's GPTQ too).
TEST(Int8, GridRoundsToNearestEvenInAnyMode) {
  for (int mode : {FE_TONEAREST, FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO}) {
    ASSERT_EQ(std::fesetround(mode), 0);
    const double m = 127.0;  // q = v
    const std::vector<std::pair<double, int>> cases = {{0.5, 0},    {1.5, 2},    {2.5, 2},   {-0.5, 0},   {-1.5, -2},
                                                       {-2.5, -2},  {2.4999, 2}, {2.5001, 3}, {-2.5001, -3}, {126.5, 126},
                                                       {127.5, 127}, {-300.0, -127}, {0.49999, 0}};
    for (const auto& [v, want] : cases) {
      EXPECT_EQ(lowp::int8_grid_round(v, m), want) << "v " << v << " rounding mode " << mode;
    }
    std::fesetround(FE_TONEAREST);
  }
}

// to_bf16_pairs (attention's V panels in one pass) equals rounding the rows with to_bf16_rows and packing
// them with pack_bf16_rows_plain, on every kernel set, for ragged rows and columns.
TEST(Bf16, PairsPackLikeRowsThenPanels) {
  for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{261, 64}, {7, 6}, {37, 40}, {1, 33}, {64, 100}}) {
    const int64_t ldx = cols + 3, rows_pad = (rows + 1) / 2 * 2, panels = (cols + lowp::kNr - 1) / lowp::kNr;
    std::vector<float> x = test::random_normal(static_cast<size_t>(rows * ldx), 93);
    x[0] = std::numeric_limits<float>::quiet_NaN();
    x[static_cast<size_t>(ldx - 1)] = 1e-40f;  // a subnormal (to zero) outside the rows' columns is not read
    std::vector<uint16_t> rounded(static_cast<size_t>(rows * cols));
    lowp::to_bf16_rows_scalar(x.data(), ldx, rows, cols, cols, rounded.data());
    std::vector<uint16_t> want(static_cast<size_t>(panels * lowp::kNr * rows_pad));
    lowp::pack_bf16_rows_plain(rounded.data(), cols, rows, cols, rows_pad, want.data());
    for (KernelSet set : kEverySet) {
      const lowp::LowpKernels* k = kernels_for(set);
      if (k == nullptr) continue;
      std::vector<uint16_t> got(want.size(), 0x5555);
      k->to_bf16_pairs(x.data(), ldx, rows, cols, rows_pad, got.data());
      EXPECT_EQ(got, want) << kernel_set_name(set) << " " << rows << "x" << cols;
      // The same panels from the rows already in bf16 (a bf16 qkv), row stride not the width.
      std::vector<uint16_t> rounded_ld(static_cast<size_t>(rows * (cols + 3)), 0x7777);
      for (int64_t r = 0; r < rows; ++r) {
        std::copy_n(&rounded[static_cast<size_t>(r * cols)], cols, &rounded_ld[static_cast<size_t>(r * (cols + 3))]);
      }
      std::vector<uint16_t> from_bf16(want.size(), 0x5555);
      k->bf16_pairs(rounded_ld.data(), cols + 3, rows, cols, rows_pad, from_bf16.data());
      EXPECT_EQ(from_bf16, want) << kernel_set_name(set) << " from bf16, " << rows << "x" << cols;
    }
  }
}

// bf16_rows_transposed (attention's K^T panels; 16 x 16 word transposes on AVX-512) equals the portable
// loop pack_bf16_rows_transposed on every kernel set: ragged key panels, pair counts that are not a
// multiple of 16, a row stride past the width.
TEST(Bf16, RowsTransposedPackLikeThePortableLoop) {
  for (const auto& [rows, k_pad] :
       {std::pair<int64_t, int64_t>{261, 64}, {1, 2}, {16, 32}, {17, 30}, {33, 34}, {64, 128}, {300, 66}, {31, 96}}) {
    const int64_t ld = k_pad + 6, panels = (rows + lowp::kNr - 1) / lowp::kNr;
    std::vector<uint16_t> m(static_cast<size_t>(rows * ld));
    std::mt19937 rng(static_cast<uint32_t>(rows * 1000 + k_pad));
    for (uint16_t& v : m) v = static_cast<uint16_t>(rng());
    std::vector<uint16_t> want(static_cast<size_t>(panels * lowp::kNr * k_pad), 0x5555);
    lowp::pack_bf16_rows_transposed(m.data(), ld, rows, k_pad, want.data());
    for (KernelSet set : kEverySet) {
      const lowp::LowpKernels* k = kernels_for(set);
      if (k == nullptr) continue;
      std::vector<uint16_t> got(want.size(), 0x3333);
      k->bf16_rows_transposed(m.data(), ld, rows, k_pad, got.data());
      EXPECT_EQ(got, want) << kernel_set_name(set) << " " << rows << " rows, k_pad " << k_pad;
    }
  }
}

// The online-softmax step writing P in bf16 (attention at reduced precision), on every kernel set the machine
// runs, two key blocks (the first, then one that raises some rows' maxima): the maxima and rescale factors
// are the float32 step's; each weight is 2^(s - max) within exp2_for_bf16's 7.51e-5 (held to 7.6e-5) plus bf16's worst
// rounding (half a step of 2^-7: 2^-8) relative; each row sum (of the unrounded weights) within 7.6e-5 plus float32
// summation (1e-6) of the exact one; S is left as it was, and nothing is written past the block's columns.
TEST(Bf16, SoftmaxWritesWeightsInBf16) {
  const CpuFeatures& f = cpu_features();
  std::vector<std::pair<const char*, const cpu::CpuKernels*>> sets = {{"scalar", &cpu::cpu_kernels_scalar()}};
  if (f.avx2 && f.fma) sets.push_back({"avx2", &cpu::cpu_kernels_avx2()});
  if (machine_has_avx512()) sets.push_back({"avx512", &cpu::cpu_kernels_avx512()});
  if (machine_has_avx512() && f.avx512_bf16) sets.push_back({"avx512bf16", &cpu::cpu_kernels_avx512bf16()});
  const double kWeightTol = 7.6e-5 + std::ldexp(1.0, -8) + 1e-7, kSumTol = 7.6e-5 + 1e-6;
  for (const auto& [name, k] : sets) {
    for (const auto& [rows, cols] : {std::pair<int, int>{14, 261}, {3, 5}, {9, 64}, {1, 1}, {14, 100}}) {
      const int64_t lds = (cols + 31) / 32 * 32, ld_p = lds + 2;
      std::vector<double> max_d(rows, -std::numeric_limits<double>::infinity()), sum_d(rows, 0.0);
      std::vector<float> row_max(rows, -std::numeric_limits<float>::infinity()), row_sum(rows, 0.0f);
      std::vector<float> max32 = row_max, sum32 = row_sum;
      std::vector<float> rescale(rows), rescale32(rows);
      for (int block = 0; block < 2; ++block) {
        const auto s = test::random_normal(static_cast<size_t>(rows * lds), 900 + block * 7 + rows, block * 1.5f, 4.0f);
        std::vector<float> s_bf16 = s, s_f32 = s;
        std::vector<uint16_t> p(static_cast<size_t>(rows * ld_p), 0x7777);
        k->softmax_block(s_bf16.data(), lds, rows, cols, row_max.data(), row_sum.data(), rescale.data(), p.data(),
                         ld_p);
        k->softmax_block(s_f32.data(), lds, rows, cols, max32.data(), sum32.data(), rescale32.data(), nullptr, 0);
        EXPECT_EQ(s_bf16, s) << name;
        EXPECT_EQ(row_max, max32) << name;
        EXPECT_EQ(rescale, rescale32) << name;
        for (int r = 0; r < rows; ++r) {
          double m = max_d[r];
          for (int c = 0; c < cols; ++c) m = std::max(m, static_cast<double>(s[r * lds + c]));
          double sum = 0;
          for (int c = 0; c < cols; ++c) {
            const double want = std::exp2(static_cast<double>(s[r * lds + c]) - m);
            sum += want;
            const double got = lowp::float_from_bf16(p[r * ld_p + c]);
            EXPECT_LE(std::fabs(got - want), kWeightTol * want) << name << " row " << r << " column " << c;
          }
          for (int64_t c = cols; c < ld_p; ++c) EXPECT_EQ(p[r * ld_p + c], 0x7777) << name << " column " << c;
          sum_d[r] = sum_d[r] * std::exp2(max_d[r] - m) + sum;
          max_d[r] = m;
          EXPECT_LE(std::fabs(row_sum[r] - sum_d[r]), kSumTol * sum_d[r]) << name << " block " << block << " row " << r;
        }
      }
    }
  }
}

DINOV3_SUITE_LABELS(Int8, "unit");

// The int8 row conversion (scale, zero point, outlier channels and values, the quantised bytes and the
// padding) gives to_u8_rows_scalar's bits on every kernel set: rows with outlier channels (more than
// kMaxOutliers too), an all-zero row, rows with NaN or infinity, ragged lengths, only negative values.
TEST(Int8, RowConversionGivesTheSameBitsOnEverySet) {
  for (int64_t k : {int64_t{1}, int64_t{7}, int64_t{16}, int64_t{61}, int64_t{384}, int64_t{1537}}) {
    const int64_t rows = 9, ldx = k + 3, k_pad = (k + 3) / 4 * 4;
    std::vector<float> x = test::random_normal(static_cast<size_t>(rows * ldx), 700 + static_cast<uint32_t>(k));
    auto at = [&](int64_t r, int64_t i) -> float& { return x[static_cast<size_t>(r * ldx + std::min(i, k - 1))]; };
    for (int64_t i = 0; i < k; i += 5) at(1, i) *= 40.0f;                 // many large channels
    at(2, k / 3) = 90.0f;                                                 // one outlier
    for (int64_t i = 0; i < 12; ++i) at(3, i * 7) = -50.0f - i;           // more than kMaxOutliers
    for (int64_t i = 0; i < k; ++i) at(4, i) = 0.0f;                      // all zero
    at(5, k / 2) = std::numeric_limits<float>::quiet_NaN();
    at(6, k - 1) = std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < k; ++i) at(7, i) = -std::fabs(at(7, i)) - 0.5f;  // only negative values
    auto convert = [&](const lowp::LowpKernels& kernels) {
      struct Out {
        std::vector<uint8_t> data;
        std::vector<float> scale, value;
        std::vector<int32_t> zero, outliers, index;
      } o{std::vector<uint8_t>(static_cast<size_t>(rows * k_pad), 0x55),
          std::vector<float>(static_cast<size_t>(rows)),
          std::vector<float>(static_cast<size_t>(rows * lowp::kMaxOutliers)),
          std::vector<int32_t>(static_cast<size_t>(rows)),
          std::vector<int32_t>(static_cast<size_t>(rows)),
          std::vector<int32_t>(static_cast<size_t>(rows * lowp::kMaxOutliers))};
      const lowp::U8Rows dst{o.data.data(), o.scale.data(), o.zero.data(), o.outliers.data(), o.index.data(),
                             o.value.data()};
      kernels.to_u8_rows(x.data(), ldx, rows, k, k_pad, dst);
      return o;
    };
    const auto want = convert(*kernels_for(KernelSet::kScalar));
    for (KernelSet set : kEverySet) {
      const lowp::LowpKernels* kernels = kernels_for(set);
      if (kernels == nullptr || set == KernelSet::kScalar) continue;
      const auto got = convert(*kernels);
      const std::string where = std::string(kernel_set_name(set)) + " k " + std::to_string(k);
      EXPECT_EQ(got.data, want.data) << where;
      EXPECT_EQ(got.zero, want.zero) << where;
      EXPECT_EQ(got.outliers, want.outliers) << where;
      EXPECT_EQ(std::memcmp(got.scale.data(), want.scale.data(), got.scale.size() * sizeof(float)), 0) << where;
      for (int64_t r = 0; r < rows; ++r) {
        for (int o = 0; o < want.outliers[static_cast<size_t>(r)]; ++o) {
          const size_t j = static_cast<size_t>(r * lowp::kMaxOutliers + o);
          EXPECT_EQ(got.index[j], want.index[j]) << where << " row " << r;
          EXPECT_EQ(std::bit_cast<uint32_t>(got.value[j]), std::bit_cast<uint32_t>(want.value[j]))
              << where << " row " << r;
        }
      }
    }
  }
}

// VNNI against the portable tile (plain stores: its epilogue multiply-adds are not fused) and against the
// AVX-512BW tile (every epilogue).
TEST(Int8, VnniMatchesScalarBitExact) {
  const lowp::LowpKernels* best = kernels_for(KernelSet::kBest);
  if (best == nullptr || std::strcmp(best->int8_name, "avx512vnni") != 0) GTEST_SKIP() << "no AVX512_VNNI";
  for (const LinearCase& c : kCases) {
    for (bool outliers : {false, true}) {
      if (outliers && c.in < 64) continue;
      const Operands o = make_operands(c, 37, outliers);
      const auto a = lowp_linear(*best, Precision::kInt8, c, o, Epi::kStore);
      const auto b = lowp_linear(*kernels_for(KernelSet::kScalar), Precision::kInt8, c, o, Epi::kStore);
      EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
          << c.rows << "x" << c.out << "x" << c.in << (outliers ? " outliers" : "");
      // The AVX-512BW tile shares the VNNI tile's store: the same bits with every epilogue.
      for (Epi epi : {Epi::kStore, Epi::kGelu, Epi::kResidual, Epi::kSwiglu}) {
        const auto v = lowp_linear(*best, Precision::kInt8, c, o, epi);
        const auto e = lowp_linear(*kernels_for(KernelSet::kAvx512Emulated), Precision::kInt8, c, o, epi);
        EXPECT_EQ(std::memcmp(v.data(), e.data(), v.size() * sizeof(float)), 0)
            << c.rows << "x" << c.out << "x" << c.in << " epilogue " << static_cast<int>(epi) << (outliers ? " outliers" : "");
      }
    }
  }
}

// ---- the cpu backend at reduced precision ------------------------------------------------------------

std::unique_ptr<Backend> cpu_backend(Precision precision) {
  BackendOptions options;
  options.threads = 2;
  options.precision = precision;
  auto r = create_cpu_backend(options);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

DINOV3_SUITE_LABELS(LowpBackend, "unit");

TEST(LowpBackend, ReportsItsPrecision) {
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kInt8}) {
    auto be = cpu_backend(p);
    ASSERT_NE(be, nullptr);
    EXPECT_EQ(be->precision(), p);
    if (p != Precision::kF32) {
      EXPECT_NE(be->device().find(precision_name(p)), std::string::npos) << be->device();
    }
  }
}

// A minute or more under the sanitizers.
DINOV3_TEST_LABELS(LowpBackend, LayersMatchReferenceOnRoundedOperands, "unit", "slow");
TEST(LowpBackend, LayersMatchReferenceOnRoundedOperands) {
  for (Precision p : {Precision::kBF16, Precision::kInt8}) {
    auto be = cpu_backend(p);
    ASSERT_NE(be, nullptr);
    for (const LinearCase& c : kCases) {
      for (bool outliers : {false, true}) {
        if (outliers && (p != Precision::kInt8 || c.in < 64)) continue;
        const Operands o = make_operands(c, 41, outliers);
        for (Epi epi : {Epi::kStore, Epi::kGelu, Epi::kResidual, Epi::kSwiglu}) {
          EXPECT_LE(test::rel_l2(backend_linear(*be, c, o, epi), oracle_on_rounded(c, o, p, epi)), kArithmeticTol)
              << precision_name(p) << " " << c.rows << "x" << c.out << "x" << c.in << " epilogue "
              << static_cast<int>(epi) << (outliers ? " outliers" : "");
        }
      }
    }
  }
}

// linear_residual_layer_norm (the cpu backend normalises each row tile inside the GEMM) gives the bits of
// linear() then layer_norm() on every precision, for ragged shapes and for z kept only in bf16 for a bf16
// consumer (read back through that consumer, and through download).
TEST(LowpBackend, ResidualLayerNormFusedEqualsTheTwoOps) {
  const LinearCase cases[] = {{261, 384, 1536}, {261, 384, 384}, {523, 64, 384}, {7, 100, 64}, {5, 17, 3}, {1, 1, 1}};
  for (Precision p : {Precision::kF32, Precision::kBF16, Precision::kInt8}) {
    auto be = cpu_backend(p);
    ASSERT_NE(be, nullptr);
    for (const LinearCase& c : cases) {
      const Operands o = make_operands(c, 61);
      const auto ln_w = test::random_uniform(static_cast<size_t>(c.out), 62, 0.5f, 1.5f);
      const auto ln_b = test::random_uniform(static_cast<size_t>(c.out), 63, -0.5f, 0.5f);
      const auto next = test::random_uniform(static_cast<size_t>(c.out * c.out), 64, -0.1f, 0.1f);
      auto w = be->prepare_linear(o.w.data(), o.bias.data(), c.out, c.in);
      auto scale = be->prepare_vector(o.gamma.data(), c.out);
      auto gamma = be->prepare_vector(ln_w.data(), c.out);
      auto beta = be->prepare_vector(ln_b.data(), c.out);
      auto consumer = be->prepare_linear(next.data(), nullptr, c.out, c.out);
      ASSERT_TRUE(w.ok() && scale.ok() && gamma.ok() && beta.ok() && consumer.ok());
      const auto pre_w = test::random_uniform(static_cast<size_t>(c.in * c.in), 65, -0.1f, 0.1f);
      auto pre = be->prepare_linear(pre_w.data(), nullptr, c.in, c.in);
      ASSERT_TRUE(pre.ok());
      for (int variant = 0; variant < (c.in == c.out ? 4 : 2); ++variant) {
        // 0: z alone; 1: z kept for a bf16 consumer; 2: z over x (a square layer: the model's proj, whose
        // input, the attention output, shares the buffer the LayerNorm writes); 3: as 2 with x itself the
        // output of a layer that names w as its consumer (for a bf16 w: x held only in bf16) and z's consumer.
        const Weight* z_consumer = variant == 1 || variant == 3 ? consumer->get() : nullptr;
        std::vector<float> got[2][3];  // [separate, fused][y, z, consumer output]
        for (int fused = 0; fused < 2; ++fused) {
          auto x = upload(*be, o.x);
          auto y = upload(*be, o.y0);
          auto own_z = upload(*be, std::vector<float>(static_cast<size_t>(c.rows * c.out), 7.0f));
          DeviceBuffer* z = variant >= 2 ? x.get() : own_z.get();
          if (variant == 3) {
            auto x0 = upload(*be, o.x);
            ASSERT_TRUE(be->linear(*x0, c.rows, **pre, {Activation::kGelu, nullptr, w->get()}, *x).ok());
          }
          auto after = be->allocate(static_cast<size_t>(c.rows * c.out));
          ASSERT_TRUE(after.ok());
          if (fused) {
            ASSERT_TRUE(be->linear_residual_layer_norm(*x, c.rows, **w, **scale, *y, **gamma, **beta, 1e-6f, *z,
                                                       z_consumer)
                            .ok());
          } else {
            ASSERT_TRUE(be->linear(*x, c.rows, **w, {Activation::kNone, scale->get()}, *y).ok());
            ASSERT_TRUE(be->layer_norm(*y, c.rows, c.out, **gamma, **beta, 1e-6f, *z, z_consumer).ok());
          }
          ASSERT_TRUE(be->linear(*z, c.rows, **consumer, {}, **after).ok());
          got[fused][0] = download(*be, *y);
          got[fused][2] = download(*be, **after);
          got[fused][1] = download(*be, *z);
        }
        for (int k = 0; k < 3; ++k) {
          ASSERT_EQ(got[0][k].size(), got[1][k].size());
          EXPECT_EQ(std::memcmp(got[0][k].data(), got[1][k].data(), got[0][k].size() * sizeof(float)), 0)
              << precision_name(p) << " " << c.rows << "x" << c.out << "x" << c.in << " output " << k << " variant "
              << variant;
        }
      }
    }
  }
}

// The patch embedding is a bf16 GEMM over im2col rows: rounding the image rounds every operand. A bf16 patch
// layer gathers its rows straight into bf16 (a bf16 copy of the im2col matrix), so the same layer without
// copies (DINOV3_CPU_NO_BF16_COPIES: the float32 matrix, then the GEMM's own conversion) gives the same bits.
// Patch rows of whole and partial vectors, an odd K (7 x 7 x 3 = 147, padded to whole pairs), one channel;
// every kernel set this machine runs (AVX-512 with or without the bf16 instructions, AVX2, portable).
TEST(LowpBackend, Bf16EmbedMatchesReferenceOnRoundedOperands) {
  struct Case {
    int64_t channels, patch;
  };
  for (const Case c : {Case{3, 16}, Case{3, 7}, Case{1, 14}}) {
    const int64_t batch = 2, height = 3 * c.patch, width = 5 * c.patch, dim = 64, prefix = 5;
    const int64_t tokens = prefix + (height / c.patch) * (width / c.patch);
    const int64_t in = c.channels * c.patch * c.patch;
    const auto image = test::random_normal(static_cast<size_t>(batch * c.channels * height * width), 51);
    const auto w = test::random_uniform(static_cast<size_t>(dim * in), 52, -0.05f, 0.05f);
    const auto bias = test::random_uniform(static_cast<size_t>(dim), 53, -0.5f, 0.5f);
    const auto prefix_tokens = test::random_normal(static_cast<size_t>(prefix * dim), 54);
    auto run = [&](Backend& be, const std::vector<float>& img, const std::vector<float>& weight) {
      auto lin = be.prepare_linear(weight.data(), bias.data(), dim, in);
      auto pre = be.prepare_vector(prefix_tokens.data(), prefix * dim);
      EXPECT_TRUE(lin.ok() && pre.ok());
      auto x = upload(be, img);
      auto y = be.allocate(static_cast<size_t>(batch * tokens * dim));
      EXPECT_TRUE(y.ok());
      EXPECT_TRUE(be.embed(*x, batch, c.channels, height, width, c.patch, **lin, **pre, prefix, dim, **y).ok());
      return download(be, **y);
    };
    auto ref = reference();
    const auto want = run(*ref, bf16_rounded(image), bf16_rounded(w));
    for (const char* isa : {"", "avx512", "avx2", "scalar"}) {
      if (std::string(isa) == "avx2" && !(cpu_features().avx2 && cpu_features().fma)) continue;
      if (std::string(isa) == "avx512" && !cpu_features().avx512f) continue;
      if (*isa != '\0') ::setenv("DINOV3_CPU_ISA", isa, 1);
      if (std::string(isa) == "avx512") ::setenv("DINOV3_CPU_NO_BF16", "1", 1);  // AVX-512F's emulated tile
      auto cpu = cpu_backend(Precision::kBF16);
      ::setenv("DINOV3_CPU_NO_BF16_COPIES", "1", 1);
      auto without_copies = cpu_backend(Precision::kBF16);
      ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
      ::unsetenv("DINOV3_CPU_NO_BF16");
      ::unsetenv("DINOV3_CPU_ISA");
      ASSERT_NE(cpu, nullptr);
      ASSERT_NE(without_copies, nullptr);
      const auto got = run(*cpu, image, w);
      const std::string what = std::string(cpu->device()) + ", patch " + std::to_string(c.patch) + " x " +
                               std::to_string(c.channels) + " channel(s)";
      EXPECT_LE(test::rel_l2(got, want), kArithmeticTol) << what;
      const auto again = run(*without_copies, image, w);
      ASSERT_EQ(got.size(), again.size());
      EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * sizeof(float)), 0) << what;
    }
  }
}

// bf16 attention against the float32 reference. Per output row O = sum_j p_j v_j (p normalised), three
// bf16 roundings reach it, each independent across terms: v (relative RMS <= 2^-9), p (<= 2^-9, plus the
// weights' own 7.6e-5 = 0.039 x 2^-9: exp2_for_bf16, 7.51e-5) and the scores. A score is q.k * log2(e)/sqrt(head_dim)
// with q and k each rounded twice (held in bf16 before RoPE, as a bf16 qkv layer gives them, and rounded again after
// it; a rotation keeps an error's size): its error has RMS <= 2 x 2^-9 times sqrt(sum_d (q_d k_d)^2) *
// log2(e)/sqrt(head_dim), which is 2 x 2^-9 log2(e) for unit-variance data, and p = 2^s turns it into a relative error
// of ln(2) times that: 2 x 2^-9. In quadrature: sqrt(1 + 1.039^2 + 4) 2^-9 (4.8e-3).
const double kBf16AttentionTol = std::sqrt(1.0 + 1.039 * 1.039 + 4.0) * std::ldexp(1.0, -9);

struct AttentionCase {
  int64_t batch, tokens, heads, head_dim, prefix;
};

std::vector<float> run_attention(Backend& be, const AttentionCase& c, const std::vector<float>& qkv,
                                 const std::vector<float>& rope) {
  auto qb = upload(be, qkv);
  auto rb = upload(be, rope);
  auto ob = be.allocate(static_cast<size_t>(c.batch * c.tokens * c.heads * c.head_dim));
  EXPECT_TRUE(ob.ok());
  const Status s = be.attention(*qb, c.batch, c.tokens, c.heads, c.head_dim, c.prefix, *rb, **ob);
  EXPECT_TRUE(s.ok()) << s.message();
  return download(be, **ob);
}

TEST(LowpBackend, Bf16AttentionWithinPrecisionBound) {
  const AttentionCase cases[] = {
      {1, 261, 6, 64, 5},  {2, 21, 3, 32, 5},  {3, 7, 1, 6, 0},    {1, 21, 2, 64, 21},
      {1, 1100, 1, 64, 1},  // several key blocks: the online-softmax rescaling path
      {1, 1025, 1, 64, 1},  // ... with an odd last block (one key): P's pair padding after wider blocks
      {1, 37, 2, 40, 3},    // head_dim not a whole panel, odd token count
      {1, 261, 2, 128, 5},  // ViT-7B's head_dim: two panels per half
      {2, 100, 3, 80, 5},  {1, 50, 1, 256, 1}, {1, 600, 1, 96, 4}, {2, 5, 1, 2, 5},
  };
  auto cpu = cpu_backend(Precision::kBF16);
  auto ref = reference();
  ASSERT_NE(cpu, nullptr);
  uint32_t seed = 300;
  for (const AttentionCase& c : cases) {
    const auto qkv = test::random_normal(static_cast<size_t>(c.batch * c.tokens * 3 * c.heads * c.head_dim), ++seed);
    const auto rope = test::random_rope_table(c.tokens - c.prefix, c.head_dim, ++seed);
    const double err = test::rel_l2(run_attention(*cpu, c, qkv, rope), run_attention(*ref, c, qkv, rope));
    std::printf("attention %lldx%lld heads %lld hd %lld: rel %.3g\n", (long long)c.batch, (long long)c.tokens, (long long)c.heads, (long long)c.head_dim, err);
    EXPECT_LE(err, kBf16AttentionTol) << c.batch << "x" << c.tokens << " heads " << c.heads << " head_dim " << c.head_dim;
  }
}

// ---- whole models against timm --------------------------------------------------------------------------

struct ModelCase {
  const char* model;
  Precision precision;
  const char* isa = nullptr;  // DINOV3_CPU_ISA for the run (the AVX2 tiles on any x86-64 machine), or the best
};

std::string model_case_name(const testing::TestParamInfo<ModelCase>& info) {
  return std::string(info.param.model) + "_" + precision_name(info.param.precision) +
         (info.param.isa != nullptr ? std::string("_") + info.param.isa : "");
}

Result<ForwardOutput> forward_fixture(const std::string& model, Precision precision, Tensor* want_features,
                                      Tensor* want_pooled) {
  const std::string dir = test::fixture("models/" + model);
  LoadOptions lo;
  lo.backend = "cpu";
  lo.backend_options.precision = precision;
  DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Model> m, Model::load(dir, lo));
  DINOV3_ASSIGN_OR_RETURN(TensorArchive expected, open_safetensors(dir + "/expected.safetensors"));
  DINOV3_ASSIGN_OR_RETURN(Tensor input, expected.load_f32("input"));
  if (want_features != nullptr) {
    DINOV3_ASSIGN_OR_RETURN(*want_features, expected.load_f32("features"));
  }
  if (want_pooled != nullptr) {
    DINOV3_ASSIGN_OR_RETURN(*want_pooled, expected.load_f32("pooled"));
  }
  return m->forward(input, {});
}

class LowpGoldenTest : public testing::TestWithParam<ModelCase> {};

DINOV3_SUITE_LABELS(LowpGoldenTest, "golden");

TEST_P(LowpGoldenTest, MeetsAccuracyThresholdsPerImage) {
  const char* isa = GetParam().isa;
  if (isa != nullptr && std::string(isa) == "avx2" && !(cpu_features().avx2 && cpu_features().fma)) {
    GTEST_SKIP() << "no AVX2";
  }
  if (isa != nullptr) ::setenv("DINOV3_CPU_ISA", isa, 1);
  Tensor want_features, want_pooled;
  Result<ForwardOutput> out = forward_fixture(GetParam().model, GetParam().precision, &want_features, &want_pooled);
  ::unsetenv("DINOV3_CPU_ISA");
  ASSERT_TRUE(out.ok()) << out.status().message();
  for (const auto& [what, got, want] : {std::tuple<const char*, const Tensor*, const Tensor*>{"features", &out->features, &want_features},
                                        {"pooled", &out->pooled, &want_pooled}}) {
    ASSERT_EQ(got->shape, want->shape) << what;
    const size_t per_image = want->data.size() / static_cast<size_t>(want->shape[0]);
    for (int64_t b = 0; b < want->shape[0]; ++b) {
      const test::Compare c = test::compare(*got, *want, static_cast<size_t>(b) * per_image, per_image);
      std::printf("[ %s %s ] %s image %lld: rel L2 %.3e, cosine %.6f\n", GetParam().model,
                  precision_name(GetParam().precision), what, static_cast<long long>(b), c.rel_l2, c.cosine);
      EXPECT_LT(c.rel_l2, GetParam().precision == Precision::kInt8 ? kInt8ModelMaxRelL2 : kModelMaxRelL2)
          << what << " image " << b;
      EXPECT_GT(c.cosine, kModelMinCosine) << what << " image " << b;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LowpGoldenTest,
                         testing::Values(ModelCase{"vits16", Precision::kBF16}, ModelCase{"tiny", Precision::kBF16},
                                         ModelCase{"tiny_swiglu_qkvb", Precision::kBF16},
                                         ModelCase{"vits16", Precision::kInt8}, ModelCase{"tiny", Precision::kInt8},
                                         ModelCase{"tiny_swiglu_qkvb", Precision::kInt8},
                                         ModelCase{"vits16", Precision::kBF16, "avx2"},
                                         ModelCase{"tiny_swiglu_qkvb", Precision::kBF16, "avx2"},
                                         ModelCase{"vits16", Precision::kInt8, "avx2"},
                                         ModelCase{"tiny_swiglu_qkvb", Precision::kInt8, "avx2"}),
                         model_case_name);

// A linear layer of uniform random weights in [-0.2, 0.2] and biases in [-0.5, 0.5] (seed, seed + 1).
std::unique_ptr<Weight> random_linear(Backend& be, int64_t out, int64_t in, uint32_t seed) {
  const auto w = test::random_uniform(static_cast<size_t>(out * in), seed, -0.2f, 0.2f);
  const auto b = test::random_uniform(static_cast<size_t>(out), seed + 1, -0.5f, 0.5f);
  auto r = be.prepare_linear(w.data(), b.data(), out, in);
  EXPECT_TRUE(r.ok());
  return r.ok() ? std::move(r).value() : nullptr;
}

// Ops whose output feeds a linear layer (LayerNorm, a GELU/SwiGLU linear, attention) also leave it in bf16
// for the next bf16 GEMM (cpu_backend.cpp, Bf16Copy). A chain of ops where the copy must and must not be
// used (fewer rows than the consumer reads, the buffer rewritten by an upload or by an op that writes no
// copy, odd widths with their padding) gives bit for bit what a backend without copies gives.
std::vector<std::vector<float>> run_copy_chain(Backend& be) {
  const int64_t rows = 29, dim = 37, hidden = 45, heads = 3, hd = 6, tokens = 29, prefix = 5;
  auto weight = [&](int64_t out, int64_t in, uint32_t seed) { return random_linear(be, out, in, seed); };
  auto vector = [&](int64_t n, uint32_t seed) {
    const auto v = test::random_uniform(static_cast<size_t>(n), seed, 0.5f, 1.5f);
    auto r = be.prepare_vector(v.data(), n);
    EXPECT_TRUE(r.ok());
    return std::move(r).value();
  };
  auto w_in = weight(dim, dim, 61), w_up = weight(hidden, dim, 63), w_down = weight(dim, hidden, 65);
  auto w_qkv = weight(3 * heads * hd, dim, 67), w_proj = weight(dim, heads * hd, 69);
  auto g_up = weight(hidden, dim, 71), g_gate = weight(hidden, dim, 73);
  auto gamma = vector(dim, 75), beta = vector(dim, 76);
  auto x = upload(be, test::random_normal(static_cast<size_t>(rows * dim), 77));
  auto h = upload(be, test::random_normal(static_cast<size_t>(rows * hidden), 78));
  auto wide = upload(be, test::random_normal(static_cast<size_t>(rows * 3 * heads * hd), 79));
  auto att = upload(be, test::random_normal(static_cast<size_t>(rows * hidden), 80));
  auto rope = upload(be, test::random_rope_table(tokens - prefix, hd, 81));
  auto y = upload(be, std::vector<float>(static_cast<size_t>(rows * hidden)));
  std::vector<std::vector<float>> got;
  auto linear = [&](const DeviceBuffer& in, int64_t n, const Weight& w, Activation act, DeviceBuffer& out) {
    LinearEpilogue e;
    e.activation = act;
    const Status st = be.linear(in, n, w, e, out);
    EXPECT_TRUE(st.ok()) << st.message();
    got.push_back(download(be, out));
  };
  auto layer_norm = [&](int64_t n, DeviceBuffer& out) {
    const Status st = be.layer_norm(*x, n, dim, *gamma, *beta, 1e-6f, out);
    EXPECT_TRUE(st.ok()) << st.message();
  };
  layer_norm(rows - 9, *h);                                  // a copy of 20 rows ...
  linear(*h, rows, *w_in, Activation::kNone, *y);            // ... cannot serve 29
  linear(*h, rows - 9, *w_in, Activation::kNone, *y);        // ... can serve 20
  EXPECT_TRUE(be.upload(*h, 3, std::vector<float>(5, 2.5f).data(), 5).ok());
  linear(*h, rows - 9, *w_in, Activation::kNone, *y);        // rewritten by an upload
  layer_norm(rows, *h);
  linear(*h, rows, *w_up, Activation::kGelu, *y);            // GELU leaves an odd-width copy in y
  linear(*y, rows, *w_down, Activation::kNone, *x);          // ... which this reads
  linear(*h, rows, *w_up, Activation::kNone, *y);            // y rewritten without a copy
  linear(*y, rows, *w_down, Activation::kNone, *x);
  layer_norm(rows, *h);
  EXPECT_TRUE(be.linear_swiglu(*h, rows, *g_gate, *g_up, *y).ok());
  got.push_back(download(be, *y));
  linear(*y, rows, *w_down, Activation::kNone, *x);          // SwiGLU's copy
  linear(*x, rows, *w_qkv, Activation::kNone, *wide);
  EXPECT_TRUE(be.attention(*wide, 1, tokens, heads, hd, prefix, *rope, *att).ok());
  got.push_back(download(be, *att));
  linear(*att, rows, *w_proj, Activation::kNone, *x);        // attention's copy
  EXPECT_TRUE(be.upload(*att, 0, std::vector<float>(7, -1.0f).data(), 7).ok());
  linear(*att, rows, *w_proj, Activation::kNone, *x);        // ... gone after an upload
  return got;
}

TEST(LowpBackend, Bf16CopiesGiveTheSameBitsAsConvertingAgain) {
  for (Precision p : {Precision::kBF16, Precision::kInt8}) {
    ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
    BackendOptions options;
    options.threads = 2;
    options.precision = p;
    if (p == Precision::kInt8) {  // mixed layers (in run_copy_chain's order; SwiGLU's pair, 5 and 6, alike):
      // copies are written, and read by the bf16 layers only
      options.int8_linear_precision = [](int64_t i) { return i % 2 == 0 || i == 5 ? Precision::kBF16 : Precision::kInt8; };
    }
    auto with = create_cpu_backend(options);
    ::setenv("DINOV3_CPU_NO_BF16_COPIES", "1", 1);
    auto without = create_cpu_backend(options);
    ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
    ASSERT_TRUE(with.ok() && without.ok());
    const auto a = run_copy_chain(**with), b = run_copy_chain(**without);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      ASSERT_EQ(a[i].size(), b[i].size());
      EXPECT_EQ(std::memcmp(a[i].data(), b[i].data(), a[i].size() * sizeof(float)), 0)
          << precision_name(p) << ": output " << i << " of the chain";
    }
  }
}

// LinearEpilogue::consumer: an op's output handed to the next linear layer (an MLP hidden layer, a
// LayerNorm's output). When that layer reads bf16, the output is written only in bf16: the consumer's
// output is bit for bit what it is without the hint, and the buffer read any other way (download, here) is
// the un-hinted values rounded to bf16. An int8 consumer reads float32, which is then written as always.
// GELU, SwiGLU and LayerNorm; bf16 and mixed int8.
TEST(LowpBackend, ConsumerHintKeepsTheConsumersBits) {
  const int64_t rows = 29, dim = 37, hidden = 45;
  for (Precision p : {Precision::kBF16, Precision::kInt8}) {
    ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
    BackendOptions options;
    options.threads = 2;
    options.precision = p;
    // Loading order below: up, gate, down_bf16, down_int8, in_bf16, in_int8; int8 for the *_int8 ones.
    options.int8_linear_precision = [](int64_t i) { return i == 3 || i == 5 ? Precision::kInt8 : Precision::kBF16; };
    auto made = create_cpu_backend(options);
    ASSERT_TRUE(made.ok());
    Backend& be = **made;
    auto weight = [&](int64_t out, int64_t in, uint32_t seed) { return random_linear(be, out, in, seed); };
    auto w_up = weight(hidden, dim, 91), w_gate = weight(hidden, dim, 93);
    auto down_bf16 = weight(dim, hidden, 95), down_int8 = weight(dim, hidden, 97);
    auto in_bf16 = weight(hidden, dim, 101), in_int8 = weight(hidden, dim, 103);
    const auto g = test::random_uniform(static_cast<size_t>(dim), 105, 0.5f, 1.5f);
    auto gamma = be.prepare_vector(g.data(), dim);
    ASSERT_TRUE(gamma.ok());
    auto x = upload(be, test::random_normal(static_cast<size_t>(rows * dim), 99));
    auto h = upload(be, std::vector<float>(static_cast<size_t>(rows * hidden)));
    auto n = upload(be, std::vector<float>(static_cast<size_t>(rows * dim)));
    auto out = upload(be, std::vector<float>(static_cast<size_t>(rows * dim)));
    enum Producer { kGelu, kSwiglu, kLayerNorm };
    for (const Producer producer : {kGelu, kSwiglu, kLayerNorm}) {
      const bool swiglu = producer == kSwiglu;
      for (const bool bf16_consumer : {true, false}) {
        if (p == Precision::kBF16 && !bf16_consumer) continue;  // every layer bf16 there
        const bool reads_bf16 = bf16_consumer;
        const Weight* down = producer == kLayerNorm ? (bf16_consumer ? in_bf16.get() : in_int8.get())
                                                    : (bf16_consumer ? down_bf16.get() : down_int8.get());
        DeviceBuffer& produced = producer == kLayerNorm ? *n : *h;
        auto hidden_layer = [&](const Weight* consumer) {
          Status st;
          if (producer == kLayerNorm) {
            st = be.layer_norm(*x, rows, dim, **gamma, **gamma, 1e-6f, *n, consumer);
          } else if (swiglu) {
            st = be.linear_swiglu(*x, rows, *w_gate, *w_up, *h, consumer);
          } else {
            st = be.linear(*x, rows, *w_up, {Activation::kGelu, nullptr, consumer}, *h);
          }
          ASSERT_TRUE(st.ok()) << st.message();
        };
        auto consume = [&] {
          const Status st = be.linear(produced, rows, *down, {}, producer == kLayerNorm ? *h : *out);
          EXPECT_TRUE(st.ok()) << st.message();
          return download(be, producer == kLayerNorm ? *h : *out);
        };
        const char* names[] = {" GELU", " SwiGLU", " LayerNorm"};
        const std::string what = std::string(precision_name(p)) + names[producer] +
                                 (reads_bf16 ? ", bf16 consumer" : ", int8 consumer");
        hidden_layer(nullptr);
        const std::vector<float> plain_h = download(be, produced), plain_out = consume();
        hidden_layer(down);
        const std::vector<float> hinted_out = consume();
        ASSERT_EQ(plain_out.size(), hinted_out.size());
        EXPECT_EQ(std::memcmp(plain_out.data(), hinted_out.data(), plain_out.size() * sizeof(float)), 0) << what;
        const std::vector<float> hinted_h = download(be, produced);  // filled in from the copy (bf16 consumer)
        ASSERT_EQ(plain_h.size(), hinted_h.size());
        int64_t differ = 0;
        for (size_t i = 0; i < plain_h.size(); ++i) {
          const float want = reads_bf16 ? lowp::float_from_bf16(lowp::bf16_from_float(plain_h[i])) : plain_h[i];
          differ += std::memcmp(&want, &hinted_h[i], sizeof(float)) != 0;
        }
        EXPECT_EQ(differ, 0) << what;
        const std::vector<float> again = consume();  // the copy still serves after the float32 was filled in
        EXPECT_EQ(std::memcmp(plain_out.data(), again.data(), plain_out.size() * sizeof(float)), 0) << what;
      }
    }
  }
}

// The same for attention's output (handed to the projection): with one key block (29 tokens) it is written
// only in bf16; with several (700 tokens: the float32 output accumulates over blocks) in full as before.
TEST(LowpBackend, ConsumerHintOnAttention) {
  const int64_t heads = 2, hd = 8, dim = heads * hd, prefix = 5;
  BackendOptions options;
  options.threads = 2;
  options.precision = Precision::kBF16;
  auto made = create_cpu_backend(options);
  ASSERT_TRUE(made.ok());
  Backend& be = **made;
  const auto w = test::random_uniform(static_cast<size_t>(dim * dim), 111, -0.2f, 0.2f);
  auto proj = be.prepare_linear(w.data(), nullptr, dim, dim);
  ASSERT_TRUE(proj.ok());
  for (const int64_t tokens : {int64_t{29}, int64_t{700}}) {
    auto qkv = upload(be, test::random_normal(static_cast<size_t>(tokens * 3 * dim), 113));
    auto rope = upload(be, test::random_rope_table(tokens - prefix, hd, 115));
    auto att = upload(be, std::vector<float>(static_cast<size_t>(tokens * dim)));
    auto y = upload(be, std::vector<float>(static_cast<size_t>(tokens * dim)));
    auto run = [&](const Weight* consumer) {
      EXPECT_TRUE(be.attention(*qkv, 1, tokens, heads, hd, prefix, *rope, *att, consumer).ok());
      EXPECT_TRUE(be.linear(*att, tokens, **proj, {}, *y).ok());
      return std::pair{download(be, *y), download(be, *att)};
    };
    const auto [plain_y, plain_att] = run(nullptr);
    const auto [hinted_y, hinted_att] = run(proj->get());
    EXPECT_EQ(std::memcmp(plain_y.data(), hinted_y.data(), plain_y.size() * sizeof(float)), 0) << tokens;
    int64_t differ = 0;
    for (size_t i = 0; i < plain_att.size(); ++i) {
      const float want = tokens == 29 ? lowp::float_from_bf16(lowp::bf16_from_float(plain_att[i])) : plain_att[i];
      differ += std::memcmp(&want, &hinted_att[i], sizeof(float)) != 0;
    }
    EXPECT_EQ(differ, 0) << tokens << " tokens";
  }
}

// Reduced-precision attention (bf16 products at both bf16 and int8) rounds q, k and v to bf16 before RoPE,
// whatever form qkv comes in: float32 values give the bits of their bf16 roundings, on every ISA (AVX-512 reads the
// rows with vector loads, the others lane by lane), through the float32 path (converted first) and through a qkv
// layer's bf16 output (the attention_input hint: copy-only), which must also leave the qkv buffer holding the rounded
// values.
TEST(LowpBackend, Bf16AttentionRoundsQkvFirstInAnyForm) {
  const AttentionCase cases[] = {
      {1, 261, 6, 64, 5}, {2, 37, 2, 40, 3}, {1, 700, 1, 64, 1},  // two key blocks
      {1, 21, 2, 64, 21},                                         // prefix only: no rotation
      {1, 19, 2, 34, 2},
  };
  for (const auto& [isa, precision] : {std::pair{cpu::Isa::kAvx512, Precision::kBF16},
                                       {cpu::Isa::kAvx2, Precision::kBF16},
                                       {cpu::Isa::kScalar, Precision::kBF16},
                                       {cpu::Isa::kAvx512, Precision::kInt8}}) {
    BackendOptions options;
    options.threads = 2;
    options.precision = precision;
    auto made = create_cpu_backend_for_isa(options, isa);
    if (!made.ok()) continue;  // the machine cannot run this ISA
    Backend& be = **made;
    uint32_t seed = 700;
    for (const AttentionCase& c : cases) {
      const int64_t dim = c.heads * c.head_dim, rows = c.batch * c.tokens;
      const auto qkv = test::random_normal(static_cast<size_t>(rows * 3 * dim), ++seed);
      const auto rope = test::random_rope_table(c.tokens - c.prefix, c.head_dim, ++seed);
      const std::string where = std::string(cpu::isa_name(isa)) + " " + precision_name(precision) + " " +
                                std::to_string(c.tokens) + " tokens, " + std::to_string(c.heads) + " x " +
                                std::to_string(c.head_dim);
      const auto from_float = run_attention(be, c, qkv, rope);
      const auto from_rounded = run_attention(be, c, bf16_rounded(qkv), rope);
      ASSERT_EQ(from_float.size(), from_rounded.size());
      EXPECT_EQ(std::memcmp(from_float.data(), from_rounded.data(), from_float.size() * sizeof(float)), 0) << where;

      // qkv from a linear layer (x -> 3 x dim), with and without the hint.
      const int64_t in = 24;
      const auto x = test::random_normal(static_cast<size_t>(rows * in), ++seed);
      const auto w = test::random_uniform(static_cast<size_t>(3 * dim * in), ++seed, -0.3f, 0.3f);
      const auto bias = test::random_uniform(static_cast<size_t>(3 * dim), ++seed, -0.5f, 0.5f);
      auto lin = be.prepare_linear(w.data(), bias.data(), 3 * dim, in);
      ASSERT_TRUE(lin.ok());
      auto xb = upload(be, x);
      auto rb = upload(be, rope);
      auto through_layer = [&](bool hint, std::vector<float>* qkv_values) {
        auto qb = upload(be, std::vector<float>(static_cast<size_t>(rows * 3 * dim)));
        auto ob = upload(be, std::vector<float>(static_cast<size_t>(rows * dim)));
        LinearEpilogue e;
        e.attention_input = hint;
        EXPECT_TRUE(be.linear(*xb, rows, **lin, e, *qb).ok());
        EXPECT_TRUE(be.attention(*qb, c.batch, c.tokens, c.heads, c.head_dim, c.prefix, *rb, *ob).ok());
        *qkv_values = download(be, *qb);
        return download(be, *ob);
      };
      std::vector<float> plain_qkv, hinted_qkv;
      const auto plain = through_layer(false, &plain_qkv);
      const auto hinted = through_layer(true, &hinted_qkv);
      EXPECT_EQ(std::memcmp(plain.data(), hinted.data(), plain.size() * sizeof(float)), 0) << where << ", hint";
      const auto rounded_qkv = bf16_rounded(plain_qkv);
      EXPECT_EQ(std::memcmp(rounded_qkv.data(), hinted_qkv.data(), rounded_qkv.size() * sizeof(float)), 0)
          << where << ": the hinted qkv reads back rounded";
    }
  }
}

// At float32 the hint changes nothing: the qkv values stay exact.
TEST(LowpBackend, AttentionInputHintKeepsFloat32Qkv) {
  auto be = cpu_backend(Precision::kF32);
  ASSERT_NE(be, nullptr);
  const int64_t rows = 29, in = 16, out = 3 * 16;
  const auto x = test::random_normal(static_cast<size_t>(rows * in), 41);
  const auto w = test::random_uniform(static_cast<size_t>(out * in), 42, -0.3f, 0.3f);
  auto lin = be->prepare_linear(w.data(), nullptr, out, in);
  ASSERT_TRUE(lin.ok());
  auto xb = upload(*be, x);
  std::vector<float> got[2];
  for (int hint = 0; hint < 2; ++hint) {
    auto yb = upload(*be, std::vector<float>(static_cast<size_t>(rows * out)));
    LinearEpilogue e;
    e.attention_input = hint == 1;
    ASSERT_TRUE(be->linear(*xb, rows, **lin, e, *yb).ok());
    got[hint] = download(*be, *yb);
  }
  EXPECT_EQ(std::memcmp(got[0].data(), got[1].data(), got[0].size() * sizeof(float)), 0);
}

// A consumer must be a linear layer of the same backend whose input is the op's output, and a residual
// layer's output (added into y) cannot be handed over.
TEST(LowpBackend, ConsumerHintIsChecked) {
  for (Precision p : {Precision::kF32, Precision::kBF16}) {
    BackendOptions options;
    options.precision = p;
    auto made = create_cpu_backend(options);
    ASSERT_TRUE(made.ok());
    Backend& be = **made;
    const auto w = test::random_uniform(12 * 8, 5, -0.2f, 0.2f);
    auto up = be.prepare_linear(w.data(), nullptr, 12, 8);  // 8 -> 12
    auto down = be.prepare_linear(w.data(), nullptr, 8, 12);  // 12 -> 8
    auto scale = be.prepare_vector(w.data(), 12);
    ASSERT_TRUE(up.ok() && down.ok() && scale.ok());
    auto x = upload(be, std::vector<float>(3 * 8, 1.0f));
    auto y = upload(be, std::vector<float>(3 * 12, 1.0f));
    EXPECT_TRUE(be.linear(*x, 3, **up, {Activation::kGelu, nullptr, down->get()}, *y).ok());
    const Status wrong_width = be.linear(*x, 3, **up, {Activation::kGelu, nullptr, up->get()}, *y);
    EXPECT_EQ(wrong_width.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(wrong_width.message().find("consumer"), std::string::npos) << wrong_width.message();
    const Status residual = be.linear(*x, 3, **up, {Activation::kNone, scale->get(), down->get()}, *y);
    EXPECT_EQ(residual.code(), ErrorCode::kInvalidArgument);
    EXPECT_FALSE(be.linear_swiglu(*x, 3, **up, **up, *y, up->get()).ok());
    // attention's input is no residual output and no linear layer's input
    LinearEpilogue to_attention;
    to_attention.attention_input = true;
    EXPECT_TRUE(be.linear(*x, 3, **up, to_attention, *y).ok());
    to_attention.residual_scale = scale->get();
    const Status residual_attention = be.linear(*x, 3, **up, to_attention, *y);
    EXPECT_EQ(residual_attention.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(residual_attention.message().find("attention"), std::string::npos) << residual_attention.message();
    to_attention.residual_scale = nullptr;
    to_attention.consumer = down->get();
    EXPECT_EQ(be.linear(*x, 3, **up, to_attention, *y).code(), ErrorCode::kInvalidArgument);
    auto other = create_cpu_backend(options);
    ASSERT_TRUE(other.ok());
    auto foreign = (*other)->prepare_linear(w.data(), nullptr, 8, 12);
    ASSERT_TRUE(foreign.ok());
    EXPECT_FALSE(be.linear(*x, 3, **up, {Activation::kGelu, nullptr, foreign->get()}, *y).ok());
  }
}

// DINOV3_CPU_NO_BF16=1 / DINOV3_CPU_NO_VNNI=1 force the AVX-512 emulations (or, without AVX-512, the
// portable kernels): the whole model must come out bit for bit as on the AVX512_BF16 / AVX512_VNNI path.
DINOV3_SUITE_LABELS(LowpGolden, "unit");  // native against emulated, not against timm

void expect_forced_emulation_gives_the_same_bits(Precision precision, const char* env, const char* native_name) {
  ::unsetenv(env);
  Result<ForwardOutput> native = forward_fixture("vits16", precision, nullptr, nullptr);
  ::setenv(env, "1", 1);
  auto be = cpu_backend(precision);
  ASSERT_NE(be, nullptr);
  EXPECT_EQ(be->device().find(native_name), std::string::npos) << be->device();
  Result<ForwardOutput> emulated = forward_fixture("vits16", precision, nullptr, nullptr);
  ::unsetenv(env);
  ASSERT_TRUE(native.ok()) << native.status().message();
  ASSERT_TRUE(emulated.ok()) << emulated.status().message();
  ASSERT_EQ(native->features.data.size(), emulated->features.data.size());
  EXPECT_EQ(std::memcmp(native->features.data.data(), emulated->features.data.data(),
                        native->features.data.size() * sizeof(float)),
            0);
  EXPECT_EQ(std::memcmp(native->pooled.data.data(), emulated->pooled.data.data(),
                        native->pooled.data.size() * sizeof(float)),
            0);
}

TEST(LowpGolden, ForcedEmulationGivesTheSameBits) {
  expect_forced_emulation_gives_the_same_bits(Precision::kBF16, "DINOV3_CPU_NO_BF16", "avx512bf16");
}

TEST(LowpGolden, ForcedNoVnniGivesTheSameBits) {
  expect_forced_emulation_gives_the_same_bits(Precision::kInt8, "DINOV3_CPU_NO_VNNI", "avx512vnni");
}

// The bf16 copies (cpu_backend.cpp) on a whole model, GELU and SwiGLU: the same bits as without them.
TEST(LowpGolden, Bf16CopiesGiveTheSameBits) {
  for (const char* model : {"vits16", "tiny_swiglu_qkvb"}) {
    ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
    Result<ForwardOutput> with = forward_fixture(model, Precision::kBF16, nullptr, nullptr);
    ::setenv("DINOV3_CPU_NO_BF16_COPIES", "1", 1);
    Result<ForwardOutput> without = forward_fixture(model, Precision::kBF16, nullptr, nullptr);
    ::unsetenv("DINOV3_CPU_NO_BF16_COPIES");
    ASSERT_TRUE(with.ok()) << with.status().message();
    ASSERT_TRUE(without.ok()) << without.status().message();
    for (const auto& [a, b] : {std::pair{&with->features, &without->features}, std::pair{&with->pooled, &without->pooled}}) {
      ASSERT_EQ(a->data.size(), b->data.size());
      EXPECT_EQ(std::memcmp(a->data.data(), b->data.data(), a->data.size() * sizeof(float)), 0) << model;
    }
  }
}

DINOV3_SUITE_LABELS(LowpCli, "unit");

DINOV3_TEST_LABELS(LowpCli, AccuracyBf16Passes, "unit", "slow");
TEST(LowpCli, AccuracyBf16Passes) {
  test::TempDir out;
  EXPECT_EQ(cli::run_cli({"dinov3", "accuracy", "--precision", "bf16", "--backend", "cpu", "--model",
                          test::fixture("models/vits16"), "--output-dir", out.path()}),
            0);
  const std::string report = test::read_file(out.file("accuracy.json"));
  EXPECT_NE(report.find("\"precision\": \"bf16\""), std::string::npos);
}

}  // namespace
}  // namespace dinov3
