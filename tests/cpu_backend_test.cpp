// The cpu backend against the reference backend (the oracle), op by op, for every instruction set this
// machine supports, on the real ViT-S shapes and on ragged ones that are not tile multiples.
//
// Tolerances are relative L2 errors ||cpu - ref|| / ||ref||. The reference accumulates in double and
// rounds once; the cpu backend accumulates in float32 (one rounding per FMA, in a different order), so a
// K-term dot product of random data carries a relative error of about eps * sqrt(K) ~ 6e-8 * 40 for the
// largest K here (1536): 2e-6 leaves ample margin while still catching any indexing or epilogue mistake
// (those give errors of order 1e-2 and up).
#include "backend/cpu/cpu_backend.h"

#include <gtest/gtest.h>
#include <xmmintrin.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/attention/attention.h"
#include "backend/cpu/lowp/attention_bf16.h"
#include "backend/cpu/lowp/lowp_kernels.h"
#include "backend/cpu/weight_arena.h"
#include "backend/reference/reference_backend.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

using cpu::Isa;

constexpr double kGemmTol = 2e-6;       // float32 dot products, K <= 1536 (see above)
constexpr double kNormTol = 1e-6;       // two-pass float32 mean/variance over <= 1000 values
constexpr double kAttentionTol = 2e-6;  // float32 q.k (K = head_dim), exp to ~2 ulp, P.V over <= 300 keys

std::unique_ptr<DeviceBuffer> upload(Backend& be, const std::vector<float>& v) {
  auto buf = be.allocate(v.size());
  EXPECT_TRUE(buf.ok()) << buf.status().message();
  EXPECT_TRUE(be.upload(**buf, 0, v.data(), v.size()).ok());
  return std::move(buf).value();
}

std::vector<float> download(Backend& be, const DeviceBuffer& b) {
  std::vector<float> v(b.size());
  EXPECT_TRUE(be.download(b, 0, v.data(), v.size()).ok());
  return v;
}

