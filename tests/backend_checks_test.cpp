// Backend objects are checked, not trusted: a buffer or weight from another backend object, or prepared
// for another precision, is a clear error on every backend; the reference backend checks what the cpu
// backend checks. Also what the reports say about the machine.
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "dinov3/backend.h"
#include "test_labels.h"
#include "test_util.h"
#include "util/cpu_info.h"

namespace dinov3 {
namespace {

std::unique_ptr<Backend> make(const std::string& name, Precision precision = Precision::kF32) {
  BackendOptions options;
  options.threads = 1;
  options.precision = precision;
  Result<std::unique_ptr<Backend>> be = create_backend(name, options);
  EXPECT_TRUE(be.ok()) << be.status().message();
  return be.ok() ? std::move(be).value() : nullptr;
}

std::unique_ptr<DeviceBuffer> buffer(Backend& be, size_t n) {
  Result<std::unique_ptr<DeviceBuffer>> b = be.allocate(n);
  EXPECT_TRUE(b.ok());
  return b.ok() ? std::move(b).value() : nullptr;
}

std::unique_ptr<Weight> linear(Backend& be, int64_t out, int64_t in) {
  const std::vector<float> w = test::random_normal(static_cast<size_t>(out * in), 1);
  Result<std::unique_ptr<Weight>> r = be.prepare_linear(w.data(), nullptr, out, in);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : nullptr;
}

std::unique_ptr<Weight> vector(Backend& be, int64_t n) {
  const std::vector<float> v(static_cast<size_t>(n), 1.0f);
  Result<std::unique_ptr<Weight>> r = be.prepare_vector(v.data(), n);
  EXPECT_TRUE(r.ok());
  return r.ok() ? std::move(r).value() : nullptr;
}

void expect_refused(const Status& st, const std::string& fragment) {
  EXPECT_EQ(st.code(), ErrorCode::kInvalidArgument) << st.message();
  EXPECT_NE(st.message().find(fragment), std::string::npos) << st.message();
}

class BackendChecks : public testing::TestWithParam<const char*> {};

DINOV3_SUITE_LABELS(BackendChecks, "unit");

TEST_P(BackendChecks, ForeignBuffersAndWeightsAreRefused) {
  auto be = make(GetParam());
  auto other_same_kind = make(GetParam());
  auto other_kind = make(std::string(GetParam()) == "cpu" ? "reference" : "cpu");
  ASSERT_TRUE(be && other_same_kind && other_kind);
  const int64_t rows = 3, in = 8, out = 16;
  auto x = buffer(*be, rows * in), y = buffer(*be, rows * out);
  auto w = linear(*be, out, in);
  ASSERT_TRUE(x && y && w);
  ASSERT_TRUE(be->linear(*x, rows, *w, {}, *y).ok());

  for (Backend* foreign : {other_same_kind.get(), other_kind.get()}) {
    SCOPED_TRACE(foreign->name());
    auto fx = buffer(*foreign, rows * in);
    auto fw = linear(*foreign, out, in);
    auto fv = vector(*foreign, out);
    expect_refused(be->linear(*fx, rows, *w, {}, *y), "linear: buffer 'x' belongs to another backend");
    expect_refused(be->linear(*x, rows, *fw, {}, *y), "linear: weight 'w' was prepared by another backend");
    expect_refused(be->linear(*x, rows, *w, {Activation::kNone, fv.get()}, *y),
                   "weight 'residual scale' was prepared by another backend");
    std::vector<float> host(rows * in);
    expect_refused(be->upload(*fx, 0, host.data(), host.size()), "upload: buffer 'destination' belongs to another backend");
    expect_refused(be->download(*fx, 0, host.data(), host.size()), "download: buffer 'source' belongs to another backend");
  }
  // A vector where a linear layer belongs, and the other way round.
  auto v = vector(*be, out);
  expect_refused(be->linear(*x, rows, *v, {}, *y), "weight 'w' is not a linear layer");
  expect_refused(be->layer_norm(*x, rows, in, *w, *w, 1e-5f, *x), "weight 'gamma' is not a vector");
  // Buffers too small, sizes that overflow, aliasing the kernels do not allow.
  expect_refused(be->linear(*x, rows + 1, *w, {}, *y), "buffer 'x' holds 24 values, the op needs 32");
  expect_refused(be->linear(*x, INT64_MAX / 4, *w, {}, *y), "negative or overflowing size");
  expect_refused(be->linear(*x, 1, *linear(*be, in, in), {}, *x), "x and y must be different buffers");
  // The fused residual layer + LayerNorm runs both ops' checks, and writes z while x and y are in use.
  auto scale = vector(*be, out);
  auto z = buffer(*be, rows * out);
  expect_refused(be->linear_residual_layer_norm(*x, rows, *w, *scale, *y, *scale, *scale, 1e-5f, *y),
                 "linear_residual_layer_norm: z and y must be different buffers");
  auto wide_x = buffer(*be, rows * out);  // room for z's rows too
  expect_refused(be->linear_residual_layer_norm(*wide_x, rows, *w, *scale, *y, *scale, *scale, 1e-5f, *wide_x),
                 "linear_residual_layer_norm: z and x (w not square) must be different buffers");
  auto square = linear(*be, in, in);
  auto y_in = buffer(*be, rows * in);
  auto in_scale = vector(*be, in);
  EXPECT_TRUE(be->linear_residual_layer_norm(*x, rows, *square, *in_scale, *y_in, *in_scale, *in_scale, 1e-5f, *x).ok());
  expect_refused(be->linear_residual_layer_norm(*x, rows, *w, *scale, *y, *w, *scale, 1e-5f, *z),
                 "weight 'gamma' is not a vector");
  expect_refused(be->linear_residual_layer_norm(*x, rows, *w, *v, *y, *scale, *scale, 1e-5f, *buffer(*be, 1)),
                 "buffer 'y' holds 1 values");
  ASSERT_TRUE(be->linear_residual_layer_norm(*x, rows, *w, *scale, *y, *scale, *scale, 1e-5f, *z).ok());
  std::vector<float> host(4);
  expect_refused(be->upload(*x, SIZE_MAX - 1, host.data(), 4), "range overflows");
}

TEST_P(BackendChecks, AnAllocationTooLargeToExistIsOutOfMemory) {
  // (2^62 + 1) floats: the cpu backend's byte count wrapped to 4 and the buffer claimed 2^62 + 1 floats, so
  // an upload wrote past it; the reference backend's std::vector threw std::length_error, uncaught.
  auto be = make(GetParam());
  ASSERT_TRUE(be);
  for (const size_t n : {(size_t{1} << 62) + 1, SIZE_MAX}) {
    Result<std::unique_ptr<DeviceBuffer>> b = be->allocate(n);
    ASSERT_FALSE(b.ok()) << n;
    EXPECT_EQ(b.status().code(), ErrorCode::kOutOfMemory) << b.status().message();
  }
}

TEST_P(BackendChecks, EmbedChecksThePatchWeight) {
  // The reference backend used to index a patch weight of any shape.
  auto be = make(GetParam());
  ASSERT_TRUE(be);
  const int64_t dim = 8, patch = 4, channels = 3, prefix = 2;
  auto image = buffer(*be, channels * 8 * 8), tokens = buffer(*be, (prefix + 4) * dim);
  auto good = linear(*be, dim, channels * patch * patch), wrong = linear(*be, dim, channels * patch * patch - 1);
  auto pre = vector(*be, prefix * dim);
  ASSERT_TRUE(be->embed(*image, 1, channels, 8, 8, patch, *good, *pre, prefix, dim, *tokens).ok());
  expect_refused(be->embed(*image, 1, channels, 8, 8, patch, *wrong, *pre, prefix, dim, *tokens),
                 "embed: the patch weight is [8, 47], the patch shape needs [8, 48]");
  expect_refused(be->embed(*image, 1, channels, 8, 8, patch, *good, *vector(*be, dim), prefix, dim, *tokens),
                 "vector 'prefix' has 8 values, the op needs 16");
  expect_refused(be->embed(*image, 1, channels, 8, 6, patch, *good, *pre, prefix, dim, *tokens),
                 "not a multiple of the patch size");
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendChecks, testing::Values("cpu", "reference"));

DINOV3_SUITE_LABELS(BackendPrecision, "unit");

TEST(BackendPrecision, AWeightPreparedForAnotherPrecisionIsRefused) {
  auto fp32 = make("cpu", Precision::kF32);
  auto bf16 = make("cpu", Precision::kBF16);
  auto int8 = make("cpu", Precision::kInt8);
  ASSERT_TRUE(fp32 && bf16 && int8);
  auto x = buffer(*bf16, 2 * 32), y = buffer(*bf16, 2 * 32);
  ASSERT_TRUE(bf16->linear(*x, 2, *linear(*bf16, 32, 32), {}, *y).ok());
  // Each holds a differently packed layout (float32 panels, bf16 pairs, int8 quads).
  expect_refused(bf16->linear(*x, 2, *linear(*fp32, 32, 32), {}, *y), "weight 'w' was prepared for fp32, this backend runs bf16");
  expect_refused(bf16->linear(*x, 2, *linear(*int8, 32, 32), {}, *y), "weight 'w' was prepared for int8, this backend runs bf16");
  expect_refused(bf16->linear_swiglu(*x, 2, *linear(*bf16, 32, 32), *linear(*int8, 32, 32), *y),
                 "weight 'up' was prepared for int8");
}

DINOV3_SUITE_LABELS(MachineReport, "unit");

TEST(MachineReport, CpuBrandIsTidied) {
  // cpuid pads the brand field; this machine's reads "Oxide Virtual Turin-like Processor" and 13 spaces.
  EXPECT_EQ(tidy_cpu_brand("Oxide Virtual Turin-like Processor             "), "Oxide Virtual Turin-like Processor");
  EXPECT_EQ(tidy_cpu_brand("   Intel(R) Xeon(R)  CPU   E5-2680 0 @ 2.70GHz  "), "Intel(R) Xeon(R) CPU E5-2680 0 @ 2.70GHz");
  EXPECT_EQ(tidy_cpu_brand(std::string_view("AMD EPYC\0garbage", 16)), "AMD EPYC");
  const std::string brand = cpu_brand_string();
  EXPECT_FALSE(brand.empty());
  EXPECT_NE(brand.front(), ' ');
  EXPECT_NE(brand.back(), ' ');
  EXPECT_EQ(brand.find("  "), std::string::npos) << brand;
}

BackendOptions one_thread(Precision precision) {
  BackendOptions o;
  o.threads = 1;
  o.precision = precision;
  return o;
}

TEST(MachineReport, LowPrecisionFallbacksAreReportedOnce) {
  // Below AVX-512 the bf16 and int8 linears run on the AVX2 tiles (their products at float32's rate), and
  // below AVX2 on the portable 4x32 tile; the backend says which, once, and only then. (DINOV3_CPU_ISA=avx2
  // makes the first true here whatever the machine.)
  struct Case {
    cpu::Isa isa;
    Precision precision;
    const char* note;
  };
  for (const Case& c : {Case{cpu::Isa::kAvx2, Precision::kBF16, "bf16 runs on an AVX2 emulation of AVX512_BF16"},
                        Case{cpu::Isa::kAvx2, Precision::kInt8, "int8 runs on an AVX2 tile"},
                        Case{cpu::Isa::kScalar, Precision::kBF16, "bf16 runs on the portable 4x32 scalar tile"},
                        Case{cpu::Isa::kScalar, Precision::kInt8, "int8 runs on the portable 4x32 scalar tile"}}) {
    Result<std::unique_ptr<Backend>> be = create_cpu_backend_for_isa(one_thread(c.precision), c.isa);
    if (!be.ok()) GTEST_SKIP() << "this machine cannot run " << cpu::isa_name(c.isa) << ": " << be.status().message();
    ASSERT_EQ((*be)->notes().size(), 1u) << cpu::isa_name(c.isa);
    EXPECT_NE((*be)->notes()[0].find(c.note), std::string::npos) << (*be)->notes()[0];
    EXPECT_TRUE((*create_cpu_backend_for_isa(one_thread(Precision::kF32), c.isa))->notes().empty());
  }

  test::TempDir tmp;
  const test::CommandResult r = test::run_command(
      "DINOV3_CPU_ISA=avx2 " + test::cli_path() + " infer --precision bf16 --threads 1 --model " +
      test::fixture("models/tiny") + " --image " + test::fixture("images/moon_gray.jpg") + " --output-dir " + tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  size_t count = 0;
  for (size_t at = r.out.find("note:"); at != std::string::npos; at = r.out.find("note:", at + 1)) ++count;
  EXPECT_EQ(count, 1u) << r.out;
  EXPECT_NE(test::read_file(tmp.file("infer.json")).find("AVX2 emulation of AVX512_BF16"), std::string::npos);
}

}  // namespace
}  // namespace dinov3
