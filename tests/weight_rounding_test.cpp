// GPTQ rounding of int8 weights (pipeline/weight_rounding.h) and the cpu backend running given int8 values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "dinov3/backend.h"
#include "pipeline/weight_rounding.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

DINOV3_SUITE_LABELS(Gptq, "unit");
DINOV3_SUITE_LABELS(Int8Values, "unit");

// rows x in inputs concentrated in a few directions, as transformer activations are: x = z A + noise, z of
// `rank` values; A from `directions`, z and the noise from `seed`.
std::vector<float> correlated_rows(int64_t rows, int64_t in, int64_t rank, uint32_t directions, uint32_t seed) {
  const std::vector<float> a = test::random_normal(static_cast<size_t>(rank * in), directions);
  const std::vector<float> z = test::random_normal(static_cast<size_t>(rows * rank), seed);
  const std::vector<float> noise = test::random_normal(static_cast<size_t>(rows * in), seed + 1, 0.0f, 0.05f);
  std::vector<float> x(static_cast<size_t>(rows * in));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < in; ++k) {
      double s = noise[static_cast<size_t>(r * in + k)];
      for (int64_t j = 0; j < rank; ++j) s += z[static_cast<size_t>(r * rank + j)] * a[static_cast<size_t>(j * in + k)];
      x[static_cast<size_t>(r * in + k)] = static_cast<float>(s);
    }
  }
  return x;
}

std::vector<double> gram(const std::vector<float>& x, int64_t rows, int64_t in) {
  std::vector<double> h(static_cast<size_t>(in * in), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t j = 0; j < in; ++j) h[static_cast<size_t>(i * in + j)] += double(x[r * in + i]) * x[r * in + j];
  return h;
}

// ||x (w - scale q)^T|| / ||x w^T||
double output_error(const std::vector<float>& x, int64_t rows, const std::vector<float>& w, const Int8Rounding& r,
                    int64_t out, int64_t in) {
  double err = 0, ref = 0;
  for (int64_t row = 0; row < rows; ++row) {
    for (int64_t n = 0; n < out; ++n) {
      double y = 0, yq = 0;
      for (int64_t k = 0; k < in; ++k) {
        y += double(x[row * in + k]) * w[n * in + k];
        yq += double(x[row * in + k]) * r.scale[n] * r.q[n * in + k];
      }
      err += (y - yq) * (y - yq);
      ref += y * y;
    }
  }
  return std::sqrt(err / ref);
}

TEST(Gptq, WithoutCorrelationsItIsNearestRounding) {
  const int64_t out = 24, in = 40;
  const std::vector<float> w = test::random_normal(out * in, 1);
  std::vector<double> h(in * in, 0.0);
  for (int64_t k = 0; k < in; ++k) h[k * in + k] = 3.5;
  const Int8Rounding g = round_int8_gptq(h, w.data(), out, in), n = round_int8_nearest(w.data(), out, in);
  EXPECT_EQ(g.q, n.q);
  EXPECT_EQ(g.scale, n.scale);
  for (int64_t c = 0; c < out; ++c) {
    double m = 0;
    for (int64_t k = 0; k < in; ++k) m = std::max(m, std::fabs(double(w[c * in + k])));
    EXPECT_FLOAT_EQ(n.scale[c], static_cast<float>(m / 127.0));
  }
}

TEST(Gptq, LowersTheErrorOnInputsItHasNotSeen) {
  const int64_t out = 48, in = 64, rows = 400, rank = 6;
  const std::vector<float> w = test::random_normal(out * in, 7);
  const std::vector<float> seen = correlated_rows(rows, in, rank, 11, 12);
  std::vector<double> h = gram(seen, rows, in);
  const Int8Rounding g = round_int8_gptq(h, w.data(), out, in), n = round_int8_nearest(w.data(), out, in);
  for (const int8_t q : g.q) {
    EXPECT_GE(q, -127);
    EXPECT_LE(q, 127);
  }
  EXPECT_EQ(g.scale, n.scale);  // the same grid
  const double e_seen_g = output_error(seen, rows, w, g, out, in), e_seen_n = output_error(seen, rows, w, n, out, in);
  EXPECT_LT(e_seen_g, 0.5 * e_seen_n) << e_seen_g << " vs nearest " << e_seen_n;
  // Rows it has not seen, from the same directions: the gain holds on them too.
  const std::vector<float> fresh = correlated_rows(rows, in, rank, 11, 101);
  EXPECT_LT(output_error(fresh, rows, w, g, out, in), 0.5 * output_error(fresh, rows, w, n, out, in))
      << output_error(fresh, rows, w, g, out, in) << " vs nearest " << output_error(fresh, rows, w, n, out, in);
}