std::unique_ptr<Weight> linear_weight(Backend& be, const std::vector<float>& w, const std::vector<float>* bias,
                                      int64_t out, int64_t in) {
  auto r = be.prepare_linear(w.data(), bias ? bias->data() : nullptr, out, in);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

std::unique_ptr<Weight> vector_weight(Backend& be, const std::vector<float>& v) {
  auto r = be.prepare_vector(v.data(), static_cast<int64_t>(v.size()));
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

std::unique_ptr<Backend> reference() {
  auto r = create_reference_backend({});
  EXPECT_TRUE(r.ok());
  return std::move(r).value();
}

class CpuBackendTest : public ::testing::TestWithParam<Isa> {
 protected:
  // The cpu backend on the parameter's ISA, or nullptr (and the test skipped) where the machine lacks it.
  std::unique_ptr<Backend> cpu_backend(int threads = 2) {
    BackendOptions options;
    options.threads = threads;
    auto r = create_cpu_backend_for_isa(options, GetParam());
    if (!r.ok()) return nullptr;
    return std::move(r).value();
  }
};

#define CPU_OR_SKIP(var, ...)                                                                         \
  auto var = cpu_backend(__VA_ARGS__);                                                                \
  if (!var) GTEST_SKIP() << "this machine cannot run the " << cpu::isa_name(GetParam()) << " kernels"

struct LinearCase {
  int64_t rows, out, in;
};
const LinearCase kLinearCases[] = {
    {261, 1152, 384},  // qkv
    {261, 384, 384},   // proj
    {261, 1536, 384},  // fc1
    {261, 384, 1536},  // fc2
    {523, 384, 1536},  // two images and one row
    {1, 1152, 384},   {7, 100, 64}, {7, 1000, 100}, {523, 64, 384}, {1, 1, 1}, {5, 17, 3},
};

enum class Epi { kNone, kGelu, kResidual };

void check_linear(Backend& cpu, const LinearCase& c, Epi epi, bool with_bias, uint32_t seed) {
  auto ref = reference();
  const float bound = 1.0f / std::sqrt(static_cast<float>(c.in));
  const auto w = test::random_uniform(static_cast<size_t>(c.out * c.in), seed, -bound, bound);
  const auto bias = test::random_uniform(static_cast<size_t>(c.out), seed + 1, -0.5f, 0.5f);
  const auto x = test::random_normal(static_cast<size_t>(c.rows * c.in), seed + 2);
  const auto y0 = test::random_normal(static_cast<size_t>(c.rows * c.out), seed + 3);  // residual stream
  const auto gamma = test::random_uniform(static_cast<size_t>(c.out), seed + 4, 0.05f, 1.0f);
  std::vector<float> results[2];
  Backend* backends[2] = {ref.get(), &cpu};
  for (int i = 0; i < 2; ++i) {
    Backend& be = *backends[i];
    auto wt = linear_weight(be, w, with_bias ? &bias : nullptr, c.out, c.in);
    auto scale = vector_weight(be, gamma);
    auto xb = upload(be, x);
    auto yb = upload(be, y0);
    LinearEpilogue e;
    if (epi == Epi::kGelu) e.activation = Activation::kGelu;
    if (epi == Epi::kResidual) e.residual_scale = scale.get();
    ASSERT_TRUE(be.linear(*xb, c.rows, *wt, e, *yb).ok());
    results[i] = download(be, *yb);
  }
  EXPECT_LE(test::rel_l2(results[1], results[0]), kGemmTol)
      << "rows " << c.rows << " out " << c.out << " in " << c.in << " epilogue " << static_cast<int>(epi)
      << " bias " << with_bias;
}

DINOV3_SUITE_LABELS(CpuBackendTest, "unit");

TEST_P(CpuBackendTest, LinearMatchesReference) {
  CPU_OR_SKIP(cpu);
  uint32_t seed = 1;
  for (const LinearCase& c : kLinearCases) check_linear(*cpu, c, Epi::kNone, true, seed += 10);
  check_linear(*cpu, {7, 100, 64}, Epi::kNone, false, seed += 10);
}

TEST_P(CpuBackendTest, LinearGeluMatchesReference) {
  CPU_OR_SKIP(cpu);
  uint32_t seed = 1000;
  for (const LinearCase& c : kLinearCases) check_linear(*cpu, c, Epi::kGelu, true, seed += 10);
}

TEST_P(CpuBackendTest, LinearResidualMatchesReference) {
  CPU_OR_SKIP(cpu);
  uint32_t seed = 2000;
  for (const LinearCase& c : kLinearCases) check_linear(*cpu, c, Epi::kResidual, c.rows != 7, seed += 10);
}

// GELU over the whole float range that matters (tails included), elementwise through a 1x1 identity layer,
// so the erf approximation is checked point by point: within 3e-7 relative (a few ulp) down to x = -5.65,
// and within 1e-9 absolute beyond, where |gelu(x)| < 3e-8 and the kernels simplify the far tail (the
// AVX-512 table ends at x = -6.36 and returns 0 past it; the others hold erfc's cofactor constant).
TEST_P(CpuBackendTest, GeluIsAccurateEverywhere) {
  CPU_OR_SKIP(cpu, 1);
  auto ref = reference();
  std::vector<float> x;
  for (float v = -12.0f; v <= 12.0f; v += 1.0f / 512.0f) x.push_back(v);
  const size_t grid = x.size();
  // Far out, where x * x overflows: gelu(x) is x on the right and 0 on the left; +inf stays, NaN stays.
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {1e19f, -1e19f, 1e30f, -1e30f, 3e38f, -3e38f, inf, std::numeric_limits<float>::quiet_NaN()}) {
    x.push_back(v);
  }
  const int64_t rows = static_cast<int64_t>(x.size());
  const std::vector<float> one = {1.0f};
  std::vector<float> got, want;
  for (Backend* be : {ref.get(), cpu.get()}) {
    auto w = linear_weight(*be, one, nullptr, 1, 1);
    auto xb = upload(*be, x);
    auto yb = be->allocate(x.size());
    LinearEpilogue e;
    e.activation = Activation::kGelu;
    ASSERT_TRUE(be->linear(*xb, rows, *w, e, **yb).ok());
    (be == ref.get() ? want : got) = download(*be, **yb);
  }
  for (size_t i = 0; i < grid; ++i) {
    const double err = std::fabs(static_cast<double>(got[i]) - want[i]);
    const double bound = x[i] >= -5.65f ? 3e-7 * std::fabs(want[i]) : 1e-9;
    EXPECT_LE(err, bound) << "gelu(" << x[i] << ")";
  }
  for (size_t i = grid; i < x.size(); ++i) {
    if (std::isnan(x[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << "gelu(NaN) = " << got[i];
    } else if (x[i] > 0) {
      EXPECT_EQ(got[i], x[i]) << "gelu(" << x[i] << ")";
    } else {
      EXPECT_LE(std::fabs(got[i]), 1e-9) << "gelu(" << x[i] << ")";
    }
  }
}

TEST_P(CpuBackendTest, SwigluMatchesReference) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  const LinearCase cases[] = {{7, 100, 64}, {261, 1024, 384}, {1, 33, 100}};
  uint32_t seed = 3000;
  for (const LinearCase& c : cases) {
    const float bound = 1.0f / std::sqrt(static_cast<float>(c.in));
    const auto wg = test::random_uniform(static_cast<size_t>(c.out * c.in), ++seed, -bound, bound);
    const auto wu = test::random_uniform(static_cast<size_t>(c.out * c.in), ++seed, -bound, bound);
    const auto bg = test::random_uniform(static_cast<size_t>(c.out), ++seed, -0.5f, 0.5f);
    const auto bu = test::random_uniform(static_cast<size_t>(c.out), ++seed, -0.5f, 0.5f);
    const auto x = test::random_normal(static_cast<size_t>(c.rows * c.in), ++seed, 0.0f, 2.0f);
    std::vector<float> results[2];
    Backend* backends[2] = {ref.get(), cpu.get()};
    for (int i = 0; i < 2; ++i) {
      auto g = linear_weight(*backends[i], wg, &bg, c.out, c.in);
      auto u = linear_weight(*backends[i], wu, &bu, c.out, c.in);
      auto xb = upload(*backends[i], x);
      auto yb = backends[i]->allocate(static_cast<size_t>(c.rows * c.out));
      ASSERT_TRUE(backends[i]->linear_swiglu(*xb, c.rows, *g, *u, **yb).ok());
      results[i] = download(*backends[i], **yb);
    }
    EXPECT_LE(test::rel_l2(results[1], results[0]), kGemmTol) << "rows " << c.rows << " out " << c.out;
  }
}

TEST_P(CpuBackendTest, LayerNormMatchesReference) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  uint32_t seed = 4000;
  for (int64_t rows : {1, 7, 261, 523}) {
    for (int64_t dim : {64, 100, 384, 1000}) {
      // An offset mean, as in the residual stream, so a one-pass variance would visibly lose digits.
      const auto x = test::random_normal(static_cast<size_t>(rows * dim), ++seed, 3.0f, 2.0f);
      const auto g = test::random_uniform(static_cast<size_t>(dim), ++seed, 0.5f, 1.5f);
      const auto b = test::random_uniform(static_cast<size_t>(dim), ++seed, -0.5f, 0.5f);
      std::vector<float> results[2], in_place;
      Backend* backends[2] = {ref.get(), cpu.get()};
      for (int i = 0; i < 2; ++i) {
        auto gw = vector_weight(*backends[i], g);
        auto bw = vector_weight(*backends[i], b);
        auto xb = upload(*backends[i], x);
        auto yb = backends[i]->allocate(x.size());
        ASSERT_TRUE(backends[i]->layer_norm(*xb, rows, dim, *gw, *bw, 1e-6f, **yb).ok());
        results[i] = download(*backends[i], **yb);
        if (i == 1) {
          ASSERT_TRUE(backends[i]->layer_norm(*xb, rows, dim, *gw, *bw, 1e-6f, *xb).ok());
          in_place = download(*backends[i], *xb);
        }
      }
      EXPECT_LE(test::rel_l2(results[1], results[0]), kNormTol) << "rows " << rows << " dim " << dim;
      EXPECT_EQ(in_place, results[1]) << "in-place layer_norm differs, rows " << rows << " dim " << dim;
    }
  }
}

struct AttentionCase {
  int64_t batch, tokens, heads, head_dim, prefix;
};

std::vector<float> run_attention(Backend& be, const AttentionCase& c, const std::vector<float>& qkv,
                                 const std::vector<float>& rope) {
  auto qb = upload(be, qkv);
  auto rb = upload(be, rope);
  auto ob = be.allocate(static_cast<size_t>(c.batch * c.tokens * c.heads * c.head_dim));
  const Status s = be.attention(*qb, c.batch, c.tokens, c.heads, c.head_dim, c.prefix, *rb, **ob);
  EXPECT_TRUE(s.ok()) << s.message();
  return download(be, **ob);
}

const AttentionCase kAttentionCases[] = {
    {1, 261, 6, 64, 5},  // ViT-S/16 at 256 px
    {2, 261, 6, 64, 5}, {2, 21, 3, 32, 5}, {1, 300, 2, 64, 5}, {3, 7, 1, 32, 0},
    {1, 21, 2, 64, 21},  // prefix only: no RoPE at all
    {1, 1100, 1, 64, 1}, // several key blocks: the online-softmax rescaling path
    {1, 261, 2, 128, 5}, // ViT-7B's head_dim
    {2, 100, 3, 80, 5}, {1, 50, 1, 256, 1}, {1, 600, 1, 96, 4}, {1, 9, 2, 34, 2},
};

TEST_P(CpuBackendTest, AttentionMatchesReference) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  uint32_t seed = 5000;
  for (const AttentionCase& c : kAttentionCases) {
    const auto qkv = test::random_normal(static_cast<size_t>(c.batch * c.tokens * 3 * c.heads * c.head_dim), ++seed);
    const auto rope = test::random_rope_table(c.tokens - c.prefix, c.head_dim, ++seed);
    const auto want = run_attention(*ref, c, qkv, rope);
    const auto got = run_attention(*cpu, c, qkv, rope);
    EXPECT_LE(test::rel_l2(got, want), kAttentionTol)
        << "batch " << c.batch << " tokens " << c.tokens << " heads " << c.heads << " head_dim " << c.head_dim;
  }
}

