// LoadOptions::op_profile: the profiled model computes exactly what the plain one does, on every backend,
// and its stats account for every op of a forward: calls per op, the model's own forward_flops, time.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <thread>

#include "dinov3/model.h"
#include "dinov3/op_profile.h"
#include "dinov3/tensor_file.h"
#include "test_labels.h"
#include "test_util.h"

namespace dinov3 {
namespace {

DINOV3_SUITE_LABELS(OpProfile, "unit");

struct Case {
  const char* model;
  const char* backend;
  Precision precision;
};

Result<std::unique_ptr<Model>> load(const Case& c, std::shared_ptr<OpProfile> profile) {
  LoadOptions lo;
  lo.backend = c.backend;
  lo.backend_options.precision = c.precision;
  lo.backend_options.threads = 2;
  lo.op_profile = std::move(profile);
  return Model::load(test::fixture(std::string("models/") + c.model), lo);
}

std::map<std::string, OpStat> by_op(const std::vector<OpStat>& stats) {
  std::map<std::string, OpStat> m;
  for (const OpStat& s : stats) {
    EXPECT_EQ(m.count(s.op), 0u) << "one entry per op and shape: " << s.op;
    m[s.op] = s;
  }
  return m;
}

TEST(OpProfile, SameNumbersAndEveryOpCounted) {
  // tiny: GELU MLP; tiny_swiglu_qkvb: SwiGLU (linear_swiglu). Reference and cpu backends, fp32 and bf16.
  for (const Case c : {Case{"tiny", "reference", Precision::kF32}, Case{"tiny", "cpu", Precision::kBF16},
                       Case{"tiny_swiglu_qkvb", "cpu", Precision::kF32}}) {
    SCOPED_TRACE(std::string(c.model) + " on " + c.backend + " " + precision_name(c.precision));
    auto profile = std::make_shared<OpProfile>();
    Result<std::unique_ptr<Model>> plain = load(c, nullptr), profiled = load(c, profile);
    ASSERT_TRUE(plain.ok()) << plain.status().message();
    ASSERT_TRUE(profiled.ok()) << profiled.status().message();
    Model& m = **profiled;
    // The wrapper reports its backend as the wrapped one does.
    EXPECT_EQ(m.backend().precision(), (*plain)->backend().precision());
    EXPECT_EQ(m.backend().threads(), (*plain)->backend().threads());
    EXPECT_EQ(m.backend().name(), c.backend);

    const Tensor input =
        *open_safetensors(test::fixture(std::string("models/") + c.model + "/expected.safetensors"))->load_f32("input");
    const int64_t batch = input.shape[0], h = input.shape[2], w = input.shape[3];
    Result<ForwardOutput> a = m.forward(input), b = (*plain)->forward(input);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->features.data, b->features.data);
    EXPECT_EQ(a->pooled.data, b->pooled.data);

    // A forward at a shape seen before (the first one also uploads its RoPE table).
    profile->reset();
    ASSERT_TRUE(m.forward(input).ok());
    const ModelConfig& cfg = m.config();
    const std::map<std::string, OpStat> ops = by_op(profile->stats());
    double flops = 0;
    int64_t linear_calls = 0;
    for (const auto& [name, s] : ops) {
      EXPECT_GT(s.calls, 0) << name;
      EXPECT_GE(s.seconds, 0.0) << name;
      flops += s.flops;
      if (name.rfind("linear", 0) == 0) linear_calls += s.calls;
    }
    // The arithmetic of one forward, as the model itself counts it.
    EXPECT_NEAR(flops, static_cast<double>(batch) * forward_flops(cfg, h, w), 1e-9 * flops);
    const std::string attention = "attention " + std::to_string(cfg.num_heads) + "x" +
                                  std::to_string(cfg.head_dim()) + " " +
                                  std::to_string(cfg.tokens_for(h, w)) + " tokens";
    ASSERT_EQ(ops.count(attention), 1u) << attention;
    EXPECT_EQ(ops.at(attention).calls, cfg.depth);
    // qkv, proj, MLP in (one call, SwiGLU or not), MLP out per block.
    EXPECT_EQ(linear_calls, 4 * cfg.depth);
    ASSERT_EQ(ops.count("upload"), 1u);
    EXPECT_EQ(ops.at("upload").calls, 1);  // the images
    ASSERT_EQ(ops.count("download"), 1u);
    EXPECT_EQ(ops.at("download").calls, 2);  // features, pooled

    // Another forward doubles every count; reset empties the profile.
    const std::map<std::string, OpStat> once = ops;
    ASSERT_TRUE(m.forward(input).ok());
    for (const auto& [name, s] : by_op(profile->stats())) EXPECT_EQ(s.calls, 2 * once.at(name).calls) << name;
    profile->reset();
    EXPECT_TRUE(profile->stats().empty());
  }
}

TEST(OpProfile, FailedOpsAreNotCounted) {
  auto profile = std::make_shared<OpProfile>();
  Result<std::unique_ptr<Model>> m = load({"tiny", "cpu", Precision::kF32}, profile);
  ASSERT_TRUE(m.ok());
  profile->reset();
  Tensor bad({1, 3, 17, 17});  // not a multiple of the patch size: refused before any op
  EXPECT_FALSE((*m)->forward(bad).ok());
  EXPECT_TRUE(profile->stats().empty());
}

TEST(OpProfile, ReadWhileAnotherThreadAdds) {
  OpProfile profile;
  std::thread writer([&] {
    for (int i = 0; i < 20000; ++i) profile.add(i % 2 ? "a" : "b", 1e-6, 2.0);
  });
  for (int i = 0; i < 200; ++i) {
    for (const OpStat& s : profile.stats()) EXPECT_EQ(s.flops, 2.0 * static_cast<double>(s.calls));
  }
  writer.join();
  const std::vector<OpStat> s = profile.stats();
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].op, "b");  // order of first call
  EXPECT_EQ(s[0].calls + s[1].calls, 20000);
}

}  // namespace
}  // namespace dinov3
