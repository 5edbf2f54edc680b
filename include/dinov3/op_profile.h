// Where a forward pass spends its time, op by op: a model loaded with LoadOptions::op_profile runs on a
// wrapper of its backend that times every op call (wall time as the caller sees it: the backends of this
// library compute synchronously) and adds it up per kind of op and shape, with the op's arithmetic.
//
//   auto profile = std::make_shared<dinov3::OpProfile>();
//   lo.op_profile = profile;
//   auto model = dinov3::Model::load(dir, lo);
//   ... forwards ...
//   for (const dinov3::OpStat& s : profile->stats()) ...   // s.seconds / s.calls, s.flops / s.seconds
//
// The arithmetic counts 2 flops per multiply-add of the matrix products (linear layers, q k^T and attention
// x v, the patch embedding), as forward_flops does: the stats of one forward add up to forward_flops per
// image. LayerNorm, pooling and the like count none. The wrapper adds two clock reads per op; a backend's
// fused ops (the cpu backend's linear + residual + LayerNorm) stay fused and are timed as one.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dinov3/backend.h"

namespace dinov3 {

struct OpStat {
  // The op and its shape, e.g. "linear 384->1152", "linear+gelu 384->1536", "linear+residual+layer_norm
  // 1536->384", "attention 6x64 261 tokens", "patch_embed 16x16x3->384", "layer_norm 384".
  std::string op;
  int64_t calls = 0;
  double seconds = 0;  // summed over the calls
  double flops = 0;    // summed over the calls
};

// Thread-safe: the model adds to it while another thread may read or reset it.
class OpProfile {
 public:
  // One entry per op and shape, in the order of their first call since the last reset.
  std::vector<OpStat> stats() const;
  void reset();
  void add(const std::string& op, double seconds, double flops);

 private:
  mutable std::mutex mutex_;
  std::vector<OpStat> stats_;
};

// `inner`, with every op timed into `profile` (what LoadOptions::op_profile does at load).
std::unique_ptr<Backend> profile_backend_ops(std::unique_ptr<Backend> inner, std::shared_ptr<OpProfile> profile);

}  // namespace dinov3
