// parse_int8_plan on any text, then the plan checked against two small models (GELU and SwiGLU MLPs), as
// loading a model with it does. Properties: a plan that parses writes back to JSON that parses to the
// same plan, and a plan the check accepts names one precision, int8 or bf16, per layer of that model.
#include <string>

#include "dinov3/int8_plan.h"
#include "fuzz_util.h"

using namespace dinov3;

namespace {

ModelConfig small_model(MlpKind mlp) {
  ModelConfig c;
  c.embed_dim = 64;
  c.depth = 2;
  c.num_heads = 2;
  c.mlp_hidden = 256;
  c.mlp = mlp;
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Result<Int8Plan> plan = parse_int8_plan(std::string(reinterpret_cast<const char*>(data), size));
  if (!plan.ok()) return 0;
  const std::string text = int8_plan_to_json(*plan);
  Result<Int8Plan> again = parse_int8_plan(text);
  fuzz::expect(again.ok() && int8_plan_to_json(*again) == text, "a parsed plan must survive writing and reading");
  for (const MlpKind mlp : {MlpKind::kGelu, MlpKind::kSwiGlu}) {
    const ModelConfig config = small_model(mlp);
    if (!check_int8_plan(*plan, config).ok()) continue;
    fuzz::expect(plan->layers.size() == linear_layers(config).size(), "one precision per layer");
    for (const Int8PlanLayer& l : plan->layers) {
      fuzz::expect(l.precision == Precision::kInt8 || l.precision == Precision::kBF16, "int8 or bf16");
    }
  }
  return 0;
}