// Peaked softmax rows (large logits) stress the max subtraction and the exp range.
TEST_P(CpuBackendTest, AttentionWithLargeScores) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  const AttentionCase c{1, 261, 2, 64, 5};
  const auto qkv = test::random_normal(static_cast<size_t>(c.batch * c.tokens * 3 * c.heads * c.head_dim), 77, 0.0f, 4.0f);
  const auto rope = test::random_rope_table(c.tokens - c.prefix, c.head_dim, 78);
  // Scores reach |q.k|/8 ~ 100: float32 rounding of the logits (eps * 100) bounds the agreement.
  EXPECT_LE(test::rel_l2(run_attention(*cpu, c, qkv, rope), run_attention(*ref, c, qkv, rope)), 5e-5);
}

TEST_P(CpuBackendTest, EmbedMatchesReference) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  struct Case {
    int64_t batch, channels, height, width, patch, dim, prefix;
  };
  uint32_t seed = 6000;
  for (const Case& c : {Case{1, 3, 256, 256, 16, 384, 5}, Case{2, 3, 64, 48, 16, 100, 5}, Case{1, 1, 8, 8, 4, 7, 0}}) {
    const int64_t in = c.channels * c.patch * c.patch;
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    const auto w = test::random_uniform(static_cast<size_t>(c.dim * in), ++seed, -bound, bound);
    const auto bias = test::random_uniform(static_cast<size_t>(c.dim), ++seed, -0.1f, 0.1f);
    const auto prefix = test::random_normal(static_cast<size_t>(std::max<int64_t>(1, c.prefix * c.dim)), ++seed);
    const auto image = test::random_normal(static_cast<size_t>(c.batch * c.channels * c.height * c.width), ++seed);
    const int64_t tokens = c.prefix + (c.height / c.patch) * (c.width / c.patch);
    std::vector<float> results[2];
    Backend* backends[2] = {ref.get(), cpu.get()};
    for (int i = 0; i < 2; ++i) {
      auto pw = linear_weight(*backends[i], w, &bias, c.dim, in);
      auto pv = vector_weight(*backends[i], prefix);
      auto ib = upload(*backends[i], image);
      auto tb = backends[i]->allocate(static_cast<size_t>(c.batch * tokens * c.dim));
      const Status s = backends[i]->embed(*ib, c.batch, c.channels, c.height, c.width, c.patch, *pw, *pv, c.prefix,
                                          c.dim, **tb);
      ASSERT_TRUE(s.ok()) << s.message();
      results[i] = download(*backends[i], **tb);
    }
    EXPECT_LE(test::rel_l2(results[1], results[0]), kGemmTol) << "image " << c.height << "x" << c.width;
  }
}