TEST(Gptq, FallsBackToNearestWhereTheInputsSayNothing) {
  const int64_t out = 8, in = 16;
  const std::vector<float> w = test::random_normal(out * in, 3);
  const Int8Rounding nearest = round_int8_nearest(w.data(), out, in);
  std::vector<double> zero(in * in, 0.0), nan(in * in, std::numeric_limits<double>::quiet_NaN()), wrong(5, 1.0);
  EXPECT_EQ(round_int8_gptq(zero, w.data(), out, in).q, nearest.q);
  EXPECT_EQ(round_int8_gptq(nan, w.data(), out, in).q, nearest.q);
  EXPECT_EQ(round_int8_gptq(wrong, w.data(), out, in).q, nearest.q);
  // A channel of zeros keeps scale 0 and q 0.
  std::vector<float> with_zero = w;
  for (int64_t k = 0; k < in; ++k) with_zero[k] = 0.0f;
  std::vector<double> h = gram(correlated_rows(64, in, 3, 5, 6), 64, in);
  const Int8Rounding g = round_int8_gptq(h, with_zero.data(), out, in);
  EXPECT_EQ(g.scale[0], 0.0f);
  for (int64_t k = 0; k < in; ++k) EXPECT_EQ(g.q[k], 0);
}

// The cpu backend's int8 linear with int8 values given runs exactly those values: the same bits as its own
// rounding when the values are what it would have chosen, different ones when they are not.
TEST(Int8Values, TheCpuBackendRunsTheGivenValues) {
  const int64_t out = 40, in = 72, rows = 19;
  const std::vector<float> w = test::random_normal(out * in, 17), x = test::random_normal(rows * in, 19);
  Int8Rounding values = round_int8_nearest(w.data(), out, in);
  // The weights exactly on that grid, so the backend's own rounding gives the same values.
  std::vector<float> on_grid(w.size());
  for (int64_t n = 0; n < out; ++n)
    for (int64_t k = 0; k < in; ++k) on_grid[n * in + k] = values.scale[n] * values.q[n * in + k];

  auto run = [&](const Int8Rounding* given, std::vector<float>* y) -> Status {
    BackendOptions o;
    o.precision = Precision::kInt8;
    o.threads = 1;
    if (given != nullptr) {
      o.int8_linear_values = [given, out, in](int64_t n) {
        return n == 0 ? Int8LinearValues{given->q.data(), given->scale.data(), out, in} : Int8LinearValues{};
      };
    }
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Backend> b, create_backend("cpu", o));
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<Weight> weight, b->prepare_linear(on_grid.data(), nullptr, out, in));
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> xb, b->allocate(x.size()));
    DINOV3_ASSIGN_OR_RETURN(std::unique_ptr<DeviceBuffer> yb, b->allocate(static_cast<size_t>(rows * out)));
    DINOV3_RETURN_IF_ERROR(b->upload(*xb, 0, x.data(), x.size()));
    DINOV3_RETURN_IF_ERROR(b->linear(*xb, rows, *weight, {}, *yb));
    y->resize(static_cast<size_t>(rows * out));
    return b->download(*yb, 0, y->data(), y->size());
  };
  std::vector<float> own, given, changed;
  ASSERT_TRUE(run(nullptr, &own).ok());
  ASSERT_TRUE(run(&values, &given).ok());
  EXPECT_EQ(own, given);
  // One value moved by one step changes the outputs of that channel only.
  values.q[5 * in + 3] = static_cast<int8_t>(values.q[5 * in + 3] > 0 ? values.q[5 * in + 3] - 1 : values.q[5 * in + 3] + 1);
  ASSERT_TRUE(run(&values, &changed).ok());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t n = 0; n < out; ++n) {
      if (n == 5) {
        EXPECT_NE(changed[r * out + n], given[r * out + n]) << r;
      } else {
        EXPECT_EQ(changed[r * out + n], given[r * out + n]) << r << ", " << n;
      }
    }
  }
  // Values of another shape are refused, not read past their end.
  Int8Rounding small = round_int8_nearest(w.data(), out - 1, in);
  BackendOptions o;
  o.precision = Precision::kInt8;
  o.int8_linear_values = [&small, out, in](int64_t) {
    return Int8LinearValues{small.q.data(), small.scale.data(), out - 1, in};
  };
  Result<std::unique_ptr<Backend>> b = create_backend("cpu", o);
  ASSERT_TRUE(b.ok());
  Result<std::unique_ptr<Weight>> bad = (*b)->prepare_linear(w.data(), nullptr, out, in);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("int8 values [39, 72]"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace dinov3
