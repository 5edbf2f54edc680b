// The library's numbers do not depend on the floating-point environment of the program it runs in
// (util/float_env.h): another rounding mode, subnormals flushed (what a library built with -ffast-math sets
// for the whole process) or exceptions unmasked give the same bits as the default environment, without a
// trap, and the caller's environment is given back.
#include <cfenv>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <xmmintrin.h>

#include "dinov3/analysis.h"
#include "dinov3/int8_plan.h"
#include "dinov3/metrics.h"
#include "dinov3/model.h"
#include "dinov3/pipeline.h"
#include "test_labels.h"
#include "test_util.h"
#include "util/float_env.h"

namespace dinov3 {
namespace {

DINOV3_SUITE_LABELS(FloatEnv, "golden", "slow");  // ~2 minutes under the sanitizers

const std::string kTiny = test::fixture("models/tiny");
const std::string kSwiglu = test::fixture("models/tiny_swiglu_qkvb");
const std::vector<std::string> kPhotos = {test::fixture("images/rocket.jpg"), test::fixture("images/chelsea.png")};

std::vector<float> values(const Tensor& t) { return {t.ptr(), t.ptr() + t.numel()}; }
void append(std::vector<float>& all, const std::vector<float>& v) { all.insert(all.end(), v.begin(), v.end()); }
// A double's bits as two floats' (a conversion here would round in the caller's mode).
void append_double(std::vector<float>& all, double d) {
  float halves[2];
  std::memcpy(halves, &d, sizeof(d));
  all.insert(all.end(), halves, halves + 2);
}

// Everything the library computes on the way from photo files to features, a PCA and an int8 plan, as one
// list of floats (compared bit for bit). Failures are recorded and leave the list short.
std::vector<float> compute_everything() {
  std::vector<float> all;
  for (const std::string& path : {kTiny, kSwiglu}) {
    Result<std::unique_ptr<Model>> f32 = Model::load(path);
    if (!f32.ok()) {
      ADD_FAILURE() << f32.status().message();
      return all;
    }
    Result<PreprocessConfig> pc = preprocess_config_for((*f32)->config());
    Result<Tensor> pixels = pc.ok() ? load_image_batch(kPhotos, *pc) : Result<Tensor>(pc.status());
    if (!pixels.ok()) {
      ADD_FAILURE() << pixels.status().message();
      return all;
    }
    append(all, values(*pixels));
    Tensor baseline;  // the first forward's features (cpu, float32)
    const std::vector<std::pair<std::string, Precision>> runs = {
        {"cpu", Precision::kF32}, {"cpu", Precision::kBF16}, {"cpu", Precision::kInt8}, {"reference", Precision::kF32}};
    for (const auto& [backend, precision] : runs) {
      LoadOptions lo;
      lo.backend = backend;
      lo.backend_options.precision = precision;
      lo.backend_options.threads = 2;
      Result<std::unique_ptr<Model>> m = Model::load(path, lo);
      Result<ForwardOutput> out = m.ok() ? (*m)->forward(*pixels) : Result<ForwardOutput>(m.status());
      if (!out.ok()) {
        ADD_FAILURE() << backend << " " << precision_name(precision) << ": " << out.status().message();
        return all;
      }
      append(all, values(out->features));
      append(all, values(out->pooled));
      if (baseline.numel() == 0) baseline = out->features;
      // The accuracy tool's metrics against float32.
      const size_t images = static_cast<size_t>(out->features.shape[0]);
      const BatchAgreement a = compare_images(out->features.ptr(), baseline.ptr(), images, out->features.numel() / images);
      for (const double d : {a.worst.rel_error, a.worst.cosine, a.worst.mse}) append_double(all, d);
    }
    // Dense features at another size (preprocessing's geometry), their PCA and a similarity map.
    Result<DenseFeatures> dense = compute_dense_features(**f32, kPhotos[1], InputSize{0, 80});
    if (!dense.ok()) {
      ADD_FAILURE() << dense.status().message();
      return all;
    }
    append(all, values(dense->patches));
    Result<PatchPca> pca = fit_patch_pca({&dense->patches});
    Result<std::vector<float>> similarity = patch_similarity(dense->patches.ptr(), dense->dim(), *dense);
    if (!pca.ok() || !similarity.ok()) {
      ADD_FAILURE() << "pca or similarity failed";
      return all;
    }
    append(all, pca->components);
    append(all, *similarity);
    // An int8 plan, GPTQ-rounded: its measurements and its int8 weights.
    CalibrationOptions co;
    co.threads = 2;
    Result<Int8Plan> plan = calibrate_int8(path, *pixels, co);
    if (!plan.ok()) {
      ADD_FAILURE() << plan.status().message();
      return all;
    }
    append_double(all, plan->measured_error);
    for (const Int8PlanLayer& l : plan->layers) {
      append(all, l.scale);
      for (int8_t q : l.q) all.push_back(q);
    }
  }
  return all;
}

struct Environment {
  const char* name;
  int rounding;
  unsigned csr_bits;  // MXCSR bits set on top (FTZ/DAZ)
  int traps;          // feenableexcept
};

TEST(FloatEnv, NumbersDoNotDependOnTheCallersEnvironment) {
  ASSERT_TRUE(float_env_is_default());
  const std::vector<float> want = compute_everything();
  ASSERT_FALSE(HasFailure());
  for (const Environment& env : {Environment{"upward", FE_UPWARD, 0, 0}, Environment{"downward", FE_DOWNWARD, 0, 0},
                                 Environment{"toward zero", FE_TOWARDZERO, 0, 0},
                                 Environment{"FTZ and DAZ", FE_TONEAREST, kMxcsrFlushDenormals, 0},
                                 Environment{"traps", FE_TONEAREST, 0, FE_INVALID | FE_DIVBYZERO | FE_OVERFLOW}}) {
    SCOPED_TRACE(env.name);
    std::vector<float> got;
    unsigned csr_after = 0;
    int rounding_after = 0, traps_after = 0;
    {
      ASSERT_EQ(std::fesetround(env.rounding), 0);
      const unsigned csr = _mm_getcsr() | env.csr_bits;
      _mm_setcsr(csr);
      if (env.traps != 0) feenableexcept(env.traps);
      const unsigned csr_set = _mm_getcsr() & ~0x3Fu;  // less the exception flags
      got = compute_everything();
      csr_after = _mm_getcsr() & ~0x3Fu;
      rounding_after = std::fegetround();
      traps_after = fegetexcept();
      fedisableexcept(FE_ALL_EXCEPT);
      std::fesetround(FE_TONEAREST);
      _mm_setcsr(_mm_getcsr() & ~kMxcsrFlushDenormals);
      EXPECT_EQ(csr_after, csr_set) << "the caller's MXCSR was not given back";
    }
    EXPECT_EQ(rounding_after, env.rounding);
    EXPECT_EQ(traps_after, env.traps);
    ASSERT_TRUE(float_env_is_default());
    ASSERT_EQ(got.size(), want.size());
    size_t differ = 0;
    for (size_t i = 0; i < want.size(); ++i) differ += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
    EXPECT_EQ(differ, 0u) << "of " << want.size() << " values";
  }
}

}  // namespace
}  // namespace dinov3