TEST_P(CpuBackendTest, MeanTokensMatchesReference) {
  CPU_OR_SKIP(cpu);
  auto ref = reference();
  const auto x = test::random_normal(2 * 261 * 384, 7000);
  std::vector<float> results[2];
  Backend* backends[2] = {ref.get(), cpu.get()};
  for (int i = 0; i < 2; ++i) {
    auto xb = upload(*backends[i], x);
    auto ob = backends[i]->allocate(2 * 384);
    ASSERT_TRUE(backends[i]->mean_tokens(*xb, 2, 261, 384, 5, 261, **ob).ok());
    results[i] = download(*backends[i], **ob);
  }
  // Double accumulation on both sides: only the final rounding can differ.
  EXPECT_LE(test::rel_l2(results[1], results[0]), 1e-7);
}

// Every output element is computed by one micro-kernel call over the full K, and tile boundaries do not
// depend on the thread count, so results are bitwise identical for any number of threads.
TEST_P(CpuBackendTest, ThreadCountDoesNotChangeResults) {
  std::vector<float> first_linear, first_attention;
  for (int threads : {1, 2, 3}) {
    CPU_OR_SKIP(cpu, threads);
    ASSERT_EQ(cpu->threads(), threads);
    const LinearCase c{523, 1536, 384};
    const auto w = test::random_uniform(static_cast<size_t>(c.out * c.in), 1, -0.05f, 0.05f);
    const auto x = test::random_normal(static_cast<size_t>(c.rows * c.in), 2);
    auto wt = linear_weight(*cpu, w, nullptr, c.out, c.in);
    auto xb = upload(*cpu, x);
    auto yb = cpu->allocate(static_cast<size_t>(c.rows * c.out));
    LinearEpilogue e;
    e.activation = Activation::kGelu;
    ASSERT_TRUE(cpu->linear(*xb, c.rows, *wt, e, **yb).ok());
    const auto lin = download(*cpu, **yb);
    const AttentionCase a{2, 261, 6, 64, 5};
    const auto att =
        run_attention(*cpu, a, test::random_normal(2 * 261 * 3 * 384, 3), test::random_rope_table(256, 64, 4));
    if (threads == 1) {
      first_linear = lin;
      first_attention = att;
    } else {
      EXPECT_EQ(lin, first_linear) << threads << " threads";
      EXPECT_EQ(att, first_attention) << threads << " threads";
    }
  }
}

