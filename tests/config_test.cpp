// config.json parsing: the architecture table and model_args overrides, as timm.create_model applies them.
#include <gtest/gtest.h>

#include "dinov3/model.h"
#include "test_labels.h"

namespace dinov3 {
namespace {

ModelConfig parse_ok(const std::string& text) {
  Result<ModelConfig> r = parse_model_config(text);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? *r : ModelConfig{};
}

DINOV3_SUITE_LABELS(Config, "unit");

TEST(Config, EveryDinov3Architecture) {
  struct Row {
    const char* name;
    int64_t d, depth, heads;
    MlpKind mlp;
    bool qkv_bias;
  };
  const Row rows[] = {
      {"vit_small_patch16_dinov3", 384, 12, 6, MlpKind::kGelu, false},
      {"vit_small_patch16_dinov3_qkvb", 384, 12, 6, MlpKind::kGelu, true},
      {"vit_small_plus_patch16_dinov3", 384, 12, 6, MlpKind::kSwiGlu, false},
      {"vit_small_plus_patch16_dinov3_qkvb", 384, 12, 6, MlpKind::kSwiGlu, true},
      {"vit_base_patch16_dinov3", 768, 12, 12, MlpKind::kGelu, false},
      {"vit_base_patch16_dinov3_qkvb", 768, 12, 12, MlpKind::kGelu, true},
      {"vit_large_patch16_dinov3", 1024, 24, 16, MlpKind::kGelu, false},
      {"vit_large_patch16_dinov3_qkvb", 1024, 24, 16, MlpKind::kGelu, true},
      {"vit_huge_plus_patch16_dinov3", 1280, 32, 20, MlpKind::kSwiGlu, false},
      {"vit_huge_plus_patch16_dinov3_qkvb", 1280, 32, 20, MlpKind::kSwiGlu, true},
      {"vit_7b_patch16_dinov3", 4096, 40, 32, MlpKind::kSwiGlu, false},
  };
  EXPECT_EQ(known_architectures().size(), std::size(rows));
  for (const Row& r : rows) {
    const ModelConfig c = parse_ok(std::string(R"({"architecture": ")") + r.name + "\"}");
    EXPECT_EQ(c.embed_dim, r.d) << r.name;
    EXPECT_EQ(c.depth, r.depth) << r.name;
    EXPECT_EQ(c.num_heads, r.heads) << r.name;
    EXPECT_EQ(c.mlp, r.mlp) << r.name;
    EXPECT_EQ(c.q_bias, r.qkv_bias) << r.name;
    EXPECT_EQ(c.v_bias, r.qkv_bias) << r.name;
    EXPECT_FALSE(c.k_bias) << r.name;
    EXPECT_EQ(c.num_reg_tokens, 4);
    EXPECT_EQ(c.patch_size, 16);
    EXPECT_EQ(c.tokens_for(256, 256), 261);
    EXPECT_EQ(c.global_pool, PoolMode::kAvg);
  }
}

TEST(Config, ModelArgsOverrideTheTable) {
  const ModelConfig c = parse_ok(R"({"architecture": "vit_base_patch16_dinov3", "global_pool": "token",
      "model_args": {"embed_dim": 96, "depth": 3, "num_heads": 4, "qkv_bias": true, "swiglu_mlp": true,
                     "num_reg_tokens": 0, "drop_path_rate": 0.1, "init_values": 1e-5},
      "pretrained_cfg": {"input_size": [3, 224, 320], "interpolation": "bilinear", "crop_pct": 0.875,
                         "crop_mode": "squash", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.5, 1.0]}})");
  EXPECT_EQ(c.embed_dim, 96);
  EXPECT_EQ(c.depth, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.head_dim(), 24);
  EXPECT_TRUE(c.q_bias && c.v_bias && !c.k_bias);
  EXPECT_EQ(c.mlp, MlpKind::kSwiGlu);
  EXPECT_EQ(c.num_reg_tokens, 0);
  EXPECT_EQ(c.global_pool, PoolMode::kToken);
  EXPECT_EQ(c.data.height, 224);
  EXPECT_EQ(c.data.width, 320);
  EXPECT_EQ(c.data.interpolation, "bilinear");
  EXPECT_DOUBLE_EQ(c.data.crop_pct, 0.875);
  EXPECT_EQ(c.data.crop_mode, "squash");
  EXPECT_FLOAT_EQ(c.data.std[2], 1.0f);
}

TEST(Config, RefusesWhatItCannotRun) {
  struct Case {
    const char* json;
    const char* fragment;
  };
  const Case cases[] = {
      {R"([1, 2])", "not a JSON object"},
      {R"({"model_args": {}})", "no 'architecture'"},
      {R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"depth": -1}})", "'depth'"},
      {R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"embed_dim": "big"}})", "'embed_dim'"},
      {R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"use_abs_pos_emb": true}})", "use_abs_pos_emb"},
      {R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"rope_type": "cat"}})", "rope_type"},
      {R"({"architecture": "vit_small_patch16_dinov3", "num_classes": 1000})", "classifier heads"},
      {R"({"architecture": "vit_small_patch16_dinov3", "global_pool": "map"})", "global_pool 'map'"},
      {R"({"architecture": "vit_small_patch16_dinov3", "model_args": {"embed_dim": 36, "num_heads": 6}})", "multiple of 4"},
      {R"({"architecture": "vit_small_patch16_dinov3", "pretrained_cfg": {"std": [0, 1, 1]}})", "positive"},
      {R"({"architecture": "vit_small_patch16_dinov3", "pretrained_cfg": {"input_size": [3, 256]}})", "input_size"},
  };
  for (const Case& c : cases) {
    Result<ModelConfig> r = parse_model_config(c.json);
    ASSERT_FALSE(r.ok()) << c.json;
    EXPECT_NE(r.status().message().find(c.fragment), std::string::npos) << r.status().message();
  }
}

TEST(Config, ForwardFlopsOfVitSmall) {
  ModelConfig c = parse_ok(R"({"architecture": "vit_small_patch16_dinov3"})");
  c.mlp_hidden = 1536;
  // 12 blocks x 1.03 GFLOP + 0.15 GFLOP of patch embedding (../shared/anchors/README.md).
  EXPECT_NEAR(forward_flops(c, 256, 256) * 1e-9, 12.49, 0.01);
}

}  // namespace
}  // namespace dinov3