TEST_P(CpuBackendTest, EmptyInputsAreNoOps) {
  CPU_OR_SKIP(cpu);
  const std::vector<float> w(64 * 32, 0.01f);
  auto wt = linear_weight(*cpu, w, nullptr, 64, 32);
  auto x = cpu->allocate(1);
  auto y = cpu->allocate(1);
  EXPECT_TRUE(cpu->linear(**x, 0, *wt, {}, **y).ok());
  EXPECT_TRUE(cpu->linear_swiglu(**x, 0, *wt, *wt, **y).ok());
  auto g = vector_weight(*cpu, std::vector<float>(32, 1.0f));
  EXPECT_TRUE(cpu->layer_norm(**x, 0, 32, *g, *g, 1e-6f, **y).ok());
}

TEST_P(CpuBackendTest, RejectsUndersizedBuffers) {
  CPU_OR_SKIP(cpu);
  const std::vector<float> w(64 * 32, 0.01f);
  auto wt = linear_weight(*cpu, w, nullptr, 64, 32);
  auto x = cpu->allocate(10 * 32);
  auto y = cpu->allocate(10 * 64 - 1);
  EXPECT_EQ(cpu->linear(**x, 10, *wt, {}, **y).code(), ErrorCode::kInvalidArgument);
}

// Kernels flush subnormals (FTZ/DAZ) for speed, but the caller's floating-point environment is restored.
TEST_P(CpuBackendTest, LeavesTheCallersFloatingPointEnvironmentAlone) {
  CPU_OR_SKIP(cpu);
  const std::vector<float> w(64 * 32, 0.01f);
  auto wt = linear_weight(*cpu, w, nullptr, 64, 32);
  auto x = upload(*cpu, test::random_normal(100 * 32, 1));
  auto y = cpu->allocate(100 * 64);
  const unsigned before = _mm_getcsr();
  ASSERT_TRUE(cpu->linear(*x, 100, *wt, {}, **y).ok());
  EXPECT_EQ(_mm_getcsr(), before);
}

std::string isa_param_name(const ::testing::TestParamInfo<Isa>& info) { return cpu::isa_name(info.param); }

INSTANTIATE_TEST_SUITE_P(AllIsas, CpuBackendTest, ::testing::Values(Isa::kAvx512, Isa::kAvx2, Isa::kScalar),
                         isa_param_name);

DINOV3_SUITE_LABELS(CpuBackendOptions, "unit");

TEST(CpuBackendOptions, EnvironmentSelectsALowerIsa) {
  ::setenv("DINOV3_CPU_ISA", "scalar", 1);
  auto be = create_cpu_backend({});
  ::unsetenv("DINOV3_CPU_ISA");
  ASSERT_TRUE(be.ok()) << be.status().message();
  EXPECT_NE((*be)->device().find("scalar"), std::string::npos) << (*be)->device();
  EXPECT_EQ((*be)->name(), "cpu");
}

TEST(CpuBackendOptions, EnvironmentRejectsUnknownIsa) {
  ::setenv("DINOV3_CPU_ISA", "avx1024", 1);
  auto be = create_cpu_backend({});
  ::unsetenv("DINOV3_CPU_ISA");
  EXPECT_EQ(be.status().code(), ErrorCode::kInvalidArgument);
}

DINOV3_SUITE_LABELS(CpuAttention, "unit");

// Attention at 1024 px (4101 tokens, ViT-S heads) keeps per thread a few [tokens, head_dim] buffers and one
// [14, <= 512] score tile: no [tokens, tokens] score matrix (16.8M floats per head) exists anywhere.
TEST(CpuAttention, ScratchHoldsNoTokensByTokensScores) {
  const cpu::AttentionShape sh{1, 4101, 6, 64, 5};
  const double scores = static_cast<double>(sh.tokens) * static_cast<double>(sh.tokens);
  for (int threads : {1, 2, 16}) {
    const double fp32 = static_cast<double>(cpu::attention_scratch_floats(cpu::cpu_kernels_scalar(), sh, threads));
    EXPECT_LT(fp32, 8.0 * sh.tokens * sh.head_dim) << threads << " threads";
    EXPECT_LT(fp32, scores / 8) << threads << " threads";
    const auto& lowp = cpu::lowp::select_lowp_kernels(cpu::Isa::kScalar, false, false);
    const double bf16 = static_cast<double>(cpu::lowp::attention_bf16_scratch_floats(lowp, sh, threads));
    EXPECT_LT(bf16, 8.0 * sh.tokens * sh.head_dim) << threads << " threads";
  }
}

TEST(CpuBackendOptions, DefaultsToOneThreadPerCoreAndReportsIt) {
  auto be = create_cpu_backend({});
  ASSERT_TRUE(be.ok());
  EXPECT_GE((*be)->threads(), 1);
  EXPECT_NE((*be)->device().find(std::to_string((*be)->threads()) + " thread"), std::string::npos)
      << (*be)->device();
}

DINOV3_SUITE_LABELS(CpuAttention, "unit");

DINOV3_SUITE_LABELS(WeightArena, "unit");

// Blocks come zeroed and 64-byte aligned, one after another without overlapping; a chunk starts on a
// 2 MiB boundary, a block larger than a chunk gets a chunk of its own, and every block stays valid after
// the arena that handed it out is gone (as a backend's weights may outlive the backend). Blocks without an
// arena (allocate_weight_bytes(nullptr, n)) are zeroed and aligned too. Sizes that would wrap around when
// rounded up are refused with std::bad_alloc.
TEST(WeightArena, BlocksAreAlignedZeroedDisjointAndOutliveTheArena) {
  using cpu::WeightArena;
  const std::vector<size_t> sizes = {
      0,   1, 63, 64, 65, 1000, size_t{3} << 20, 100, WeightArena::kChunkBytes + 5, 7, WeightArena::kChunkBytes - 4096,
      4096};
  std::vector<std::shared_ptr<uint8_t>> blocks;
  {
    WeightArena arena;
    for (size_t n : sizes) {
      blocks.push_back(arena.allocate(n));
      // A size no rounding can hold is refused before anything is allocated, and the arena goes on.
      EXPECT_THROW(arena.allocate(SIZE_MAX), std::bad_alloc);
    }
  }
  EXPECT_THROW(cpu::allocate_weight_bytes(nullptr, SIZE_MAX - 1), std::bad_alloc);
  blocks.push_back(cpu::allocate_weight_bytes(nullptr, 777));
  std::vector<size_t> all = sizes;
  all.push_back(777);
  auto address = [](const std::shared_ptr<uint8_t>& b) { return reinterpret_cast<uintptr_t>(b.get()); };
  EXPECT_EQ(address(blocks[0]) % WeightArena::kPageBytes, 0u) << "the first chunk starts on a huge page";
  EXPECT_EQ(address(blocks[8]) % WeightArena::kPageBytes, 0u) << "a block larger than a chunk starts its own";
  for (size_t i = 0; i < blocks.size(); ++i) {
    ASSERT_NE(blocks[i], nullptr);
    EXPECT_EQ(address(blocks[i]) % 64, 0u) << "block " << i;
    const size_t n = std::max<size_t>(all[i], 1);
    size_t nonzero = 0;
    for (size_t j = 0; j < n; ++j) nonzero += blocks[i].get()[j] != 0;
    EXPECT_EQ(nonzero, 0u) << "block " << i;
    std::fill(blocks[i].get(), blocks[i].get() + n, static_cast<uint8_t>(i + 1));
  }
  for (size_t i = 0; i < blocks.size(); ++i) {  // no block wrote over another
    const size_t n = std::max<size_t>(all[i], 1);
    size_t other = 0;
    for (size_t j = 0; j < n; ++j) other += blocks[i].get()[j] != static_cast<uint8_t>(i + 1);
    EXPECT_EQ(other, 0u) << "block " << i;
  }
}

}  // namespace
}  // namespace dinov3
